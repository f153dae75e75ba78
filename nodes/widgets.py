"""Widget declarations shared by the nodes, derived from the engine's
registries so that a new sampler, schedule or parameter shows up everywhere
without being written twice. No host import here."""
import math

from ..samplers import SAMPLER_NAMES, SAMPLERS
from ..samplers.noise_types import FRESH_NOISE_TYPES, INITIAL_NOISE_TYPES
from ..samplers.controls import as_detail, parse_restart
from ..schedules import SCHEDULES, aliases
from ..schedules.preview import KSAMPLER_SCHEDULES  # noqa: F401  (the nodes' list)


# The core's defaults where our nodes have the core's input (KSampler,
# KSamplerSelect, BasicScheduler: the first entry of its list), so a fresh
# node of ours gives the core's image.
DEFAULT_SAMPLER = "euler"
DEFAULT_SCHEDULER = "simple"

# The frontend's `advanced` flag on an input (ComfyUI PR #11939; the core
# marks eta, s_noise, order, tolerances, sigma ranges and percent windows so
# in PR #12197): Vue nodes fold these behind "Show Advanced", and our widget
# script folds them into one toggle row elsewhere. Values, order and names in
# saved workflows and API prompts do not change.
ADVANCED = {"advanced": True}

# Method options the core would call internals (solver order, tolerances,
# controller gains, stage positions): advanced. The rest (solver_type,
# ge_gamma) are shown with their sampler.
EXPERT_OPTIONS = frozenset({"order", "rtol", "atol", "h_init", "pcoeff", "icoeff", "dcoeff",
                            "accept_safety", "r", "r_1", "r_2", "predictor_order",
                            "corrector_order", "max_stage"})
# Schedule parameters that tune a process or a published recipe's internals
# (VP SDE constants, LTXV's shift rule, bong_tangent's pivots and slopes, the
# linear phase's noise fraction): advanced. A schedule's shape knob (rho,
# alpha/beta, mu, coeff, middle, model_type, tokens, linear_steps) is shown.
EXPERT_PARAMS = frozenset({"vp_beta_d", "vp_beta_min", "vp_eps_s", "ltxv_max_shift",
                           "ltxv_base_shift", "ltxv_stretch", "ltxv_terminal",
                           "bong_tangent_pivot_1", "bong_tangent_pivot_2",
                           "bong_tangent_slope_1", "bong_tangent_slope_2",
                           "linear_quadratic_threshold_noise"})


def advanced(declaration):
    """The same input declaration with the frontend's `advanced` flag."""
    kind, options = declaration
    return (kind, {**options, **ADVANCED})


def sampler_input():
    return (SAMPLER_NAMES, {"default": DEFAULT_SAMPLER,
                            "tooltip": "The solver. Names match the core KSampler's where the "
                                       "algorithm is the same."})


class SchedulerChoices(list):
    """The scheduler combo's values: ours, as the frontend lists them; its
    membership test, which is how the host checks a prompt's value, also
    accepts other packs' strings (schedules.aliases) that API prompts carry.
    So they validate without `scheduler` in VALIDATE_INPUTS, where newer
    hosts would report any one bad value once per argument it takes."""

    def __contains__(self, value):
        if list.__contains__(self, value):
            return True
        try:
            return aliases.resolve(value) is not None
        except ValueError:  # a GITS coefficient out of range: not accepted
            return False


SCHEDULER_CHOICES = SchedulerChoices(KSAMPLER_SCHEDULES)


def scheduler_input():
    return (SCHEDULER_CHOICES, {"default": DEFAULT_SCHEDULER,
                                 "tooltip": "Which noise levels the sampler visits."})


