"""The one table of schedules: stable name -> how to compute it and what it takes.

Names are stable forever: saved workflows refer to them.
"""
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Optional, Tuple

import torch

from . import custom, discrete, formulas, named, tables
from .discrete import Context
from .sampling import as_model_sampling
from ..params import check_options
from .validation import (Param, check_denoise, check_range, check_sigma, check_steps,
                         drop_repeats, finish)

# KSampler semantics compute int(steps / denoise) steps; this bounds that.
MAX_TOTAL_STEPS = 100000

BOTH = ("sigma_min", "sigma_max")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule: `fn(steps, *, sigma_min=None, sigma_max=None,
    model_sigmas=None, model_sampling=None, **params)` returns the checked
    float32 sigmas, like get_sigmas(name, ...). `needs_model_sigmas`: it
    reads the model's sampling, its table or its sigma <-> timestep maps (an
    SD 1.x model stands in when none is given). `sigma_inputs`: which of
    sigma_min / sigma_max it uses; the others are checked but ignored.
    `impl(steps, context, **params)` is the raw float64 computation of the
    whole schedule. `repeats`: its definition can repeat a sigma (a
    zero-length step), and those repeats are dropped. `denoise_impl(steps,
    context, denoise, **params)`: its own rule for denoise < 1, instead of
    the KSampler's (see ksampler_sigmas)."""
    name: str
    fn: Callable
    needs_model_sigmas: bool
    params: Dict[str, Param]
    description: str
    sigma_inputs: Tuple[str, ...] = BOTH
    impl: Callable = field(default=None, repr=False, compare=False)
    repeats: bool = False
    denoise_impl: Optional[Callable] = field(default=None, repr=False, compare=False)

    @property
    def defaults(self):
        return {k: p.default for k, p in self.params.items()}


def _float(default, lo, hi, description, lo_open=False, hi_open=False, step=None):
    return Param(default, lo, hi, description, kind="float", lo_open=lo_open,
                 hi_open=hi_open, step=step)


_RHO_KARRAS = _float(7.0, 0.0, 100.0, "curvature: larger rho packs steps at low noise",
                     lo_open=True)
_RHO_POLY = _float(1.0, 0.0, 100.0, "exponent of the ramp in log sigma; 1 is exponential",
                   lo_open=True)

_ALPHA = _float(0.6, 0.0, 50.0, "Beta distribution alpha (a < 1: more steps at high noise)",
                lo_open=True)
_BETA = _float(0.6, 0.0, 50.0, "Beta distribution beta (b < 1: more steps at low noise)",
               lo_open=True)
_PIXELS = Param(1024, 16, 16384, "image size in pixels (our KSampler reads it from the latent)",
                kind="int")
_PIVOT = "where the arctan step of stage {} is steepest, as a fraction of the steps"
_SLOPE = "steepness of the arctan step of stage {} (per 40 steps)"

