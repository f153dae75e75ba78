"""The one table of samplers: stable name -> (method, noise rule, default eta,
options, description, facts). A sampler is a row over independent choices
(DESIGN.md, "Engine v2"): the frame and method (methods.py, built from the
row's options), the noise rule (noise_rules.py) and the loop (the fixed grid
of core.sample_grid; DPM-Solver's own lambda grid and adaptive loop).
Variants (ancestral, SDE, _gpu, ODE forms) are rows, not functions.

Names are stable forever: workflows saved by users refer to them. Where the
newest ComfyUI has a sampler of the same algorithm, the name is its name.
"""
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Optional, Tuple

from . import dpm_solver
from .cfgpp_history import sample_cfgpp_history
from . import methods as M
from .controls import parse_restart, restart_pieces
from .core import (Run, as_sigma_tensor, read_sigmas, sample_grid, sample_restart,
                   window_sigmas)
from .noise_rules import get_rule
from .process import get_process
from ..params import Param, check_options, number


@dataclass(frozen=True)
class SamplerSpec:
    """A registry row. `build(**options)` makes the method (a methods.Method,
    or a loop function for DPM-Solver's own grids); `rule` names the noise
    rule; `order` is the convergence order of the deterministic form;
    `calls_per_step` the model calls of an ordinary step (None: adaptive);
    `calls(sigmas, eta, process, **options)` the exact count for a schedule."""
    name: str
    build: Callable
    rule: str
    order: int
    calls_per_step: Optional[int]
    default_eta: float
    description: str
    family: str
    option_specs: dict = field(default_factory=dict)
    fn: Callable = None
    # Where noise may enter, as fractions of the model's process (0 = pure
    # noise, 1 = clean): SA-Solver's default interval, everything elsewhere.
    noise_window: Tuple[float, float] = (0.0, 1.0)
    # CFG++: needs the unconditional prediction of each model call (`uncond`)
    cfg_pp: bool = False
    # Takes Karras churn (s_churn, s_tmin, s_tmax), as k-diffusion's and
    # A1111's euler, heun and dpm_2 do
    churn: bool = False
    # Why it cannot unsample (increasing sigmas); None: it can
    no_unsample: Optional[str] = None
    # A schedule can be tuned for it (schedules/optimize.py); False where the
    # sampler lays its own steps over the range (DPM-Solver's lambda grids)
    tunable: bool = True

    def __post_init__(self):
        # the row's callable, made once (a frozen field, as diffrax's tableaus
        # derive theirs)
        if self.fn is None:
            object.__setattr__(self, "fn", _make_fn(self))

    @property
    def stochastic(self):
        return self.default_eta > 0

    def eta_or_default(self, eta=None):
        """The noise strength a run uses: `eta`, or this sampler's default
        where None (the nodes' -1). Checked where the run is made (core.Run)."""
        return self.default_eta if eta is None else eta

    @property
    def options(self):
        return {k: o.default for k, o in self.option_specs.items()}

    def checked_options(self, options):
        return check_options("sampler", self.name, self.option_specs, options)

    def method(self, **options):
        return self.build(**{k: v for k, v in self.checked_options(options).items()
                             if k != "info"})

    def calls(self, sigmas, eta=None, process="ve", noise_window=None, restart=None, **options):
        """Model calls this sampler spends on `sigmas` (None where the step
        count is adaptive), restarts included. Churn and detail change no
        count."""
        if self.calls_per_step is None:
            return None
        proc = get_process(process)
        sig = read_sigmas(as_sigma_tensor(sigmas), proc)
        if len(sig) <= 1:
            return 0
        eta = self.eta_or_default(eta)
        method = self.method(**options)
        pieces = [p.sig for p in restart_pieces(sig, parse_restart(restart), proc)] \
            if restart is not None else [sig]
        if not isinstance(method, M.Method):  # DPM-Solver fast: n calls for n steps
            return sum(len(p) - 1 for p in pieces)
        rule = get_rule(self.rule)
        hi, lo = window_sigmas(proc, self.noise_window if noise_window is None else noise_window)

        def split(s, s_next):
            if eta == 0.0 or s_next == 0.0 or not lo <= s_next <= hi:
                return s_next, 0.0
            return rule.split(proc, s, s_next, eta)
        return sum(method.calls(list(p), split) for p in pieces)

    def check_controls(self, run, segments):
        """Which controls this sampler takes on this run; ValueError naming
        the control and what it needs otherwise."""
        if run.s_churn > 0.0:
            if not self.churn:
                takers = [n for n, s in SAMPLERS.items() if s.churn]
                raise ValueError(f"s_churn applies to {', '.join(takers)} (Karras et al. 2022, "
                                 f"Alg. 2), not to {self.name!r}; use eta for its noise")
            if run.eta > 0.0:
                raise ValueError(f"s_churn adds the noise of {self.name!r} itself: it needs eta "
                                 f"(noise strength) = 0, got {run.eta}")
        if run.increasing and self.no_unsample:
            raise ValueError(f"sampler {self.name!r} cannot unsample (increasing sigmas): "
                             f"{self.no_unsample}")
        if segments:
            if run.increasing:
                raise ValueError("restart needs decreasing sigmas (it samples; increasing "
                                 "sigmas unsample)")
            if run.eta > 0.0 or run.s_churn > 0.0:
                raise ValueError(f"restart composes over a deterministic sampler: it needs eta "
                                 f"(noise strength) = 0 and s_churn = 0, got eta = {run.eta}, "
                                 f"s_churn = {run.s_churn}; {self.name!r} adds its own noise")


