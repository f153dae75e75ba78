"""The schedule preview behind GET /sampler_lab/sigmas: a query in, sigmas
out, computed by get_sigmas (the one source of truth; the web widget never
re-implements a schedule). No host import, so it is tested without a
server; nodes/routes.py mounts it on the host's server."""
import math

import torch

from .discrete import sd1_sigmas
from .registry import SCHEDULE_NAMES, SCHEDULES, get_sigmas

# `custom` takes text, which the Custom Sigmas node previews itself.
KSAMPLER_SCHEDULES = [n for n in SCHEDULE_NAMES if n != "custom"]

FAMILIES = ("sd15", "sdxl", "flow")
MAX_PREVIEW_STEPS = 1000
_FIXED = ("scheduler", "steps", "denoise", "family", "shift")


def _flow_table(shift, n=1000):
    # SD3/Flux-style: sigma = shift t / (1 + (shift - 1) t) at t = k / n.
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    return shift * t / (1 + (shift - 1) * t)


def _number(query, name, default, lo, hi, integer=False):
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} in [{lo}, {hi}], got {raw!r}") from None
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {raw!r}")
    return value


def sigmas_for_query(query):
    """query: a mapping of strings (the URL's parameters) -> list of floats.
    Raises ValueError with a message naming the bad parameter."""
    scheduler = query.get("scheduler")
    if scheduler not in KSAMPLER_SCHEDULES:
        raise ValueError(f"scheduler must be one of {', '.join(KSAMPLER_SCHEDULES)}, "
                         f"got {scheduler!r}")
    steps = _number(query, "steps", None, 1, MAX_PREVIEW_STEPS, integer=True)
    if steps is None:
        raise ValueError(f"steps is required: an integer in [1, {MAX_PREVIEW_STEPS}]")
    denoise = _number(query, "denoise", 1.0, 0.0, 1.0)
    family = query.get("family", "sd15") or "sd15"
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    shift = _number(query, "shift", 3.0, 0.01, 100.0)
    spec = SCHEDULES[scheduler]
    params = {}
    for name, raw in query.items():
        if name in _FIXED:
            continue
        if name not in spec.params:
            allowed = ", ".join(list(_FIXED) + list(spec.params))
            raise ValueError(f"unknown parameter {name!r} for {scheduler}; allowed: {allowed}")
        p = spec.params[name]
        if p.kind == "choice":
            params[name] = raw
        elif p.kind == "int":
            if p.default is None and raw.strip() == "-1":
                continue  # the node's "-1: automatic" means the engine's default
            params[name] = _number(query, name, None, p.lo, p.hi, integer=True)
        else:
            params[name] = _number(query, name, None, -math.inf, math.inf)
    if denoise <= 0.0:
        return []
    total = steps if denoise > 0.9999 else int(steps / denoise)
    if total > 10 * MAX_PREVIEW_STEPS:
        raise ValueError(f"steps / denoise must be at most {10 * MAX_PREVIEW_STEPS}")
    table = _flow_table(shift) if family == "flow" else None
    sigmas = get_sigmas(scheduler, total, model_sigmas=table, **params)
    return [float(s) for s in sigmas[-(steps + 1):]]


def preview_info():
    """What the web widget needs to know that only the engine knows, as JSON
    (GET /sampler_lab/info): each sampler's default noise strength (what the
    node's -1 means), and each schedule's parameters, whose node widgets are
    named <schedule>_<parameter>."""
    from ..samplers import SAMPLERS  # the engine's table; no host import

    samplers = {name: {"stochastic": bool(spec.stochastic),
                       "default_eta": float(spec.default_eta)}
                for name, spec in SAMPLERS.items()}
    schedules = {}
    for name in KSAMPLER_SCHEDULES:
        params = {}
        for pname, p in SCHEDULES[name].params.items():
            params[pname] = {"kind": p.kind, "auto": p.kind == "int" and p.default is None}
        schedules[name] = params
    # The SD 1.x/SDXL table lets the widget say where a sigma sits in the
    # model's timesteps ("percent of the process"); flow has a closed form.
    table = [float(f"{v:.6g}") for v in sd1_sigmas().tolist()]
    return {"samplers": samplers, "schedules": schedules, "families": list(FAMILIES),
            "max_steps": MAX_PREVIEW_STEPS, "sd_sigma_table": table}
