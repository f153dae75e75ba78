"""What the web widget asks the engine besides a schedule (preview.py):
which options each sampler has and which parameters each schedule has (the
nodes name their widgets <sampler>_<option> and <schedule>_<parameter>), and
the fresh-noise fraction per step of a sampler's own noise rule
(samplers.noise_fractions), so the widget draws the engine's numbers and
holds no sampler or schedule math of its own. No host import: tested
without a server; nodes/routes.py serves it."""
import math

from .preview import preview_info
from ..params import number

# The route's query parameters for the noise plot; the rest go to preview.py.
NOISE_KEYS = ("sampler", "eta", "s_noise")


def process_of_family(family):
    """The noise process ("ve" / "flow") of a preview family name: SD3-style
    and Flux-style models are both flow (CONST) models."""
    return "flow" if family in ("flow", "flux") else "ve"


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _describe(kind, default, lo, hi, choices, help_text):
    out = {"kind": kind, "help": help_text}
    if kind in ("int", "float"):
        out.update(default=_finite(default), lo=_finite(lo), hi=_finite(hi),
                   auto=kind == "int" and default is None)
    elif kind == "choice":
        out.update(default=default, choices=list(choices))
    return out


def widget_info():
    """preview_info() (GET /sampler_lab/info) plus, per sampler, its method
    options ("options") and, per schedule, each parameter's default and
    bounds; and the process each preview family stands for. JSON-ready."""
    from ..samplers import SAMPLERS
    from .registry import SCHEDULES

    info = preview_info()
    for name, entry in info["samplers"].items():
        spec = SAMPLERS[name]
        entry["options"] = {k: _describe(o.kind, o.default, o.lo, o.hi, o.choices, o.description)
                            for k, o in spec.option_specs.items()}
    for name, params in info["schedules"].items():
        for pname, entry in params.items():
            p = SCHEDULES[name].params[pname]
            described = _describe(p.kind, p.default, p.lo, p.hi, p.choices, p.description)
            entry.update({k: v for k, v in described.items() if k not in entry})
    info["family_process"] = {f: process_of_family(f) for f in info["families"]}
    return info


def split_noise_query(query):
    """query (URL parameters) -> (the schedule's query, the noise query or
    None). The noise plot is asked for by naming a sampler."""
    rest = {k: v for k, v in query.items() if k not in NOISE_KEYS}
    if not query.get("sampler"):
        extra = [k for k in NOISE_KEYS if query.get(k) not in (None, "")]
        if extra:
            raise ValueError(f"{', '.join(extra)} need a sampler: sampler=<name>")
        return rest, None
    return rest, {k: query[k] for k in NOISE_KEYS if k in query}


def noise_fraction(sigmas, family, noise_query):
    """Per step of `sigmas`, the fresh noise as a fraction of the noise level
    at its end: samplers.noise_fractions of the sampler's own rule at eta
    (-1 or absent: the sampler's default), times s_noise (the scale of the
    fresh draw). A list of len(sigmas) - 1 floats; ValueError names bad input."""
    from ..samplers import noise_fractions

    eta = None
    allowed = "-1 (the sampler's default) or a number >= 0"
    if noise_query.get("eta") not in (None, ""):
        eta = number("eta (noise_strength)", noise_query["eta"], -1.0, text=True,
                     allowed=allowed)
        if eta == -1.0:
            eta = None
        elif eta < 0.0:
            raise ValueError(f"eta (noise_strength) must be {allowed}, got {noise_query['eta']!r}")
    s_noise_raw = noise_query.get("s_noise", "")
    s_noise = 1.0 if s_noise_raw in ("", None) else number("s_noise", s_noise_raw, 0.0, text=True,
                                                          allowed="a number >= 0")
    if len(sigmas) < 2:
        return []
    fractions = noise_fractions(noise_query["sampler"], sigmas,
                                process=process_of_family(family), eta=eta)
    return [f * s_noise for f in fractions]

