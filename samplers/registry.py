"""The one table of samplers: stable name -> how to run it and what it is.

Names are stable forever: workflows saved by users refer to them.
"""
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional, Tuple

from . import adaptive, exponential, multistep, runge_kutta, unipc
from .core import Run, as_sigma_tensor


@dataclass(frozen=True)
class Option:
    """A method option: its default and what values it accepts."""
    default: Any
    kind: str                       # "int", "float", "choice", "dict"
    lo: float = -math.inf
    hi: float = math.inf
    choices: Tuple[str, ...] = ()
    help: str = ""

    def check(self, sampler, name, value):
        where = f"{sampler} option {name}"
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{where} must be one of {list(self.choices)}, got {value!r}")
            return value
        if self.kind == "dict":
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{where} must be a dict (filled with run statistics) or None")
            return value
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "int" and not is_int:
            raise ValueError(f"{where} must be an integer in [{self.lo}, {self.hi}], got {value!r}")
        if self.kind == "float" and not (is_int or isinstance(value, float)):
            raise ValueError(f"{where} must be a number in [{self.lo}, {self.hi}], got {value!r}")
        if not (math.isfinite(value) and self.lo <= value <= self.hi):
            raise ValueError(f"{where} must be in [{self.lo}, {self.hi}], got {value!r}")
        return int(value) if self.kind == "int" else float(value)


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    impl: Callable                  # impl(run, **options) -> x
    order: int                      # convergence order of the deterministic form
    calls_per_step: Optional[int]   # model calls per schedule step; None: adaptive
    default_eta: float
    description: str
    family: str
    option_specs: dict = field(default_factory=dict)
    fn: Callable = None

    @property
    def stochastic(self):
        return self.default_eta > 0

    @property
    def options(self):
        return {k: o.default for k, o in self.option_specs.items()}


def _make_fn(spec):
    def fn(model, x, sigmas, *, extra_args=None, callback=None, disable=None,
           process="ve", eta=None, s_noise=1.0, noise=None, **options):
        unknown = sorted(set(options) - set(spec.option_specs))
        if unknown:
            allowed = sorted(spec.option_specs) or "none"
            raise ValueError(
                f"sampler {spec.name!r} has no option {', '.join(unknown)}; its options: {allowed}")
        opts = {k: o.default for k, o in spec.option_specs.items()}
        for k, v in options.items():
            opts[k] = spec.option_specs[k].check(spec.name, k, v)
        sigmas_t = as_sigma_tensor(sigmas)
        if sigmas_t.ndim == 1 and sigmas_t.shape[0] <= 1:
            return x  # nothing to integrate; the host does the same
        run = Run(model, x, sigmas_t, extra_args=extra_args, callback=callback,
                  disable=disable, process=process,
                  eta=spec.default_eta if eta is None else eta,
                  s_noise=s_noise, noise=noise)
        return spec.impl(run, **opts)

    fn.__name__ = f"sample_{spec.name}"
    fn.__doc__ = spec.description
    return fn


_ORDER = Option(4, "int", 1, 4, help="How many past steps the multistep formula uses.")