# name -> (impl, needs_model_sigmas, sigma_inputs, params, description).
# Names whose widget values are saved in workflows: append only, at the end.
_TABLE = {
    "normal": (discrete.normal, True, BOTH, {},
               "evenly spaced model timesteps from sigma_max's to sigma_min's, mapped back "
               "through the model (the host's normal)"),
    "karras": (formulas.karras, False, BOTH, {"rho": _RHO_KARRAS},
               "Karras et al. 2022: uniform in sigma^(1/rho)"),
    "exponential": (formulas.exponential, False, BOTH, {},
                    "uniform in log sigma"),
    "polyexponential": (formulas.polyexponential, False, BOTH, {"rho": _RHO_POLY},
                        "log sigma along a power ramp"),
    "simple": (discrete.simple, True, (), {},
               "every (len/steps)-th table entry from the top (the host's simple); past "
               "the table's length every entry once"),
    "sgm_uniform": (discrete.sgm_uniform, True, BOTH, {},
                    "normal with the last timestep dropped (SGM / turbo models)"),
    "ddim_uniform": (discrete.ddim_uniform, True, (), {},
                     "DDIM leading spacing with offset 1, as the host (more steps than asked "
                     "when the table length is not a multiple)"),
    "beta": (discrete.beta_schedule, True, (), {"alpha": _ALPHA, "beta": _BETA},
             "table entries at Beta(alpha, beta) quantiles of the timesteps, repeats "
             "dropped (arXiv 2407.12173; the host's beta)"),
    "linear_quadratic": (formulas.linear_quadratic, False, ("sigma_max",),
                         {"threshold_noise": _float(0.025, 0.0, 1.0,
                                                    "noise fraction removed in the linear phase",
                                                    lo_open=True, hi_open=True),
                          "linear_steps": Param(None, 0, 10000,
                                                "steps in the linear phase (at most steps); "
                                                "None: steps // 2", kind="int")},
                         "Mochi: linear then quadratic in sigma / sigma_max"),
    "kl_optimal": (formulas.kl_optimal, False, BOTH, {},
                   "uniform in atan(sigma) (arXiv 2404.14507)"),
    "laplace": (formulas.laplace, False, BOTH,
                {"mu": _float(0.0, -10.0, 10.0, "log sigma at the centre of the schedule"),
                 "beta": _float(0.5, 0.0, 10.0, "spread: larger beta spends fewer steps "
                                                "near mu", lo_open=True)},
                "Hang et al. 2024 Laplace schedule in log sigma"),
    "vp": (formulas.vp, False, (),
           {"beta_d": _float(19.9, 0.0, 100.0, "VP SDE beta_d", lo_open=True),
            "beta_min": _float(0.1, 0.0, 100.0, "VP SDE beta_min"),
            "eps_s": _float(1e-3, 0.0, 1.0, "last time of the VP SDE", lo_open=True,
                            hi_open=True)},
           "Song et al. 2021 VP SDE; its own sigma range"),
    "align_your_steps": (tables.align_your_steps, False, (),
                         {"model_type": Param("SD1", None, None,
                                              "which published schedule",
                                              kind="choice", choices=tables.AYS_MODELS)},
                         "NVIDIA Align Your Steps tables (10 steps, interpolated otherwise)"),
    "gits": (tables.gits, False, (),
             {"coeff": _float(1.20, 0.80, 1.50, "GITS coefficient (published grid: 0.05)",
                              step=0.05)},
             "GITS tables (Chen et al. 2024), 2-20 steps, interpolated beyond"),
    "custom": (custom.custom, False, (),
               {"text": Param("", None, None, "sigmas, comma separated, largest first",
                              kind="text")},
               "sigmas typed as text; steps must match"),
    "bong_tangent": (formulas.bong_tangent, False, ("sigma_max",),
                     {"middle": _float(0.5, 0.0, 1.0, "sigma where the two stages meet, as "
                                                      "a fraction of sigma_max",
                                       lo_open=True, hi_open=True),
                      "pivot_1": _float(0.6, 0.0, 1.0, _PIVOT.format(1)),
                      "pivot_2": _float(0.6, 0.0, 1.0, _PIVOT.format(2)),
                      "slope_1": _float(0.2, 0.0, 100.0, _SLOPE.format(1), lo_open=True),
                      "slope_2": _float(0.2, 0.0, 100.0, _SLOPE.format(2), lo_open=True)},
                     "RES4LYF's two-stage arctan schedule, in units of sigma_max"),
    "beta57": (partial(discrete.beta_schedule, alpha=0.5, beta=0.7), True, (), {},
               "beta with alpha 0.5, beta 0.7 (RES4LYF's beta57)"),
    "optimal_steps": (tables.optimal_steps, False, (),
                      {"model_type": Param("FLUX", None, None, "which published schedule",
                                           kind="choice", choices=tables.OSS_MODELS)},
                      "Optimal Stepsize tables for flow models (arXiv 2503.21774), "
                      "interpolated for other step counts"),
    "sd_turbo": (discrete.sd_turbo, True, (), {},
                 "SD-Turbo: every 100th timestep from 999 (at most 10 steps); denoise "
                 "starts further down the same grid"),
    "ltxv": (formulas.ltxv, False, (),
             {"max_shift": _float(2.05, 0.0, 100.0, "shift at 4096 tokens"),
              "base_shift": _float(0.95, 0.0, 100.0, "shift at 1024 tokens"),
              "stretch": Param("true", None, None, "stretch so the last sigma before 0 is "
                                                   "terminal", kind="choice",
                               choices=("true", "false")),
              "terminal": _float(0.1, 0.0, 0.99, "last sigma before 0 when stretched",
                                 lo_open=True),
              "tokens": Param(4096, 1, 2 ** 31 - 1, "latent tokens (frames x height x "
                                                    "width of the latent)", kind="int")},
             "LTX-Video: linear sigmas through a token-count shift, stretched to terminal"),
    # --- the 2026 core's resolution-aware schedules (width, height: the image's
    # pixels; our KSampler reads them from the latent) ---------------------------
    "flux2": (named.flux2, False, (), {"width": _PIXELS, "height": _PIXELS},
              "FLUX.2 (the core's Flux2Scheduler): uniform t through the exponential shift "
              "mu of the image's token count and the step count"),
    "ideogram4": (named.ideogram4, False, (),
                  {"width": _PIXELS, "height": _PIXELS,
                   "mu": _float(0.0, -10.0, 10.0, "log-SNR shift added to the resolution's"),
                   "std": _float(1.75, 0.1, 5.0, "spread of the logit-normal quantiles")},
                  "Ideogram 4 (the core's Ideogram4Scheduler): logit-normal quantiles shifted "
                  "by the image's resolution"),
    # --- step-distilled models: their published lists ---------------------------
    "lightning_wan22_4": (named.lightning_wan22_4, False, (), {},
                          "Wan2.2-Lightning's 4 steps: timesteps 1000, 937.5, 833.3, 625 "
                          "(steps must be 4)"),
    "lightning_wan22_8": (named.lightning_wan22_8, False, (), {},
                          "Wan2.2-Lightning's 8-step list (steps must be 8)"),
    "flux2_dev_turbo_8": (named.flux2_dev_turbo_8, False, (), {},
                          "FLUX.2-dev-Turbo's 8 published sigmas (steps must be 8)"),
    "trailing": (named.trailing, True, (), {},
                 "trailing timesteps (999, 749, 499, 249 at 4 steps): SDXL-Lightning, "
                 "Hyper-SD"),
    "lcm": (named.lcm, True, (), {},
            "LCM's and TCD's timesteps on their 50-step grid (999, 759, 499, 259 at 4 steps)"),
}
# Own rules where the KSampler's denoise (more steps, keep the tail) is not
# the schedule's: SD-Turbo starts further down its fixed grid.
_DENOISE = {"sd_turbo": discrete.sd_turbo_denoised}
# Table look-ups repeat a sigma where the table does (a clamped table, e.g.
# Stable Cascade's) or, for simple, past the table's length.
_REPEATS = {"simple", "ddim_uniform", "beta", "beta57"}


