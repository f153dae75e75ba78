"""Scheduler strings other packs save in API prompts, mapped to our
schedules: Impact Pack's (its impact_sampling.calculate_sigmas and its
SCHEDULERS list: "AYS SD1", "AYS SDXL", "AYS SVD", "GITS[coeff=X]",
"LTXV[default]", "OSS FLUX", "OSS Wan", "OSS Chroma"), SwarmUI's
(SwarmKSampler: "turbo", "align_your_steps", "ltx", "ltxv", "ltxv-image",
"flux2", "ideogram4") and the usual names of the distilled schedules. Our
KSampler accepts them as its scheduler (VALIDATE_INPUTS) without showing
them in its list. Pure data, no host import.

resolve(name) -> (schedule, params) or None; `ALIASES` is the documented
table (README)."""
import re

from .registry import SCHEDULES
from .tables import AYS_MODELS, OSS_MODELS

# alias -> (our schedule, its parameters, where the string comes from)
ALIASES = {}
for _m in AYS_MODELS:
    ALIASES[f"AYS {_m}"] = ("align_your_steps", {"model_type": _m}, "Impact Pack")
ALIASES["LTXV[default]"] = ("ltxv", {"max_shift": 2.05, "base_shift": 0.95, "stretch": "true",
                                     "terminal": 0.1}, "Impact Pack")
for _m in OSS_MODELS:
    ALIASES[f"OSS {_m}"] = ("optimal_steps", {"model_type": _m}, "Impact Pack")
ALIASES["turbo"] = ("sd_turbo", {}, "SwarmUI")
for _n in ("ltx", "ltxv-image"):
    ALIASES[_n] = ("ltxv", {}, "SwarmUI")
for _n, _target in (("sdxl_lightning", "trailing"), ("hyper_sd", "trailing"), ("tcd", "lcm")):
    ALIASES[_n] = (_target, {}, "distilled models' usual names")

# GITS[coeff=<number>]: Impact Pack's GITS with its coefficient in the name
_GITS = re.compile(r"^GITS\[coeff=([0-9]*\.?[0-9]+)\]$")
GITS_EXAMPLE = "GITS[coeff=1.2]"


def resolve(name):
    """(schedule, params) for an alias, None for anything else. Raises
    ValueError naming the alias for a GITS coefficient outside GITS's
    published range."""
    if not isinstance(name, str):
        return None
    if name in ALIASES:
        schedule, params, _ = ALIASES[name]
        return schedule, dict(params)
    m = _GITS.match(name)
    if m:
        coeff = float(m.group(1))
        spec = SCHEDULES["gits"].params["coeff"]
        spec.check(f"scheduler {name!r}: GITS coeff", coeff)
        return "gits", {"coeff": coeff}
    return None


def alias_names():
    """Every accepted alias (GITS as its pattern's example)."""
    return list(ALIASES) + [GITS_EXAMPLE]