def _make_fn(spec):
    def fn(model, x, sigmas, *, extra_args=None, callback=None, disable=None,
           process="ve", eta=None, s_noise=1.0, noise=None, noise_window=None, uncond=None,
           s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, restart=None, detail=None,
           noise_rule=None, **options):
        opts = spec.checked_options(options)
        segments = parse_restart(restart)
        if spec.cfg_pp and not callable(uncond):
            raise ValueError(
                f"sampler {spec.name!r} is a CFG++ sampler: it needs uncond, a callable that "
                f"returns the unconditional prediction of the last model call. Sampler Lab's "
                f"nodes provide it from the host's CFG; elsewhere pass it, or use "
                f"{spec.name.replace('_cfg_pp', '')!r}")
        sigmas_t = as_sigma_tensor(sigmas)
        if sigmas_t.ndim == 1 and sigmas_t.shape[0] <= 1:
            return x  # nothing to integrate; the host does the same
        run = Run(model, x, sigmas_t, extra_args=extra_args, callback=callback,
                  disable=disable, process=process,
                  eta=spec.eta_or_default(eta),
                  s_noise=s_noise, noise=noise,
                  rule=spec.rule if noise_rule is None else noise_rule,
                  noise_window=spec.noise_window if noise_window is None else noise_window,
                  uncond=uncond, s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, detail=detail)
        spec.check_controls(run, segments)
        info = opts.pop("info", None)
        method = spec.build(**opts)
        if isinstance(method, M.Method):
            def solve(r):
                return sample_grid(r, method, cfg_pp=spec.cfg_pp)
        elif "info" in spec.option_specs:
            def solve(r):
                return method(r, info=info)
        else:
            solve = method
        if segments:
            return sample_restart(run, restart_pieces(run.sig, segments, run.proc), solve)
        return solve(run)

    fn.__name__ = f"sample_{spec.name}"
    fn.__doc__ = spec.description
    return fn


# --- options shared by several rows ----------------------------------------------

def _order(default, lo, hi, what="How many past steps the multistep formula uses."):
    return Param(default, lo, hi, what, kind="int")


_SOLVER_TYPE = Param("midpoint", None, None,
                     "How the second-order term is weighted: midpoint (DPM-Solver++ paper) or "
                     "heun (the exact integral of the line).",
                     kind="choice", choices=("midpoint", "heun"))
_SEEDS_SOLVER = Param("phi_1", None, None,
                      "How the stage's prediction enters the step: phi_1 (the line through "
                      "both predictions read at the step's middle, the paper's SEEDS-2) or "
                      "phi_2 (that line integrated exactly, as the newest core offers).",
                      kind="choice", choices=("phi_1", "phi_2"))
_HEUN_SOLVER = Param("phi_2", None, None,
                     "phi_2: the exact integral of the line through both predictions (Heun's "
                     "exponential form); phi_1: their average weighted by 1 - e^-h.",
                     kind="choice", choices=("phi_1", "phi_2"))
_GPU = ("Our Brownian path lives on the CPU, so a seed gives the same image on every "
        "device; the name is the core's, kept so that workflows load.")

# --- builders ------------------------------------------------------------------

_SIGMA_RK = {"euler": M.euler_coeffs, "heun": M.heun_coeffs, "dpm_2": M.dpm2_coeffs,
             "heunpp2": M.heunpp2_coeffs}


def _rk(kind):
    return lambda: M.SigmaRK(_SIGMA_RK[kind])


