"""The one table of schedules: stable name -> how to compute it and what it takes.

Names are stable forever: saved workflows refer to them.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Tuple

from . import custom, discrete, formulas, tables
from .discrete import Context
from .validation import (Param, check_model_sigmas, check_range, check_sigma, check_steps,
                         finish)

BOTH = ("sigma_min", "sigma_max")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule: `fn(steps, *, sigma_min=None, sigma_max=None,
    model_sigmas=None, **params)` returns the checked float32 sigmas, like
    get_sigmas(name, ...). `needs_model_sigmas`: it reads the model's table
    (the SD 1.x table stands in when none is given). `sigma_inputs`: which of
    sigma_min / sigma_max it uses; the others are checked but ignored.
    `impl(steps, context, **params)` is the raw float64 computation."""
    name: str
    fn: Callable
    needs_model_sigmas: bool
    params: Dict[str, Param]
    description: str
    sigma_inputs: Tuple[str, ...] = BOTH
    impl: Callable = field(default=None, repr=False, compare=False)

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

# name -> (impl, needs_model_sigmas, sigma_inputs, params, description)
_TABLE = {
    "normal": (discrete.normal, True, BOTH, {},
               "evenly spaced timesteps between the table entries nearest sigma_max and "
               "sigma_min (the host's normal)"),
    "karras": (formulas.karras, False, BOTH, {"rho": _RHO_KARRAS},
               "Karras et al. 2022: uniform in sigma^(1/rho)"),
    "exponential": (formulas.exponential, False, BOTH, {},
                    "uniform in log sigma"),
    "polyexponential": (formulas.polyexponential, False, BOTH, {"rho": _RHO_POLY},
                        "log sigma along a power ramp"),
    "simple": (discrete.simple, True, (), {},
               "every (len/steps)-th table entry from the top (the host's simple); "
               "steps <= table length"),
    "sgm_uniform": (discrete.sgm_uniform, True, BOTH, {},
                    "normal with the last timestep dropped (SGM / turbo models)"),
    "ddim_uniform": (discrete.ddim_uniform, True, (), {},
                     "DDIM leading spacing with offset 1; steps < table length"),
    "beta": (discrete.beta_schedule, True, BOTH,
             {"alpha": _float(0.6, 0.0, 50.0, "Beta distribution alpha (a < 1: more steps "
                                              "at high noise)", lo_open=True),
              "beta": _float(0.6, 0.0, 50.0, "Beta distribution beta (b < 1: more steps "
                                             "at low noise)", lo_open=True)},
             "timesteps at Beta(alpha, beta) quantiles (arXiv 2407.12173)"),
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
}


def _make_fn(name):
    def fn(steps, *, sigma_min=None, sigma_max=None, model_sigmas=None, **params):
        return get_sigmas(name, steps, sigma_min=sigma_min, sigma_max=sigma_max,
                          model_sigmas=model_sigmas, **params)
    fn.__name__ = f"{name}_sigmas"
    fn.__doc__ = f"Sigmas of the {name!r} schedule; see schedules.get_sigmas."
    return fn


SCHEDULES = {
    name: ScheduleSpec(name=name, fn=_make_fn(name), needs_model_sigmas=needs,
                       params=params, description=description, sigma_inputs=inputs,
                       impl=impl)
    for name, (impl, needs, inputs, params, description) in _TABLE.items()
}
SCHEDULE_NAMES = list(SCHEDULES)


def get_schedule(name):
    spec = SCHEDULES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ValueError(f"unknown schedule {name!r}; known schedules: "
                         f"{', '.join(SCHEDULE_NAMES)}")
    return spec


def _check_params(spec, params):
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        allowed = ", ".join(spec.params) or "none"
        raise ValueError(f"unknown parameter {', '.join(map(repr, unknown))} for schedule "
                         f"{spec.name!r}; its parameters: {allowed}")
    values = spec.defaults
    for key, value in params.items():
        values[key] = spec.params[key].check(f"{spec.name}: {key}", value)
    return values


def get_sigmas(name, steps, *, sigma_min=None, sigma_max=None, model_sigmas=None, **params):
    """The `name` schedule for `steps` steps: a float32 tensor of steps + 1
    strictly decreasing sigmas ending in exactly 0.

    model_sigmas: the model's increasing discrete sigma table (the host's
    model_sampling.sigmas); the SD 1.x table when None. sigma_min/sigma_max
    default to its smallest and largest entries.
    """
    spec = get_schedule(name)
    steps = check_steps(steps)
    values = _check_params(spec, params)
    table = check_model_sigmas(model_sigmas)
    if table is None:
        table = discrete.default_table()
    lo = check_sigma("sigma_min", sigma_min)
    hi = check_sigma("sigma_max", sigma_max)
    lo = float(table[0]) if lo is None else lo
    hi = float(table[-1]) if hi is None else hi
    check_range(lo, hi)
    ctx = Context(sigma_min=lo, sigma_max=hi, table=table)
    return finish(name, steps, spec.impl(steps, ctx, **values))
