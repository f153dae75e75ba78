"""Widget declarations shared by the nodes, derived from the engine's
registries so that a new sampler, schedule or parameter shows up everywhere
without being written twice. No host import here."""
import math

from ..samplers import SAMPLER_NAMES, SAMPLERS
from ..schedules import SCHEDULE_NAMES, SCHEDULES

# The schedules a KSampler can compute from a model and a step count.
# `custom` needs text, which the Custom Sigmas node takes instead.
KSAMPLER_SCHEDULES = [n for n in SCHEDULE_NAMES if n != "custom"]


def sampler_input():
    return (SAMPLER_NAMES, {"tooltip": "The solver. Names match the core KSampler's where the "
                                       "algorithm is the same."})


def scheduler_input():
    return (KSAMPLER_SCHEDULES, {"tooltip": "Which noise levels the sampler visits."})


def noise_strength_input():
    return ("FLOAT", {"default": -1.0, "min": -1.0, "max": 10.0, "step": 0.01,
                      "tooltip": "eta: fresh noise per step. -1 uses the sampler's own default "
                                 "(0 for deterministic samplers, 1 for ancestral/SDE ones); 0 "
                                 "is the deterministic ODE, 1 the classic ancestral/SDE "
                                 "sampler, values between blend them."})


def s_noise_input():
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01,
                      "tooltip": "Scale of the fresh noise (1 = exact; slightly above 1 "
                                 "counters the softening of stochastic samplers)."})


def eta_value(noise_strength):
    """-1 -> None (the sampler's default); otherwise a value >= 0."""
    v = float(noise_strength)
    if v == -1.0:
        return None
    if not (math.isfinite(v) and v >= 0.0):
        raise ValueError(f"noise_strength must be -1 (the sampler's default) or a number "
                         f">= 0, got {noise_strength!r}")
    return v


# --- schedule parameters: one widget per (schedule, parameter) ---------------

def _param_widget(schedule, name, p):
    tip = f"{schedule} only: {p.description}"
    if p.kind == "choice":
        return (list(p.choices), {"default": p.default, "tooltip": tip})
    if p.kind == "int":
        # None (e.g. linear_quadratic's linear_steps) is shown as -1.
        return ("INT", {"default": -1 if p.default is None else p.default,
                        "min": -1 if p.default is None else int(p.lo),
                        "max": int(p.hi), "tooltip": tip + (" (-1: automatic)"
                                                            if p.default is None else "")})
    if p.kind == "float":
        lo = p.lo if p.lo is not None and math.isfinite(p.lo) else -1e6
        hi = p.hi if p.hi is not None and math.isfinite(p.hi) else 1e6
        return ("FLOAT", {"default": p.default, "min": lo, "max": hi,
                          "step": p.step or 0.01, "tooltip": tip})
    return None  # text parameters belong to the Custom Sigmas node


def schedule_param_inputs():
    """{widget name: declaration} for every numeric/choice schedule parameter."""
    out = {}
    for sname, spec in SCHEDULES.items():
        for pname, p in spec.params.items():
            widget = _param_widget(sname, pname, p)
            if widget is not None:
                out[f"{sname}_{pname}"] = widget
    return out


def schedule_params(scheduler, widget_values):
    """The parameters of `scheduler` picked from widget values by name."""
    spec = SCHEDULES[scheduler]
    params = {}
    for pname, p in spec.params.items():
        key = f"{scheduler}_{pname}"
        if key in widget_values:
            v = widget_values[key]
            if p.kind == "int" and p.default is None and v == -1:
                continue
            params[pname] = v
    return params


# --- sampler method options: one widget per (sampler, option) ----------------

def _option_widget(sampler, name, o):
    tip = f"{sampler} only: {o.help or name}"
    if o.kind == "choice":
        return (list(o.choices), {"default": o.default, "tooltip": tip})
    if o.kind == "int":
        return ("INT", {"default": o.default, "min": int(o.lo), "max": int(o.hi),
                        "tooltip": tip})
    if o.kind == "float":
        return ("FLOAT", {"default": o.default, "min": o.lo, "max": o.hi, "step": 0.0001,
                          "tooltip": tip})
    return None  # the statistics dict of dpm_adaptive is not a widget


def sampler_option_inputs():
    out = {}
    for sname, spec in SAMPLERS.items():
        for oname, o in spec.option_specs.items():
            widget = _option_widget(sname, oname, o)
            if widget is not None:
                out[f"{sname}_{oname}"] = widget
    return out


def sampler_options(sampler, widget_values):
    spec = SAMPLERS[sampler]
    return {o: widget_values[f"{sampler}_{o}"] for o in spec.option_specs
            if f"{sampler}_{o}" in widget_values}