def _lms(order=4):
    return M.SigmaMultistep("lagrange", order=order, tau="sigma")


# The noisy steps' amplification bound of the rows the core has at eta > 0
# (dpmpp_2m_sde, dpmpp_2m_sde_heun, dpmpp_3m_sde, res_multistep_ancestral,
# sa_solver(_pece): at 5 the last two parted from the core by 2.9e-2 / 7.3e-3
# relative with the core's own draws, karras 8 steps, eps):
# 8, the first round's, where their steps are the core function's on every
# schedule the node tests run (the engine's 5 parts from the core on the
# normal schedule at 8 steps: dpmpp_2m_sde 0.63 relative difference, std
# 1.55 -> in 0.67-1.5). ExpMultistep.noisy_amplification says why 5.
_CORE_NOISY = 8.0


def _two_m(clock, solver_type="midpoint", noisy_amplification=M.NOISY_AMPLIFICATION):
    moments = M.moments_midpoint if solver_type == "midpoint" else M.moments_exact
    return M.ExpMultistep(moments, order=2, clock=clock, noisy_amplification=noisy_amplification)


def _exp_adams(order, clock="log_sigma", noisy_amplification=M.NOISY_AMPLIFICATION):
    return lambda: M.ExpMultistep(M.moments_exact, order=order, clock=clock,
                                  noisy_amplification=noisy_amplification)



# UniPC's noisy steps bound their amplification at 6, not 5: at 5 its std at
# eta 1 on an SD3-type flow model (the node test, simple, 30 and 60 steps)
# was 0.96 and 1.017 of the data's, which that test's O(1/N) extrapolation
# reads as 1.073; at 6 it passes, and VE karras at 8 steps stays 1.78x
# (tests/test_samplers_std_band.BAND_8_DEVIATIONS).
_UNIPC_NOISY = 6.0


def _unipc(variant):
    return lambda order=3: M.ExpMultistep(M.unipc_moments(variant), order=order, corrector="unic",
                                          final="unipc", end_sigma=1e-3,
                                          noisy_amplification=_UNIPC_NOISY)


def _sa(corrector):
    return lambda predictor_order=3, corrector_order=4: M.ExpMultistep(
        M.moments_exact, order=predictor_order, clock="lambda", corrector=corrector,
        corrector_order=corrector_order, final="sa", end_variable="auto",
        noisy_amplification=_CORE_NOISY)


# Measured on exact Gaussian data (bench/controls.py): unsampling a flipped
# schedule from the core's FlipSigmas start at 1e-4 (VE: Karras 0.0292-14.6,
# the SD 1.x range) and sampling back; tests/test_controls.py keeps the rest.
_DPM_SOLVER_UP = ("its own lambda loop integrates from the first sigma down to the last "
                  "nonzero one")
_GROWING = ("its variable-step extrapolation amplifies the history over the growing steps of an "
            "increasing schedule (unsampling error 0.86 and 1.2 of the latent at 10 steps, VE); "
            "ipndm, deis and uni_pc unsample")
_FIRST_STEP = ("from the core's FlipSigmas start at 1e-4 the first step spans ~6 in log sigma, "
               "which its higher-order weights amplify: the round trip's error stalls (VE: "
               "0.23 and 0.014 at 10-40 steps); uni_pc, res_2s and dpmpp_2m unsample")
_EXP_HEUN_UP = ("its stage sits at the step's end, which from the core's FlipSigmas start at 1e-4 "
                "is a first step of ~6 in log sigma (measured round trip: VE unsampling error "
                "0.17 and 0.11 at 10-40 steps, flow 75 and 1.7); res_2s and dpmpp_2m unsample")
_UNSAMPLE_HEUNPP2 = ("its stage weights are relative to the schedule's first sigma, which "
                     "unsampling makes the smallest (the round trip diverged)")


def _row(build, *, order, calls, family, description, rule="ancestral", eta=0.0, options=None,
         **facts):
    """One sampler's facts as keywords: `build` makes its method from the
    options, `order` is the deterministic form's convergence order, `calls`
    the model calls of an ordinary step (None: adaptive), `eta` the default
    noise strength; `facts` are SamplerSpec's (noise_window, cfg_pp, churn,
    no_unsample, tunable), each declared on the rows it is true of."""
    return dict(build=build, rule=rule, order=order, calls_per_step=calls, default_eta=eta,
                description=description, family=family, option_specs=dict(options or {}),
                **facts)