def _make_fn(name):
    def fn(steps, *, sigma_min=None, sigma_max=None, model_sigmas=None, model_sampling=None,
           **params):
        return get_sigmas(name, steps, sigma_min=sigma_min, sigma_max=sigma_max,
                          model_sigmas=model_sigmas, model_sampling=model_sampling, **params)
    fn.__name__ = f"{name}_sigmas"
    fn.__doc__ = f"Sigmas of the {name!r} schedule; see schedules.get_sigmas."
    return fn


SCHEDULES = {
    name: ScheduleSpec(name=name, fn=_make_fn(name), needs_model_sigmas=needs,
                       params=params, description=description, sigma_inputs=inputs,
                       impl=impl, repeats=name in _REPEATS, denoise_impl=_DENOISE.get(name))
    for name, (impl, needs, inputs, params, description) in _TABLE.items()
}
SCHEDULE_NAMES = list(SCHEDULES)


def get_schedule(name):
    spec = SCHEDULES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown schedule {name!r}; known schedules: "
                         f"{', '.join(SCHEDULE_NAMES)}")
    return spec


def get_sigmas(name, steps, *, sigma_min=None, sigma_max=None, model_sigmas=None,
               model_sampling=None, **params):
    """The `name` schedule for `steps` steps: float32 sigmas, strictly
    decreasing, ending in 0. That is steps + 1 values, except where the
    definition (the host's, for its names) gives another count: ddim_uniform
    (more steps when the table length is not a multiple of steps), beta and
    beta57 (repeated timesteps dropped), simple past the table's length
    (each entry once); normal and ddim_uniform end at the model's smallest
    sigma instead of 0 when that is within 1e-5 of 0.

    model_sampling: a schedules.ModelSampling description of the model (its
    table and sigma <-> timestep maps; nodes/host.py builds it from the
    host's model_sampling). model_sigmas: a bare increasing sigma table,
    read as a discrete (eps / v) model. With neither, the SD 1.x model.
    sigma_min/sigma_max default to the model's range.
    """
    return ksampler_sigmas(name, steps, 1.0, sigma_min=sigma_min, sigma_max=sigma_max,
                           model_sigmas=model_sigmas, model_sampling=model_sampling, **params)