def check_names(sampler_name=None, scheduler=None):
    """A node's VALIDATE_INPUTS for its sampler / scheduler names: True, or a
    message naming the unknown value and listing ours in full (the host's own
    list check shortens a long list to its length)."""
    if isinstance(sampler_name, str) and sampler_name not in SAMPLERS:
        return (f"sampler_name {sampler_name!r} is not a Sampler Lab sampler; ours: "
                f"{', '.join(SAMPLER_NAMES)}")
    if isinstance(scheduler, str) and scheduler not in KSAMPLER_SCHEDULES:
        try:
            known = aliases.resolve(scheduler) is not None
        except ValueError as exc:
            return str(exc)
        if not known:
            return (f"scheduler {scheduler!r} is not a Sampler Lab schedule; ours: "
                    f"{', '.join(KSAMPLER_SCHEDULES)}; also accepted (other packs' names): "
                    f"{', '.join(aliases.alias_names())}")
    return True


def resolve_scheduler(scheduler):
    """A scheduler widget value -> (our schedule, its parameters): our names
    as they are, other packs' names through schedules.aliases."""
    if scheduler in KSAMPLER_SCHEDULES:
        return scheduler, {}
    found = aliases.resolve(scheduler)
    if found is None:
        raise ValueError(check_names(scheduler=scheduler))
    return found


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
                      "tooltip": "eta: fresh noise per step. -1 (any value below 0) uses the "
                                 "sampler's own default (0 for deterministic samplers, 1 for "
                                 "ancestral/SDE ones); 0 "
                                 "is the deterministic ODE, 1 the classic ancestral/SDE "
                                 "sampler, values between blend them."})


def s_noise_input():
    return ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01, **ADVANCED,
                      "tooltip": "Scale of the fresh noise (1 = exact; slightly above 1 "
                                 "counters the softening of stochastic samplers)."})


def eta_value(noise_strength):
    """Below 0 (the widget's -1) -> None (the sampler's default); otherwise
    the value. Every value the widget offers, [-1, 10], means something: the
    widget and the run agree."""
    v = float(noise_strength)
    if not math.isfinite(v):
        raise ValueError(f"noise_strength must be a finite number (below 0: the sampler's "
                         f"default), got {noise_strength!r}")
    return None if v < 0.0 else v


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


# The schedule parameter widgets of the previous release; those added since
# (flux2's and ideogram4's) are marked advanced, so the node stays light.
SHIPPED_SCHEDULE_PARAMS = (
    "karras_rho", "polyexponential_rho", "beta_alpha", "beta_beta",
    "linear_quadratic_threshold_noise", "linear_quadratic_linear_steps", "laplace_mu",
    "laplace_beta", "vp_beta_d", "vp_beta_min", "vp_eps_s", "align_your_steps_model_type",
    "gits_coeff", "bong_tangent_middle", "bong_tangent_pivot_1", "bong_tangent_pivot_2",
    "bong_tangent_slope_1", "bong_tangent_slope_2", "optimal_steps_model_type",
    "ltxv_max_shift", "ltxv_base_shift", "ltxv_stretch", "ltxv_terminal", "ltxv_tokens",
)


def _flagged(declaration, expert):
    return advanced(declaration) if declaration is not None and expert else declaration


def schedule_param_inputs():
    """Every schedule's parameter widgets; expert ones and those added since
    the previous release are advanced."""
    return _inputs(SCHEDULES, lambda spec: spec.params, lambda owner, name, p: _flagged(_widget(
        p.kind, p.default, p.lo, p.hi, p.choices, p.step,
        f"{owner} only: {p.description}"),
        f"{owner}_{name}" in EXPERT_PARAMS or f"{owner}_{name}" not in SHIPPED_SCHEDULE_PARAMS))


def schedule_params(scheduler, widget_values):
    return _picked(scheduler, SCHEDULES[scheduler].params, widget_values)