_TABLE = {
    "euler": _row(_rk("euler"),
        order=1, calls=1, family="runge_kutta", churn=True,
        description="Euler's method on the probability-flow ODE (Karras et al. 2022, "
                    "arXiv:2206.00364). eta > 0 adds ancestral noise."),
    "euler_ancestral": _row(_rk("euler"),
        order=1, calls=1, eta=1.0, family="runge_kutta",
        description="Euler steps with ancestral noise (Ho et al. 2020, arXiv:2006.11239; "
                    "k-diffusion). eta = 0 is plain Euler."),
    "heun": _row(_rk("heun"),
        order=2, calls=2, family="runge_kutta", churn=True,
        description="Heun's second-order method (Karras et al. 2022, arXiv:2206.00364, Alg. 1)."),
    "lms": _row(_lms,
        order=4, calls=1, family="multistep", no_unsample=_GROWING,
        options={"order": _order(4, 1, 4)},
        description="Linear multistep in sigma with variable-step Lagrange coefficients "
                    "(k-diffusion; Adams-Bashforth, Hairer et al. 'Solving ODEs I')."),
    "ddim": _row(_exp_adams(1),
        order=1, calls=1, family="exponential",
        description="DDIM (Song et al. 2021, arXiv:2010.02502): eta = 0 deterministic, "
                    "eta = 1 DDPM-like ancestral sampling."),
    # PLMS and iPNDM use the fixed equal-step Adams-Bashforth weights: fourth
    # order on uniform steps, second order on the smooth non-uniform schedules
    # (karras, shifted flow) people run, which is what `order` reports.
    "plms": _row(lambda: M.SigmaMultistep("ab", order=4, warmup="heun", last="extrapolate"),
        order=2, calls=1, family="multistep",
        description="Pseudo linear multistep (PNDM, Liu et al. 2022, arXiv:2202.09778): "
                    "Adams-Bashforth weights for equal steps with a pseudo-Heun first step "
                    "(one extra call)."),
    "dpm_2": _row(_rk("dpm_2"),
        order=2, calls=2, family="runge_kutta", churn=True,
        description="DPM-Solver-2 style midpoint step in log sigma (Lu et al. 2022, "
                    "arXiv:2206.00927; k-diffusion)."),
    "dpm_2_ancestral": _row(_rk("dpm_2"),
        order=2, calls=2, eta=1.0, family="runge_kutta",
        description="DPM-2 with ancestral noise (Lu et al. 2022, arXiv:2206.00927; "
                    "k-diffusion)."),
    "dpm_fast": _row(lambda: dpm_solver.sample_dpm_fast,
        order=3, calls=1, family="dpm_solver", no_unsample=_DPM_SOLVER_UP, tunable=False,
        description="DPM-Solver fast: orders 3/2/1 on uniform lambda steps, then a final "
                    "denoise; n steps cost n calls (Lu et al. 2022, arXiv:2206.00927, Sec. 4)."),
    "dpm_adaptive": _row(lambda **o: partial(dpm_solver.sample_dpm_adaptive, **o),
        order=3, calls=None, family="dpm_solver", no_unsample=_DPM_SOLVER_UP, tunable=False,
        options={"order": Param(3, 2, 3, "Solver order (2 or 3).", kind="int"),
                 "rtol": Param(0.05, 1e-8, 1.0, "Relative error tolerance."),
                 "atol": Param(0.0078, 1e-10, 10.0, "Absolute error tolerance."),
                 "h_init": Param(0.05, 1e-6, 10.0, "First step size in lambda."),
                 "pcoeff": Param(0.0, -10.0, 10.0, "PID controller P gain."),
                 "icoeff": Param(1.0, -10.0, 10.0, "PID controller I gain."),
                 "dcoeff": Param(0.0, -10.0, 10.0, "PID controller D gain."),
                 "accept_safety": Param(0.81, 0.0, 1.0,
                                        "Accept a step when its error is below this."),
                 "info": Param(None, None, None,
                               "A dict that receives nfe, n_accept, n_reject.",
                               kind="dict")},
        description="DPM-Solver adaptive step size (Lu et al. 2022, arXiv:2206.00927, Sec. 4; "
                    "PID control after Soderlind 2003); ends with a denoise to sigma 0."),
    "dpmpp_2s_ancestral": _row(lambda: M.ExpRK(M.dpmpp_2s_tableau(), 2),
        order=2, calls=2, eta=1.0, family="exponential",
        description="DPM-Solver++(2S) with ancestral noise (Lu et al. 2023, "
                    "arXiv:2211.01095)."),
    "dpmpp_2m": _row(partial(_two_m, "log_sigma"),
        rule="sde", order=2, calls=1, family="exponential",
        options={"solver_type": _SOLVER_TYPE},
        description="DPM-Solver++(2M) (Lu et al. 2023, arXiv:2211.01095); eta > 0 gives its SDE "
                    "form."),
    "dpmpp_sde": _row(lambda r=0.5: M.ExpRK(M.sde_2s_tableau(r), 2, clock="lambda",
                                            stage_noise="draws"),
        order=2, calls=2, eta=1.0, family="exponential",
        options={"r": Param(0.5, 0.01, 0.99,
                            "Stage position as a fraction of the step in lambda.")},
        description="DPM-Solver++ SDE, second order, noise at both stages (Lu et al. 2023, "
                    "arXiv:2211.01095; k-diffusion)."),
    "dpmpp_2m_sde": _row(partial(_two_m, "lambda", noisy_amplification=_CORE_NOISY),
        rule="sde", order=2, calls=1, eta=1.0, family="exponential",
        options={"solver_type": _SOLVER_TYPE},
        description="SDE-DPM-Solver++(2M) (Lu et al. 2023, arXiv:2211.01095); eta = 0 is an "
                    "ODE solver in the process's lambda."),
    # Measured, not assumed: the 3M update as k-diffusion and diffusers write it
    # weights the second difference D2 ~ h^2 D''/2 by h/6 where the Taylor
    # expansion asks for h/3, so it converges at second order. We keep the
    # host's formula so that images match the core sampler.
    "dpmpp_3m_sde": _row(lambda: M.ExpMultistep(M.moments_kdiff_3m, order=3, clock="lambda",
                                                noisy_amplification=_CORE_NOISY),
        rule="sde", order=2, calls=1, eta=1.0, family="exponential",
        description="DPM-Solver++(3M) SDE (Lu et al. 2023, arXiv:2211.01095; k-diffusion's "
                    "update, which converges at second order)."),
    "uni_pc": _row(_unipc("bh1"),
        order=3, calls=1, family="exponential",
        options={"order": _order(3, 1, 3, "Predictor/corrector order.")},
        description="UniPC with B(h) = h (Zhao et al. 2023, arXiv:2302.04867); predictor-"
                    "corrector at one call per step."),
    "uni_pc_bh2": _row(_unipc("bh2"),
        order=3, calls=1, family="exponential", no_unsample=_FIRST_STEP,
        options={"order": _order(3, 1, 3, "Predictor/corrector order.")},
        description="UniPC with B(h) = e^h - 1 (Zhao et al. 2023, arXiv:2302.04867)."),
    "deis": _row(lambda order=3: M.SigmaMultistep("lagrange", order=order, tau="deis_auto"),
        order=3, calls=1, family="multistep",
        options={"order": _order(3, 1, 4, "Polynomial order of the noise extrapolation.")},
        description="DEIS (Zhang & Chen 2023, arXiv:2204.13902): the noise prediction "
                    "extrapolated by a polynomial and integrated exactly; the polynomial's "
                    "variable is chosen per step, -log(sigma) or the VP time, whichever spaces "
                    "the nodes most evenly."),
    "ipndm": _row(lambda order=4: M.SigmaMultistep("ab", order=order),
        order=2, calls=1, family="multistep",
        options={"order": _order(4, 1, 4)},
        description="Improved PNDM: Adams-Bashforth with lower-order warm-up (Zhang & Chen "
                    "2023, arXiv:2204.13902)."),
    # --- the newest ComfyUI's samplers -------------------------------------------
    "dpmpp_2m_sde_heun": _row(lambda: _two_m("lambda", "heun", _CORE_NOISY),
        rule="sde", order=2, calls=1, eta=1.0, family="exponential",
        description="SDE-DPM-Solver++(2M) with the exact ('heun') second-order weight "
                    "(Lu et al. 2023, arXiv:2211.01095)."),
    "ddpm": _row(_exp_adams(1),
        order=1, calls=1, eta=1.0, family="exponential",
        description="DDPM's ancestral sampling (Ho et al. 2020, arXiv:2006.11239): the posterior "
                    "q(x_next | x, D) each step, i.e. DDIM at eta = 1; eta interpolates to DDIM."),
    "lcm": _row(_exp_adams(1),
        rule="fresh", order=1, calls=1, eta=1.0, family="exponential",
        description="LCM multistep sampling (Luo et al. 2023, arXiv:2310.04378, Alg. 1): denoise, "
                    "then re-noise to the next sigma with fresh noise; eta < 1 keeps a part of the "
                    "path (eta = 0 is DDIM). For LCM, DMD2, Hyper and other distilled models."),
    # Measured first order: its weights sigma/(3 sigma_0) do not tend to a
    # consistent second-order combination as steps shrink.
    "heunpp2": _row(_rk("heunpp2"),
        order=1, calls=3, family="runge_kutta", no_unsample=_UNSAMPLE_HEUNPP2,
        description="Heun++ (the core's heunpp2): stages at the next two grid points weighted by "
                    "their noise level, falling back to Heun and Euler at the end; first order "
                    "(measured)."),
    "ipndm_v": _row(lambda order=4: M.SigmaMultistep("ab_variable", order=order),
        order=2, calls=1, family="multistep", no_unsample=_GROWING,
        options={"order": _order(4, 1, 4)},
        description="iPNDM with variable-step coefficients (Zhou et al. 2024, AMED-Solver, "
                    "arXiv:2312.00094), ending with a denoise."),
    "res_multistep": _row(_exp_adams(2),
        order=2, calls=1, family="exponential",
        description="RES second-order multistep (Zhang et al. 2023, arXiv:2308.02157): the "
                    "line through the last two data predictions integrated exactly "
                    "(ETD Adams-Bashforth 2)."),
    "res_multistep_ancestral": _row(_exp_adams(2, noisy_amplification=_CORE_NOISY),
        order=2, calls=1, eta=1.0, family="exponential",
        description="res_multistep with ancestral noise."),
    "gradient_estimation": _row(lambda ge_gamma=2.0: M.SigmaMultistep("gradient", gamma=ge_gamma),
        order=1, calls=1, family="multistep",
        options={"ge_gamma": Param(2.0, 0.0, 10.0,
                                   "Weight of the gradient estimate (1 is Euler; "
                                   "the paper's 2 is the default).")},
        description="Gradient estimation (Permenter & Yuan 2024, arXiv:2306.04848): "
                    "Euler with the derivative extrapolated by gamma; first order "
                    "(gamma = 1.5 would be Adams-Bashforth 2; measured)."),
    # ER-SDE-3's second-stage slope is a backward difference (first-order
    # accurate), so the method converges at second order (measured, both
    # processes, 10-160 steps); `order` says so.
    "er_sde": _row(lambda max_stage=3: M.ERSDE(max_stage=max_stage),
        rule="er_sde", order=2, calls=1, eta=1.0, family="exponential",
        options={"max_stage": _order(3, 1, 3, "Solver stages (order).")},
        description="ER-SDE-Solver-3 (Cui et al. 2023, arXiv:2309.06169): the extended "
                    "reverse-time SDE with the VP ER-SDE 5 noise scale; eta scales it (0 is the "
                    "ODE)."),
    "seeds_2": _row(
        lambda r=0.5, solver_type="phi_1": M.ExpRK(M.seeds_2_tableau(r, solver_type), 2,
                                                   clock="lambda", stage_noise="ou"),
        rule="sde", order=2, calls=2, eta=1.0, family="exponential",
        options={"r": Param(0.5, 0.01, 0.99, "Stage position in the step."),
                 "solver_type": _SEEDS_SOLVER},
        description="SEEDS-2 (Gonzalez et al. 2023, arXiv:2305.14267): stochastic exponential "
                    "derivative-free solver, the noise integrated exactly along each stage."),
    "seeds_3": _row(
        lambda r_1=1.0 / 3.0, r_2=2.0 / 3.0: M.ExpRK(M.seeds_3_tableau(r_1, r_2), 3,
                                                     clock="lambda", stage_noise="ou"),
        rule="sde", order=3, calls=3, eta=1.0, family="exponential",
        options={"r_1": Param(1.0 / 3.0, 0.01, 0.98, "First stage position."),
                 "r_2": Param(2.0 / 3.0, 0.02, 0.99, "Second stage position.")},
        description="SEEDS-3 (Gonzalez et al. 2023, arXiv:2305.14267), three stages."),
    "sa_solver": _row(_sa("sa"),
        rule="sde_squared", order=3, calls=1, eta=1.0, family="exponential",
        noise_window=(0.2, 0.8),
        options={"predictor_order": _order(3, 1, 6, "Stochastic Adams predictor order."),
                 "corrector_order": _order(4, 1, 6, "Stochastic Adams corrector order.")},
        description="SA-Solver (Xue et al. 2023, arXiv:2309.05019): stochastic Adams "
                    "predictor-corrector; eta is its tau."),
    "sa_solver_pece": _row(_sa("sa_pece"),
        rule="sde_squared", order=3, calls=2, eta=1.0, family="exponential",
        noise_window=(0.2, 0.8),
        options={"predictor_order": _order(3, 1, 6, "Stochastic Adams predictor order."),
                 "corrector_order": _order(4, 1, 6, "Stochastic Adams corrector order.")},
        description="SA-Solver in PECE mode: the model evaluated again at the corrected "
                    "point (two calls a step)."),
    # --- RES4LYF's exponential integrators ---------------------------------------
    "res_2s": _row(lambda: M.ExpRK(M.res_2s_tableau(0.5), 2),
        order=2, calls=2, family="exponential",
        description="RES 2-stage exponential Runge-Kutta (Zhang et al. 2023, arXiv:2308.02157; "
                    "Cox & Matthews ETD2RK), as RES4LYF's res_2s (c2 = 1/2)."),
    "res_3s": _row(lambda: M.ExpRK(M.res_3s_tableau(0.5, 1.0), 3),
        order=3, calls=3, family="exponential", no_unsample=_FIRST_STEP,
        description="RES 3-stage exponential Runge-Kutta of third order (Hochbruck & Ostermann "
                    "2005 conditions), as RES4LYF's res_3s (c2 = 1/2, c3 = 1)."),
    "res_2m": _row(_exp_adams(2),
        order=2, calls=1, family="exponential",
        description="RES 2-step multistep (Zhang et al. 2023, arXiv:2308.02157): exponential "
                    "Adams-Bashforth 2; the same algorithm as res_multistep."),
    "res_3m": _row(lambda: M.ExpMultistep(M.moments_exact, order=3, max_amplification=8.0),
        order=3, calls=1, family="exponential",
        description="RES 3-step multistep: the parabola through the last three data "
                    "predictions integrated exactly (exponential Adams-Bashforth 3), dropping to "
                    "lower order on a step whose weights would amplify the predictions more than "
                    "twice as much as equal-step AB3's (RES4LYF falls back to single-step methods "
                    "on long steps for the same reason)."),
}