_TABLE = [
    # name, impl, order, calls/step, default eta, family, options, description
    ("euler", partial(runge_kutta.sample_rk, tableau=runge_kutta.EULER), 1, 1, 0.0,
     "runge_kutta", {},
     "Euler's method on the probability-flow ODE (Karras et al. 2022, "
     "arXiv:2206.00364). eta > 0 adds ancestral noise."),
    ("euler_ancestral", partial(runge_kutta.sample_rk, tableau=runge_kutta.EULER), 1, 1, 1.0,
     "runge_kutta", {},
     "Euler steps with ancestral noise (Ho et al. 2020, arXiv:2006.11239; "
     "k-diffusion). eta = 0 is plain Euler."),
    ("heun", partial(runge_kutta.sample_rk, tableau=runge_kutta.HEUN), 2, 2, 0.0,
     "runge_kutta", {},
     "Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Alg. 1)."),
    ("lms", partial(multistep.sample_multistep, method=multistep.LMS), 4, 1, 0.0,
     "multistep", {"order": _ORDER},
     "Linear multistep in sigma with variable-step Lagrange coefficients "
     "(k-diffusion; Adams-Bashforth, Hairer et al. 'Solving ODEs I')."),
    ("ddim", exponential.sample_ddim, 1, 1, 0.0, "exponential", {},
     "DDIM (Song et al. 2021, arXiv:2010.02502): eta = 0 deterministic, "
     "eta = 1 DDPM-like ancestral sampling."),
    # PLMS and iPNDM use the fixed equal-step Adams-Bashforth weights: fourth
    # order on uniform steps, second order on the smooth non-uniform schedules
    # (karras, shifted flow) people run, which is what `order` reports.
    ("plms", partial(multistep.sample_multistep, method=multistep.PLMS, order=4), 2, 1, 0.0,
     "multistep", {},
     "Pseudo linear multistep (PNDM, Liu et al. 2022, arXiv:2202.09778): "
     "Adams-Bashforth weights for equal steps with a pseudo-Heun first step "
     "(one extra call)."),
    ("dpm_2", partial(runge_kutta.sample_rk, tableau=runge_kutta.DPM_2), 2, 2, 0.0,
     "runge_kutta", {},
     "DPM-Solver-2 style midpoint step in log sigma (Lu et al. 2022, "
     "arXiv:2206.00927; k-diffusion)."),
    ("dpm_2_ancestral", partial(runge_kutta.sample_rk, tableau=runge_kutta.DPM_2), 2, 2, 1.0,
     "runge_kutta", {},
     "DPM-2 with ancestral noise (Lu et al. 2022, arXiv:2206.00927; k-diffusion)."),
    ("dpm_fast", adaptive.sample_dpm_fast, 3, 1, 0.0, "exponential", {},
     "DPM-Solver fast: orders 3/2/1 on uniform lambda steps, then a final "
     "denoise (Lu et al. 2022, arXiv:2206.00927, Sec. 4)."),
    ("dpm_adaptive", adaptive.sample_dpm_adaptive, 3, None, 0.0, "exponential",
     {"order": Option(3, "int", 2, 3, help="Solver order (2 or 3)."),
      "rtol": Option(0.05, "float", 1e-8, 1.0, help="Relative error tolerance."),
      "atol": Option(0.0078, "float", 1e-10, 10.0, help="Absolute error tolerance."),
      "h_init": Option(0.05, "float", 1e-6, 10.0, help="First step size in lambda."),
      "pcoeff": Option(0.0, "float", -10.0, 10.0, help="PID controller P gain."),
      "icoeff": Option(1.0, "float", -10.0, 10.0, help="PID controller I gain."),
      "dcoeff": Option(0.0, "float", -10.0, 10.0, help="PID controller D gain."),
      "accept_safety": Option(0.81, "float", 0.0, 1.0,
                              help="Accept a step when its error is below this."),
      "info": Option(None, "dict", help="A dict that receives nfe, n_accept, n_reject.")},
     "DPM-Solver adaptive step size (Lu et al. 2022, arXiv:2206.00927, Sec. 4; "
     "PID control after Soderlind 2003); ends with a denoise to sigma 0."),
    ("dpmpp_2s_ancestral", exponential.sample_dpmpp_2s, 2, 2, 1.0, "exponential", {},
     "DPM-Solver++(2S) with ancestral noise (Lu et al. 2023, arXiv:2211.01095)."),
    ("dpmpp_2m", partial(exponential.sample_dpmpp_multistep, order=2), 2, 1, 0.0,
     "exponential", {"solver_type": Option("midpoint", "choice", choices=("midpoint", "heun"))},
     "DPM-Solver++(2M) (Lu et al. 2023, arXiv:2211.01095); eta > 0 gives its SDE form."),
    ("dpmpp_sde", exponential.sample_dpmpp_sde, 2, 2, 1.0, "exponential",
     {"r": Option(0.5, "float", 0.01, 0.99, help="Stage position as a fraction of the step in lambda.")},
     "DPM-Solver++ SDE, second order, noise at both stages (Lu et al. 2023, "
     "arXiv:2211.01095; k-diffusion)."),
    ("dpmpp_2m_sde", partial(exponential.sample_dpmpp_multistep, order=2), 2, 1, 1.0,
     "exponential", {"solver_type": Option("midpoint", "choice", choices=("midpoint", "heun"))},
     "SDE-DPM-Solver++(2M) (Lu et al. 2023, arXiv:2211.01095); eta = 0 is DPM++ 2M."),
    # Measured, not assumed: the 3M update as k-diffusion and diffusers write it
    # weights the second difference D2 ~ h^2 D''/2 by h/6 where the Taylor
    # expansion asks for h/3, so it converges at second order. We keep the
    # host's formula so that images match the core sampler.
    ("dpmpp_3m_sde", partial(exponential.sample_dpmpp_multistep, order=3), 2, 1, 1.0,
     "exponential", {},
     "DPM-Solver++(3M) SDE (Lu et al. 2023, arXiv:2211.01095; k-diffusion's "
     "update, which converges at second order)."),
    ("uni_pc", partial(unipc.sample_unipc, variant="bh1"), 3, 1, 0.0, "exponential",
     {"order": Option(3, "int", 1, 3, help="Predictor/corrector order.")},
     "UniPC with B(h) = h (Zhao et al. 2023, arXiv:2302.04867); predictor-"
     "corrector at one call per step."),
    ("uni_pc_bh2", partial(unipc.sample_unipc, variant="bh2"), 3, 1, 0.0, "exponential",
     {"order": Option(3, "int", 1, 3, help="Predictor/corrector order.")},
     "UniPC with B(h) = e^h - 1 (Zhao et al. 2023, arXiv:2302.04867)."),
    ("deis", partial(multistep.sample_multistep, method=multistep.DEIS), 3, 1, 0.0,
     "multistep", {"order": Option(3, "int", 1, 4, help="Polynomial order of the eps extrapolation.")},
     "DEIS: exponential Adams-Bashforth on the noise prediction in lambda "
     "(Zhang & Chen 2023, arXiv:2204.13902)."),
    ("ipndm", partial(multistep.sample_multistep, method=multistep.IPNDM), 2, 1, 0.0,
     "multistep", {"order": _ORDER},
     "Improved PNDM: Adams-Bashforth with lower-order warm-up (Zhang & Chen "
     "2023, arXiv:2204.13902)."),
]