# The option widgets of the release before the controls: they sit before the
# controls on the Sampler node; every option added since (e.g. the 2026 core's
# seeds_2_solver_type, exp_heun_2_x0_solver_type) comes after the controls, in
# registry order, so saved workflows keep their widget positions.
SHIPPED_SAMPLER_OPTIONS = (
    "lms_order", "dpm_adaptive_order", "dpm_adaptive_rtol", "dpm_adaptive_atol",
    "dpm_adaptive_h_init", "dpm_adaptive_pcoeff", "dpm_adaptive_icoeff", "dpm_adaptive_dcoeff",
    "dpm_adaptive_accept_safety", "dpmpp_2m_solver_type", "dpmpp_sde_r",
    "dpmpp_2m_sde_solver_type", "uni_pc_order", "uni_pc_bh2_order", "deis_order",
    "ipndm_order", "ipndm_v_order", "gradient_estimation_ge_gamma", "er_sde_max_stage",
    "seeds_2_r", "seeds_3_r_1", "seeds_3_r_2", "sa_solver_predictor_order",
    "sa_solver_corrector_order", "sa_solver_pece_predictor_order",
    "sa_solver_pece_corrector_order", "dpmpp_sde_gpu_r", "dpmpp_2m_sde_gpu_solver_type",
    "dpmpp_2m_cfg_pp_solver_type", "gradient_estimation_cfg_pp_ge_gamma",
)


def _all_sampler_option_inputs():
    return _inputs(SAMPLERS, lambda spec: spec.option_specs, lambda owner, name, o: _flagged(
        _widget(o.kind, o.default, o.lo, o.hi, o.choices, getattr(o, "step", None),
                f"{owner} only: {o.description or name}"), name in EXPERT_OPTIONS))


def sampler_option_inputs():
    """The shipped option widgets (before the controls), in registry order."""
    return {k: v for k, v in _all_sampler_option_inputs().items()
            if k in SHIPPED_SAMPLER_OPTIONS}


def late_sampler_option_inputs():
    """Option widgets added after the controls, marked advanced."""
    out = {}
    for k, (kind, opts) in _all_sampler_option_inputs().items():
        if k not in SHIPPED_SAMPLER_OPTIONS:
            out[k] = advanced((kind, opts))
    return out


def sampler_options(sampler, widget_values):
    return _picked(sampler, SAMPLERS[sampler].option_specs, widget_values)


# --- controls over any sampler (samplers/controls.py): appended after every
# node's existing widgets, in this order, as optional inputs (a workflow saved
# before them loads them at their defaults) ------------------------------------

def _float(default, lo, hi, step, tip):
    return ("FLOAT", {"default": default, "min": lo, "max": hi, **ADVANCED,
                      **float_display(default, step), "tooltip": tip})


RESTART_PLACEHOLDER = "empty: off · default · [[N, K, t_min, t_max], ...]"


def control_inputs():
    return {
        "noise_start": _float(-1.0, -1.0, 1.0, 0.01,
                              "Noise window start: fresh noise enters steps that end after "
                              "this fraction of the model's process (0 pure noise, 1 clean). "
                              "-1 (any value below 0): the sampler's own (sa_solver 0.2, "
                              "others 0)."),
        "noise_end": _float(-1.0, -1.0, 1.0, 0.01,
                            "Noise window end: no fresh noise after this fraction of the "
                            "model's process. -1 (any value below 0): the sampler's own "
                            "(sa_solver 0.8, others 1)."),
        "s_churn": _float(0.0, 0.0, 100.0, 0.01,
                          "Karras churn (EDM, Alg. 2) for euler, heun and dpm_2: raises the "
                          "noise by up to min(s_churn / steps, 0.414) of sigma before each "
                          "step. 0: off."),
        "s_tmin": _float(0.0, 0.0, 10000.0, 0.01,
                         "Churn only from sigmas >= s_tmin (the model's sigma units)."),
        "s_tmax": _float(0.0, 0.0, 10000.0, 0.01,
                         "Churn only from sigmas <= s_tmax; 0: no upper limit (as A1111)."),
        "restart": ("STRING", {"default": "", "multiline": False, **ADVANCED,
                               "placeholder": RESTART_PLACEHOLDER,
                               "tooltip": "Restart sampling (Xu et al. 2023): empty for none; "
                                          "'default' for A1111's rule by step count; or "
                                          "segments [[N, K, t_min, t_max], ...]: after "
                                          "reaching sigma t_min, re-noise to t_max and run N "
                                          "noise levels (N - 1 steps) down again, K times. "
                                          "Needs a deterministic sampler (noise strength 0)."}),
        "detail_amount": _float(0.0, -1.0, 0.9, 0.01,
                                "Detail: the model is told a sigma this fraction lower at the "
                                "peak of the window (more detail; < 0 smooths), while the "
                                "sampler keeps its own. 0: off."),
        "detail_start": _float(0.2, 0.0, 1.0, 0.01,
                               "Detail window start, as a fraction of the steps."),
        "detail_end": _float(0.8, 0.0, 1.0, 0.01, "Detail window end, as a fraction of the steps."),
        "detail_bias": _float(0.5, 0.0, 1.0, 0.01,
                              "Where in the window the detail peaks (0 at its start, 1 at its "
                              "end)."),
        "detail_exponent": _float(1.0, 0.0, 10.0, 0.05,
                                  "Shape of the detail bump: > 1 narrower, < 1 flatter."),
    }