# The core's _gpu names: the same samplers (its _gpu variants only build the
# Brownian tree on the device).
for _base in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"):
    _TABLE[_base + "_gpu"] = {**_TABLE[_base], "description": f"{_base}. " + _GPU}

_CFG_PP = "CFG++ (Chung et al. 2024, arXiv:2406.08070): the guided data prediction with the " \
          "unconditional noise estimate; use CFG scales of about 0.3-2. "
_TABLE.update({
    "euler_cfg_pp": _row(_exp_adams(1, "lambda"),
        order=1, calls=1, family="cfg_pp", cfg_pp=True,
        description=_CFG_PP + "Euler (DDIM) steps."),
    "euler_ancestral_cfg_pp": _row(_exp_adams(1, "lambda"),
        order=1, calls=1, eta=1.0, family="cfg_pp", cfg_pp=True,
        description=_CFG_PP + "Euler steps with ancestral noise."),
    "dpmpp_2s_ancestral_cfg_pp": _row(lambda: M.ExpRK(M.dpmpp_2s_tableau(), 2),
        order=2, calls=2, eta=1.0, family="cfg_pp", cfg_pp=True,
        description=_CFG_PP + "DPM-Solver++(2S) with ancestral noise."),
    "dpmpp_2m_cfg_pp": _row(partial(_two_m, "log_sigma"),
        rule="sde", order=2, calls=1, family="cfg_pp", cfg_pp=True,
        options={"solver_type": _SOLVER_TYPE},
        description=_CFG_PP + "DPM-Solver++(2M)."),
    "res_multistep_cfg_pp": _row(_exp_adams(2),
        order=2, calls=1, family="cfg_pp", cfg_pp=True,
        description=_CFG_PP + "RES second-order multistep (the guided prediction at "
                    "the current point, unconditional history)."),
    "res_multistep_ancestral_cfg_pp": _row(_exp_adams(2, noisy_amplification=_CORE_NOISY),
        order=2, calls=1, eta=1.0, family="cfg_pp", cfg_pp=True,
        description=_CFG_PP + "res_multistep with ancestral noise."),
    "gradient_estimation_cfg_pp": _row(lambda ge_gamma=2.0: M.SigmaMultistep("gradient",
                                              gamma=ge_gamma),
        order=1, calls=1, family="cfg_pp", cfg_pp=True,
        options={"ge_gamma": Param(2.0, 0.0, 10.0,
                                   "Weight of the gradient estimate.")},
        description=_CFG_PP + "Gradient estimation."),
})