SAMPLERS = {}
for _name, _impl, _order, _calls, _eta, _family, _opts, _desc in _TABLE:
    _spec = SamplerSpec(_name, _impl, _order, _calls, _eta, _desc, _family, dict(_opts))
    object.__setattr__(_spec, "fn", _make_fn(_spec))
    SAMPLERS[_name] = _spec

SAMPLER_NAMES = list(SAMPLERS)

# Samplers whose stochastic form is the SDE's exponential decay e^(-eta h)
# (Lu et al. 2023, SDE-DPM-Solver++) rather than the ancestral split.
_SDE_DECAY = {"dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"}


def noise_fractions(name, sigmas, *, process="ve", eta=None):
    """Per step i, the fraction of the noise standard deviation at
    sigmas[i + 1] that sampler `name` draws fresh in that step (0 = none,
    1 = all of it), at noise strength `eta` (None: the sampler's default).
    A list of len(sigmas) - 1 floats; the last step to 0 adds none.

    Raises ValueError for an unknown sampler, a bad eta or bad sigmas."""
    from .core import _float_arg, read_sigmas
    from .process import get_process

    spec = get_sampler(name)
    proc = get_process(process)
    eta = _float_arg("eta (noise strength)", spec.default_eta if eta is None else eta, 0.0)
    sig = read_sigmas(as_sigma_tensor(sigmas), proc)
    out = []
    for s, s_next in zip(sig[:-1], sig[1:]):
        if eta == 0.0 or s_next == 0.0:
            out.append(0.0)
        elif name in _SDE_DECAY:
            out.append(math.sqrt(max(0.0, 1.0 - proc.decay(s, s_next) ** (2.0 * eta))))
        else:
            _, up = proc.ancestral_split(s, s_next, eta)
            out.append(up / proc.snr_sigma(s_next))
    return out


def get_sampler(name):
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown sampler {name!r}; Sampler Lab has: {', '.join(SAMPLER_NAMES)}") from None