CONTROL_NAMES = tuple(control_inputs())

MAX_SEED = 0xFFFFFFFFFFFFFFFF
ADVANCED = {"advanced": True}  # the core's 2026 flag: shown under "advanced inputs"


def variation_inputs():
    """Variation seed (A1111's subseed): appended, advanced."""
    return {
        "variation_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, **ADVANCED,
                                   "tooltip": "Seed of the variation: the image moves toward "
                                              "this seed's image as variation_strength "
                                              "grows."}),
        "variation_strength": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "round": 0.01, **ADVANCED,
                                         "tooltip": "0: the seed's image (bit for bit); 1: the "
                                                    "variation seed's; between: a spherical "
                                                    "interpolation of the two noises (unit "
                                                    "variance kept)."}),
    }


def initial_noise_input():
    return (list(INITIAL_NOISE_TYPES), {
        "default": "gaussian", **ADVANCED,
        "tooltip": "Type of the initial noise. gaussian: the core's (same image as the core "
                   "KSampler); others: zero mean, unit variance per channel, other "
                   "distributions (uniform, laplacian, studentt) or spectra (pyramid, perlin: "
                   "low frequencies heavier; pink/brown: 1/f^a; blue/violet: high)."})


def fresh_noise_input():
    return (list(FRESH_NOISE_TYPES), {
        "default": "brownian", **ADVANCED,
        "tooltip": "Type of the fresh noise of stochastic samplers. brownian: our Brownian "
                   "path (converges as steps grow, same image on every device, a split run "
                   "equals one run); core: the core's own draws per sampler name (keeps the "
                   "core KSampler's image after retyping); the others as for the initial "
                   "noise, drawn per step."})


def noise_type_inputs():
    """Variation and noise types for the KSamplers, appended in this order."""
    return {**variation_inputs(), "noise_type": initial_noise_input(),
            "fresh_noise": fresh_noise_input()}


def variation_value(variation_seed, variation_strength):
    """(seed, strength) or None; ValueError naming the input outside [0, 1]."""
    v = float(variation_strength)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"variation_strength must be in [0, 1] (0: the seed's image, 1: the "
                         f"variation seed's), got {variation_strength!r}")
    return (int(variation_seed), v) if v > 0.0 else None


def check_restart(restart=None):
    """A node's VALIDATE_INPUTS for the restart text: True or the parser's
    message (whether the segments fit the schedule is known at sampling)."""
    if restart is None:
        return True
    try:
        parse_restart(restart)
    except ValueError as exc:
        return f"restart: {exc}"
    return True


def check_sampling_inputs(sampler_name=None, scheduler=None, restart=None, **numbers):
    """One VALIDATE_INPUTS for the sampling nodes: the names (listing ours),
    our optional number widgets' ranges (the host checks only required
    inputs) and the restart text. True or the first message."""
    declared = {"noise_strength": noise_strength_input(), "s_noise": s_noise_input(),
                **control_inputs()}
    for ok in (check_names(sampler_name, scheduler), check_ranges(declared, **numbers),
               check_restart(restart)):
        if ok is not True:
            return ok
    return True