# --- the 2026 core's additions (ComfyUI 2026: 45 names) ---------------------------
# exp_heun_2_x0(_sde) is the core's seeds_2 at r = 1 with solver_type phi_2
# (its sampling.py wraps sample_seeds_2 so); ours is the same row data.
_TABLE["exp_heun_2_x0"] = _row(
    lambda solver_type="phi_2": M.ExpRK(M.seeds_2_tableau(1.0, solver_type), 2, clock="lambda",
                                        stage_noise="ou"),
    rule="sde", order=2, calls=2, family="exponential", no_unsample=_EXP_HEUN_UP,
    options={"solver_type": _HEUN_SOLVER},
    description="Exponential Heun in the data prediction and half-log-SNR time: a first-order "
                "step to the next sigma, the model there, and the line through both predictions "
                "integrated exactly (SEEDS-2 with r = 1, Gonzalez et al. 2023, arXiv:2305.14267; "
                "DPM-Solver++, arXiv:2211.01095). eta > 0 gives exp_heun_2_x0_sde.")
_TABLE["exp_heun_2_x0_sde"] = {
    **_TABLE["exp_heun_2_x0"], "default_eta": 1.0,
    "description": "Stochastic exponential Heun: exp_heun_2_x0 with the SDE's noise integrated "
                   "along the step (SEEDS-2 at r = 1, Gonzalez et al. 2023, arXiv:2305.14267); "
                   "eta 0 is exp_heun_2_x0."}
