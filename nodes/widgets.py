"""Widget declarations shared by the nodes, derived from the engine's
registries so that a new sampler, schedule or parameter shows up everywhere
without being written twice. No host import here."""
import math

from ..samplers import SAMPLER_NAMES, SAMPLERS
from ..schedules import SCHEDULES
from ..schedules.preview import KSAMPLER_SCHEDULES  # noqa: F401  (the nodes' list)


def sampler_input():
    return (SAMPLER_NAMES, {"tooltip": "The solver. Names match the core KSampler's where the "
                                       "algorithm is the same."})


def scheduler_input():
    return (KSAMPLER_SCHEDULES, {"tooltip": "Which noise levels the sampler visits."})


def check_names(sampler_name=None, scheduler=None):
    """A node's VALIDATE_INPUTS for its sampler / scheduler names: True, or a
    message naming the unknown value and listing ours in full (the host's own
    list check shortens a long list to its length)."""
    if isinstance(sampler_name, str) and sampler_name not in SAMPLERS:
        return (f"sampler_name {sampler_name!r} is not a Sampler Lab sampler; ours: "
                f"{', '.join(SAMPLER_NAMES)}")
    if isinstance(scheduler, str) and scheduler not in KSAMPLER_SCHEDULES:
        return (f"scheduler {scheduler!r} is not a Sampler Lab schedule; ours: "
                f"{', '.join(KSAMPLER_SCHEDULES)}")
    return True


def check_ranges(declared, **values):
    """VALIDATE_INPUTS for optional number widgets (the host range-checks
    only required inputs): True, or a message naming the input and its
    range. `declared`: the node's {name: declaration}."""
    for name, value in values.items():
        decl = declared.get(name)
        if value is None or decl is None or decl[0] not in ("INT", "FLOAT"):
            continue
        lo, hi = decl[1].get("min", -math.inf), decl[1].get("max", math.inf)
        try:
            v = float(value)
        except (TypeError, ValueError):
            return f"{name} must be a number in [{lo}, {hi}], got {value!r}"
        if not (math.isfinite(v) and lo <= v <= hi):
            return f"{name} must be in [{lo}, {hi}], got {value!r}"
    return True


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


# --- engine parameters as widgets: one per (sampler or schedule, parameter) --

def _finite(value, fallback):
    return value if value is not None and math.isfinite(value) else fallback


def _decimals(value):
    """Digits after the point in value's shortest repr (0.0078 -> 4, 7.0 -> 0)."""
    text = repr(float(value)).lower()
    mantissa, _, exponent = text.partition("e")
    digits = len(mantissa.partition(".")[2].rstrip("0"))
    return max(0, digits - int(exponent or 0))


def float_display(default, step=None):
    """The frontend's options of a FLOAT widget: `step` (the arrows' step:
    the parameter's own grid, else 0.01, made fine enough that the default
    is a multiple of it), `precision` (digits shown: those of the step and
    of the default) and `round` (values snap to what is shown). So the
    default shows exactly and the arrows come back to it (vp_eps_s = 0.001
    was shown as 0.00 at step 0.01)."""
    step = 0.01 if step is None else float(step)
    places = _decimals(default)
    if places > _decimals(step) or abs(default / step - round(default / step)) > 1e-9:
        step = min(step, 10.0 ** -places)
    precision = max(_decimals(step), places)
    return {"step": step, "round": 10.0 ** -precision, "precision": precision}


def _widget(kind, default, lo, hi, choices, step, tip):
    """A widget declaration for one engine parameter, or None where it has no
    widget form (text, which the Custom Sigmas node takes; dicts). An int
    whose default is None ("automatic") shows as -1."""
    if kind == "choice":
        return (list(choices), {"default": default, "tooltip": tip})
    if kind == "int":
        auto = default is None
        return ("INT", {"default": -1 if auto else default,
                        "min": -1 if auto else int(_finite(lo, -2 ** 31)),
                        "max": int(_finite(hi, 2 ** 31 - 1)),
                        "tooltip": tip + (" (-1: automatic)" if auto else "")})
    if kind == "float":
        return ("FLOAT", {"default": default, "min": _finite(lo, -1e6),
                          "max": _finite(hi, 1e6), **float_display(default, step),
                          "tooltip": tip})
    return None


def _inputs(table, params_of, widget_of):
    """{"<owner>_<param>": declaration} in registry order. Saved workflows
    store widget values by position, so new entries must come last."""
    out = {}
    for owner, spec in table.items():
        for name, p in params_of(spec).items():
            widget = widget_of(owner, name, p)
            if widget is not None:
                out[f"{owner}_{name}"] = widget
    return out


def _picked(owner, params, widget_values):
    """The values of `owner`'s parameters among the widget values."""
    out = {}
    for name, p in params.items():
        key = f"{owner}_{name}"
        if key in widget_values:
            value = widget_values[key]
            if p.kind == "int" and p.default is None and value == -1:
                continue  # "automatic": leave the engine's default
            out[name] = value
    return out


def schedule_param_inputs():
    return _inputs(SCHEDULES, lambda spec: spec.params, lambda owner, name, p: _widget(
        p.kind, p.default, p.lo, p.hi, p.choices, p.step,
        f"{owner} only: {p.description}"))


def schedule_params(scheduler, widget_values):
    return _picked(scheduler, SCHEDULES[scheduler].params, widget_values)


def sampler_option_inputs():
    return _inputs(SAMPLERS, lambda spec: spec.option_specs, lambda owner, name, o: _widget(
        o.kind, o.default, o.lo, o.hi, o.choices, getattr(o, "step", None),
        f"{owner} only: {o.help or name}"))


def sampler_options(sampler, widget_values):
    return _picked(sampler, SAMPLERS[sampler].option_specs, widget_values)
