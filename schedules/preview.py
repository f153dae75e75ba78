"""The schedule preview behind GET /sampler_lab/sigmas: a query in, sigmas
out, computed by get_sigmas (the one source of truth; the web widget never
re-implements a schedule). No host import, so it is tested without a
server; nodes/routes.py mounts it on the host's server."""

from .discrete import sd1_sampling, sd1_sigmas
from .registry import SCHEDULE_NAMES, SCHEDULES, ksampler_sigmas
from .sampling import FlowSampling, FluxSampling
from ..params import number

# `custom` takes text, which the Custom Sigmas node previews itself.
KSAMPLER_SCHEDULES = [n for n in SCHEDULE_NAMES if n != "custom"]

# sd15 / sdxl: the discrete SD table (both share it); flow: SD3-type
# (ModelSamplingDiscreteFlow: timestep = sigma * 1000, shift on the way back);
# flux: Flux-type (ModelSamplingFlux: exponential shift mu).
FAMILIES = ("sd15", "sdxl", "flow", "flux")
# The shift each family gets when the query has none: SD3's 3 and Flux's
# 1.15 (the hosts' defaults for those models).
DEFAULT_SHIFT = {"flow": 3.0, "flux": 1.15}
MAX_PREVIEW_STEPS = 1000
_FIXED = ("scheduler", "steps", "denoise", "family", "shift")


def family_sampling(family, shift=None):
    """The model sampling a preview family stands for, as the node would
    read it off such a model (schedules.sampling)."""
    if family == "flow":
        return FlowSampling(shift=DEFAULT_SHIFT["flow"] if shift is None else shift)
    if family == "flux":
        return FluxSampling(shift=DEFAULT_SHIFT["flux"] if shift is None else shift)
    return sd1_sampling()


def sigmas_for_query(query):
    """query: a mapping of strings (the URL's parameters) -> list of floats.
    Raises ValueError with a message naming the bad parameter."""
    scheduler = query.get("scheduler")
    if scheduler not in KSAMPLER_SCHEDULES:
        raise ValueError(f"scheduler must be one of {', '.join(KSAMPLER_SCHEDULES)}, "
                         f"got {scheduler!r}")
    steps = number("steps", query.get("steps"), 1, MAX_PREVIEW_STEPS, integer=True, text=True,
                   default=None)
    if steps is None:
        raise ValueError(f"steps is required: an integer in [1, {MAX_PREVIEW_STEPS}]")
    denoise = number("denoise", query.get("denoise"), 0.0, 1.0, text=True, default=1.0)
    family = query.get("family", "sd15") or "sd15"
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    shift = number("shift", query.get("shift"), 0.01, 100.0, text=True, default=None)
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
            params[name] = number(name, raw, p.lo, p.hi, integer=True, text=True,
                                  default=None)
        else:
            params[name] = number(name, raw, text=True, default=None)
    if denoise <= 0.0:
        return []
    total = steps if denoise > 0.9999 else int(steps / denoise)
    if total > 10 * MAX_PREVIEW_STEPS:
        raise ValueError(f"steps / denoise must be at most {10 * MAX_PREVIEW_STEPS}")
    sigmas = ksampler_sigmas(scheduler, steps, denoise,
                             model_sampling=family_sampling(family, shift), **params)
    return [float(s) for s in sigmas]


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
            "default_shift": dict(DEFAULT_SHIFT), "max_steps": MAX_PREVIEW_STEPS,
            "sd_sigma_table": table}