# It reads uncond itself (its own CFG++ loop, not sample_grid's CFG++ shift).
_TABLE["cfgpp_ud10_ab"] = _row(
    lambda: sample_cfgpp_history, order=1, calls=1, family="cfg_pp", cfg_pp=True,
    no_unsample="its history and its final extrapolation to sigma 0 assume a schedule that "
                "decreases",
    description="CFG++ Euler with a quarter-weight Adams-Bashforth-2 history in sigma, a 0.1 "
                "history of the unconditional noise estimate and the last step extrapolated to "
                "sigma 0 (the newest ComfyUI's cfgpp_ud10_ab; CFG++: Chung et al. 2024, "
                "arXiv:2406.08070). Deterministic; use CFG scales of about 0.3-2.")

SAMPLERS = {_name: SamplerSpec(name=_name, **_facts) for _name, _facts in _TABLE.items()}

SAMPLER_NAMES = list(SAMPLERS)


def get_sampler(name):
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown sampler {name!r}; Sampler Lab has: {', '.join(SAMPLER_NAMES)}") from None


def noise_fractions(name, sigmas, *, process="ve", eta=None, noise_window=None):
    """Per step i, the fraction of the noise standard deviation at
    sigmas[i + 1] that sampler `name` draws fresh in that step (0 = none,
    1 = all of it), at noise strength `eta` (None: the sampler's default),
    from the sampler's own noise rule and noise window (None: its default).
    A list of len(sigmas) - 1 floats; the last step to 0 adds none.

    Raises ValueError for an unknown sampler, a bad eta, window or sigmas."""
    spec = get_sampler(name)
    proc = get_process(process)
    rule = get_rule(spec.rule)
    eta = number("eta (noise strength)", spec.eta_or_default(eta), 0.0)
    sig = read_sigmas(as_sigma_tensor(sigmas), proc)
    hi, lo = window_sigmas(proc, spec.noise_window if noise_window is None else noise_window)
    method = spec.method()
    clock = proc if getattr(method, "clock", None) == "lambda" else None
    floor = getattr(proc, "_alpha_floor", None)
    if clock is not None and floor is not None and sig[0] >= 1.0 and \
            getattr(method, "order", 2) > 1:
        sig[0] = 1.0 - floor  # where such a sampler starts (core.Run.start_below_one)
    out = []
    for s, s_next in zip(sig[:-1], sig[1:]):
        if eta == 0.0 or s_next == 0.0 or not lo <= s_next <= hi:
            out.append(0.0)
            continue
        # the rule's h as the method measures it (its floored lambda at sigma = 1)
        decay = math.exp(clock.lam(s) - clock.lam(s_next)) if clock is not None else None
        up = rule.split(proc, s, s_next, eta, decay)[1]
        out.append(up / proc.snr_sigma(s_next))
    return out