def check_combination(sampler, eta, default_eta, controls):
    """What a node can check of its inputs together once it runs, before any
    model call (the host's validation reports a VALIDATE_INPUTS failure on
    every input the function takes, so relations between inputs are checked
    here, naming each input): restart and churn need the deterministic form
    of the sampler. eta: the node's (None: the sampler's default_eta)."""
    eta = default_eta if eta is None else eta
    if controls.get("restart") and eta > 0.0:
        raise ValueError(f"restart needs a deterministic sampler: {sampler!r} adds noise "
                         f"(noise_strength {eta:g}); set noise_strength to 0, pick a "
                         f"deterministic sampler_name, or clear restart")
    if float(controls.get("s_churn", 0.0)) > 0.0 and eta > 0.0:
        raise ValueError(f"s_churn adds the noise of {sampler!r} itself: it needs "
                         f"noise_strength 0, got {eta:g}")


def control_values(sampler, values):
    """The widgets' values -> (noise_window or None, engine keyword arguments
    s_churn, s_tmin, s_tmax, restart, detail). -1 on a window side keeps the
    sampler's own value there (any value below 0 does: every value the
    widget offers means something); s_tmax 0 is no upper limit."""
    v = {name: values.get(name, decl[1]["default"]) for name, decl in control_inputs().items()}
    start, end = float(v["noise_start"]), float(v["noise_end"])
    window = None
    if start >= 0.0 or end >= 0.0:
        own = SAMPLERS[sampler].noise_window
        window = (own[0] if start < 0.0 else start, own[1] if end < 0.0 else end)
        if not 0.0 <= window[0] <= window[1] <= 1.0:
            raise ValueError(f"noise_start and noise_end must satisfy 0 <= start <= end <= 1 "
                             f"(or -1 for the sampler's own), got start {start}, end {end} "
                             f"({sampler}'s window is {own})")
    s_tmax = float(v["s_tmax"])
    controls = {"s_churn": float(v["s_churn"]), "s_tmin": float(v["s_tmin"]),
                "s_tmax": math.inf if s_tmax == 0.0 else s_tmax, "restart": v["restart"]}
    if float(v["detail_amount"]) != 0.0:
        controls["detail"] = as_detail({k: float(v[f"detail_{k}"])
                                        for k in ("amount", "start", "end", "bias", "exponent")})
    return window, controls


# --- two experts (Wan 2.2's high/low-noise pair): appended, advanced ----------

def expert_inputs():
    """model_low (a socket), boundary, boundary_unit, cfg_low: optional and
    advanced, after every existing input."""
    return {
        "model_low": ("MODEL", {"advanced": True,
                                "tooltip": "Optional second expert: the low-noise model (Wan "
                                           "2.2's low-noise A14B, a refiner). The run switches "
                                           "to it where sigma falls below the boundary: one "
                                           "run, one noise path, a multistep history kept."}),
        "boundary": ("FLOAT", {"default": 875.0, "min": 0.0, "max": 1000.0, "step": 0.001,
                               "round": 0.0001, "advanced": True,
                               "tooltip": "Where model_low takes over: a model timestep "
                                          "(0-1000; Wan 2.2: 875 text-to-video, 900 "
                                          "image-to-video) or a sigma (boundary_unit)."}),
        "boundary_unit": (["timestep", "sigma"], {"default": "timestep", "advanced": True,
                                                  "tooltip": "How boundary is given."}),
        "cfg_low": ("FLOAT", {"default": -1.0, "min": -1.0, "max": 100.0, "step": 0.1,
                              "round": 0.01, "advanced": True,
                              "tooltip": "CFG of the low-noise expert; -1: the same cfg."}),
    }


EXPERT_NAMES = tuple(expert_inputs())


def expert_values(values):
    """The widgets' values -> the engine's experts dict, or None without a
    model_low."""
    if values.get("model_low") is None:
        return None
    decl = expert_inputs()
    out = {k: values.get(k, decl[k][1].get("default")) for k in EXPERT_NAMES}
    cfg_low = float(out["cfg_low"])
    if not (cfg_low == -1.0 or 0.0 <= cfg_low <= 100.0):
        raise ValueError(f"cfg_low must be -1 (the same cfg) or in [0, 100], got {cfg_low}")
    return out