def _drop_penultimate(values):
    return values if len(values) < 3 else list(values[:-2]) + [values[-1]]


def ksampler_sigmas(name, steps, denoise=1.0, *, discard_penultimate=False, sigma_min=None,
                    sigma_max=None, model_sigmas=None, model_sampling=None, **params):
    """The sigmas a KSampler runs for `steps` steps at `denoise`, with the
    host's semantics: denoise <= 0 gives no sigmas (an empty tensor);
    denoise < 1 computes int(steps / denoise) steps and keeps the last
    steps + 1 sigmas; `discard_penultimate` (the host's rule for dpm_2 and
    uni_pc) computes one step more and drops the second-to-last sigma.
    A schedule with its own denoise rule (sd_turbo) uses that instead.
    Repeated sigmas of a definition are dropped last (see get_sigmas).

    The other arguments are get_sigmas's. Raises ValueError naming the input.
    """
    spec = get_schedule(name)
    steps = check_steps(steps)
    denoise = check_denoise(denoise)
    values = check_options("schedule", spec.name, spec.params, params, noun="parameter")
    sampling = as_model_sampling(model_sampling, model_sigmas, discrete.sd1_sampling)
    lo = check_sigma("sigma_min", sigma_min)
    hi = check_sigma("sigma_max", sigma_max)
    lo = sampling.sigma_min if lo is None else lo
    hi = sampling.sigma_max if hi is None else hi
    check_range(lo, hi)
    ctx = Context(sigma_min=lo, sigma_max=hi, sampling=sampling)
    if denoise <= 0.0:
        return torch.zeros(0)
    full = denoise > 0.9999
    extra = 1 if discard_penultimate else 0
    if spec.denoise_impl is not None:
        raw = spec.denoise_impl(steps + extra, ctx, 1.0 if full else denoise, **values)
        tail = None
    else:
        total = steps if full else int(steps / denoise)
        if total + extra > MAX_TOTAL_STEPS:
            raise ValueError(f"steps / denoise must be at most {MAX_TOTAL_STEPS}, got "
                             f"{steps} / {denoise:g}")
        raw = spec.impl(total + extra, ctx, **values)
        tail = None if full else steps + 1
    raw = list(raw)
    if discard_penultimate:
        raw = _drop_penultimate(raw)
    if tail is not None:
        raw = raw[-tail:]
    if spec.repeats:
        raw = drop_repeats(raw)
    return finish(name, raw)
