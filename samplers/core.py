"""What every sampler shares: input checks, the model call, the callback, the
noise draw, and the step loop with the ancestral split.

A method (methods.py) receives a `Run` and works with:
  run.sig[i]             the schedule as Python floats (float64, read once)
  run.denoise(x, i)      the model at grid sigma i (also reports the callback)
  run.denoise_at(x, s)   the model at an off-grid sigma s
  run.proc               the noise process (see process.py)
  run.clock(name)        the lambda a data-frame method integrates in
  run.split(s, s_next)   the noise rule's (sigma_down, up) at this run's eta
  run.draw(i) / run.draw_at(s, s_next)   scaled noise for a stochastic step
  run.calls              model calls so far

Controls (controls.py) act around the method, never inside it: churn raises
the noise before a step (Run.churn), detail changes the sigma the model is
told (Run._call), restart runs the method over pieces of the schedule
(sample_restart). Increasing sigmas unsample (Run.increasing).
"""
import copy
import math

import torch

from .controls import as_detail, churn_gamma
from .noise import default_noise
from .noise_rules import get_rule
from .process import VE, get_process
from ..params import number

try:  # the host ships tqdm; the engine works without it
    from tqdm.auto import trange as _trange
except ImportError:  # pragma: no cover
    _trange = None


def as_sigma_tensor(sigmas):
    if torch.is_tensor(sigmas):
        return sigmas
    try:
        return torch.as_tensor(sigmas, dtype=torch.float32)
    except (TypeError, ValueError):
        raise ValueError(f"sigmas must be a 1-D tensor of numbers, got {sigmas!r}") from None


def read_sigmas(sigmas, proc):
    """Validates a schedule and returns it as Python floats (one device sync)."""
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")
    sig = sigmas.detach().to("cpu", torch.float64).tolist()
    for k, s in enumerate(sig):
        if not math.isfinite(s):
            raise ValueError(f"sigmas[{k}] is {s}: every sigma must be finite")
        if s < 0:
            raise ValueError(f"sigmas[{k}] is {s}: sigmas must be >= 0")
        if s > proc.sigma_limit:
            raise ValueError(
                f"sigmas[{k}] is {s}: a {proc.name} model's sigmas lie in "
                f"[0, {proc.sigma_limit}]")
    # Decreasing samples; increasing unsamples (inversion: the core's
    # FlipSigmas of a schedule). Either way strictly monotone.
    up = len(sig) > 1 and sig[1] > sig[0]
    for k in range(len(sig) - 1):
        if not (sig[k + 1] > sig[k] if up else sig[k + 1] < sig[k]):
            raise ValueError(
                f"sigmas must be strictly decreasing (sampling) or strictly increasing "
                f"(unsampling): sigmas[{k}] = {sig[k]} is followed by sigmas[{k + 1}] = "
                f"{sig[k + 1]}")
    return sig


def window_sigmas(proc, window):
    """(start, end) fractions of the process -> (sigma_hi, sigma_lo): noise may
    enter a step whose target sigma lies in [sigma_lo, sigma_hi]."""
    try:
        start, end = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"noise_window must be (start, end) with 0 <= start <= end <= 1, "
                         f"got {window!r}") from None
    if not (0.0 <= start <= end <= 1.0):
        raise ValueError(f"noise_window must be (start, end) with 0 <= start <= end <= 1 "
                         f"(fractions of the process: 0 pure noise, 1 clean), got {window!r}")
    hi = math.inf if start <= 0.0 else proc.percent_to_sigma(start)
    lo = 0.0 if end >= 1.0 else proc.percent_to_sigma(end)
    return hi, lo


class Run:
    """State of one sampling call."""

    def __init__(self, model, x, sigmas, *, extra_args, callback, disable, process,
                 eta, s_noise, noise, rule="ancestral", noise_window=(0.0, 1.0),
                 uncond=None, s_churn=0.0, s_tmin=0.0, s_tmax=math.inf, detail=None):
        self.proc = get_process(process)
        self.uncond = uncond
        self.rule = get_rule(rule)
        self.window = window_sigmas(self.proc, noise_window)
        self.eta = number("eta (noise strength)", eta, 0.0)
        self.s_noise = number("s_noise", s_noise, 0.0)
        self.s_churn = number("s_churn", s_churn, 0.0)
        self.s_tmin = number("s_tmin", s_tmin, 0.0)
        self.s_tmax = number("s_tmax", s_tmax, 0.0) if s_tmax != math.inf else math.inf
        if self.s_tmin > self.s_tmax:
            raise ValueError(f"s_tmin ({s_tmin}) must not exceed s_tmax ({s_tmax}): churn "
                             f"applies to steps from sigmas in [s_tmin, s_tmax]")
        if not torch.is_tensor(x):
            raise ValueError(f"x must be a tensor, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"x must have a batch dimension, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or inf: the initial latent must be finite")
        self.sigmas = as_sigma_tensor(sigmas)
        self.sig = read_sigmas(self.sigmas, self.proc)
        self.increasing = len(self.sig) > 1 and self.sig[-1] > self.sig[0]
        if self.increasing:
            self._check_unsample()
        self.gamma = churn_gamma(self.s_churn, len(self.sig) - 1)
        detail = as_detail(detail)
        self.detail = detail.factors(self.sig, self.proc) if detail and detail.active else None
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.callback = callback
        self.disable = disable
        self.in_dtype = self.out_dtype = x.dtype
        # Half-precision state drifts over tens of steps; keep it in float32
        # and give the model the dtype it was handed.
        self.work_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        self.x = x.to(self.work_dtype)
        self.s_in = x.new_ones([x.shape[0]], dtype=torch.float32
                               if self.work_dtype != torch.float64 else torch.float64)
        self.noise = noise if noise is not None else default_noise(self.x)
        self.calls = 0
        self._grid = None
        self._hat = None     # (i, sigma_hat / sigma) of a churned step
        self._forks = {}
        self.offset = 0      # the callback's step index of this (piece of a) run

    def _check_unsample(self):
        """Unsampling integrates the probability-flow ODE up (inversion, e.g.
        the core's FlipSigmas output): deterministic only, from a sigma > 0."""
        if self.sig[0] == 0.0:
            raise ValueError("unsampling (increasing sigmas) must start at a sigma > 0: the "
                             "ODE is singular at 0 (the core's FlipSigmas puts 1e-4 there)")
        if self.eta > 0.0:
            raise ValueError(f"unsampling (increasing sigmas) runs the deterministic ODE: it "
                             f"needs eta (noise strength) = 0, got {self.eta}; fresh noise "
                             f"has no inverse")
        if self.s_churn > 0.0:
            raise ValueError("unsampling (increasing sigmas) needs s_churn = 0")

    # --- model ---------------------------------------------------------------
    def _sigma_tensor(self, i):
        if self._grid is None:
            self._grid = self.sigmas.to(self.x.device, self.s_in.dtype)
        return self._grid[i]

    def _call(self, x, sigma_batch, sigma):
        """The model at sigma_batch, whose value is the float sigma; with a
        detail control the model is told sigma * factor(sigma)."""
        self.calls += 1
        if self.detail is not None:
            f = self.detail(sigma)
            if f != 1.0:
                sigma_batch = sigma_batch * f
        out = self.model(x.to(self.in_dtype), sigma_batch, **self.extra_args)
        return out.to(self.work_dtype)

    def denoise(self, x, i):
        """The model at grid point i (at sigma_hat where churn raised it);
        reports the step to the callback."""
        sigma = self._sigma_tensor(i)
        sigma_hat = sigma
        if self._hat is not None and self._hat[0] == i:
            sigma_hat = sigma * self._hat[1]
        denoised = self._call(x, sigma_hat * self.s_in, self.sig[i])
        if self.callback is not None:
            self.callback({"i": i + self.offset, "x": x, "sigma": sigma,
                           "sigma_hat": sigma_hat, "denoised": denoised})
        return denoised

    def denoise_at(self, x, sigma):
        return self._call(x, self.s_in * sigma, sigma)

    def last_uncond(self, like):
        """The unconditional prediction of the last model call (CFG++), from
        the `uncond` callable the caller passed; shaped like `like`."""
        u = self.uncond()
        if not torch.is_tensor(u) or u.shape != like.shape:
            raise ValueError("uncond must return the unconditional prediction of the last model "
                             f"call, a tensor of shape {tuple(like.shape)}; got "
                             f"{type(u).__name__}{tuple(u.shape) if torch.is_tensor(u) else ''}")
        return u.to(self.work_dtype)

    # --- noise ---------------------------------------------------------------
    # The noise source gets its interval as CPU scalars of the schedule's
    # dtype: Brownian trees live on the CPU, and handing them device scalars
    # would cost a device-to-host copy, i.e. a synchronisation, per draw.
    def _cpu_sigma(self, value):
        return torch.tensor(value, dtype=self.sigmas.dtype)

    def draw_at(self, sigma, sigma_next, key=None):
        """s_noise-scaled noise for the interval between two sigmas (floats).
        Callers skip the draw when its weight is 0, so a deterministic run
        consumes no randomness. key: draw from the source's independent fork
        `key` (see noise.fork): churn and restart jumps add noise over
        intervals the run's own path has covered already, and the same
        interval of one Brownian path would give the same numbers."""
        source = self.noise if key is None else self.fork(key)
        z = source(self._cpu_sigma(sigma), self._cpu_sigma(sigma_next)).to(self.work_dtype)
        return z * self.s_noise if self.s_noise != 1.0 else z

    def fork(self, key):
        if key not in self._forks:
            fork = getattr(self.noise, "fork", None)
            self._forks[key] = fork(key) if fork is not None else self.noise
        return self._forks[key]

    def draw(self, i):
        """Noise for the grid interval i -> i + 1."""
        return self.draw_at(self.sig[i], self.sig[i + 1])

    def start_below_one(self):
        """Flow from sigma = 1 in flow's own lambda (= -inf there): start at
        the sigma whose alpha is the process's floor, as the newest ComfyUI
        starts its SNR-based samplers at percent_to_sigma(1e-4). The model is
        called there too, so our lambda-clock samplers equal the host's."""
        floor = getattr(self.proc, "_alpha_floor", None)
        if floor is None or self.sig[0] < 1.0:
            return
        self.sig[0] = 1.0 - floor
        self.sigmas = self.sigmas.clone()
        self.sigmas[0] = self.sig[0]
        self._grid = None

    # --- frames and noise rules -------------------------------------------
    def clock(self, name):
        """"lambda": the process's half-log-SNR; "log_sigma": -log(sigma),
        i.e. the VE process, for either process (see methods.py)."""
        return self.proc if name == "lambda" else VE

    def split(self, sigma, sigma_next, clock=None):
        """The noise rule's (sigma_down, up) for sigma -> sigma_next; with a
        clock, h is measured on it (its floored lambda at flow's sigma = 1)."""
        if self.eta == 0.0 or sigma_next == 0.0 or not \
                self.window[1] <= sigma_next <= self.window[0]:
            return sigma_next, 0.0
        decay = None
        if clock is not None and clock is not VE:
            decay = math.exp(clock.lam(sigma) - clock.lam(sigma_next))
        return self.rule.split(self.proc, sigma, sigma_next, self.eta, decay)

    def rule_decay(self, sigma, sigma_to, clock=None):
        """S_down / S_to of the rule over [sigma, sigma_to]: how much of the
        noise already present survives (the Ornstein-Uhlenbeck decay)."""
        sigma_down, _ = self.split(sigma, sigma_to, clock)
        s_to = self.proc.snr_sigma(sigma_to)
        return self.proc.snr_sigma(sigma_down) / s_to if s_to > 0 else 0.0

    # --- controls ------------------------------------------------------------
    CHURN_NOISE = 0  # the fork churn draws from; restart jumps use 1, 2, ...

    def churn(self, x, i):
        """EDM churn (Karras et al. 2022, Alg. 2) before step i: where
        s_tmin <= sigma <= s_tmax, raise the noise level S = sigma / alpha to
        (1 + gamma) S with fresh noise (re-mixed the process's way, so for
        flow sigma_hat stays below 1) and start the step from sigma_hat
        (run.sig[i] becomes it). Returns x at sigma_hat. The noise comes from
        the churn fork over the step's interval: one Brownian path for all
        steps, each step its own stretch of it."""
        sigma = self.sig[i]
        if self.gamma == 0.0 or not self.s_tmin <= sigma <= self.s_tmax:
            return x
        s = self.proc.snr_sigma(sigma)
        if math.isinf(s):
            return x  # pure noise has no more noise to take
        s_hat = s * (1.0 + self.gamma)
        sigma_hat = self.proc.sigma_from_snr_sigma(s_hat)
        z = self.draw_at(sigma, self.sig[i + 1], key=self.CHURN_NOISE)
        x = self.proc.renoise(x, sigma, sigma_hat, math.sqrt(s_hat * s_hat - s * s), z)
        self.sig[i] = sigma_hat
        self._hat = (i, sigma_hat / sigma)
        return x

    def piece(self, sig, x, offset):
        """This run over another schedule (a restart piece): same model,
        process, noise and controls; a fresh count of calls; the callback's
        step index shifted by `offset`; the state kept in the working dtype."""
        other = copy.copy(self)
        other.sig = list(sig)
        other.sigmas = torch.tensor(other.sig, dtype=self.sigmas.dtype)
        other._grid = None
        other._hat = None
        other.x = x
        other.offset = self.offset + offset
        other.calls = 0
        other.out_dtype = self.work_dtype
        return other

    # --- loop ----------------------------------------------------------------
    def steps(self):
        n = len(self.sig) - 1
        if _trange is None:
            return range(n)
        return _trange(n, disable=True if self.disable is None else self.disable)

    def result(self, x):
        return x.to(self.out_dtype)


def sample_grid(run, method, cfg_pp=False):
    """The loop of every fixed-grid sampler: at each grid point the model,
    then the method's correction of the point (predictor-correctors) and its
    step to the next grid point, noise included.

    cfg_pp: CFG++ (Chung et al. 2024, arXiv:2406.08070): the step's data
    prediction is the guided D_g, its noise estimate the unconditional one,
    eps_u = (x - alpha D_u) / sigma, and the history of data predictions is
    unconditional. All of it is the unchanged method started from
    x + alpha (D_g - D_u) (alpha of the method's clock), whose noise estimate
    with D_g is eps_u; multistep histories get D_u."""
    x = run.x
    if method.clock == "lambda" and getattr(method, "order", 2) > 1:
        # ratios of lambda steps need a finite start; a first-order step is
        # exact from sigma = 1 itself (the host's Euler CFG++ starts there too)
        run.start_below_one()
    state = method.start(run)
    for i in run.steps():
        x = run.churn(x, i)
        denoised = run.denoise(x, i)
        x, denoised = method.correct(run, state, i, x, denoised)
        if cfg_pp:
            uncond = run.last_uncond(denoised)
            x = x + (denoised - uncond) * run.clock(method.clock).alpha(run.sig[i])
            state["history"] = uncond
        x = method.step(run, state, i, x, denoised)
    return run.result(x)


def sample_restart(run, pieces, solve):
    """Restart sampling (Xu et al. 2023, arXiv:2306.14878, Alg. 1) over any
    sampler: `solve(run)` integrates a run over its schedule; `pieces`
    (controls.restart_pieces) split the schedule at each segment's t_min and
    insert its restarts. A restart first re-noises from t_min up to t_max
    (Process.renoise: for flow the marginal is re-mixed, (1 - s) x0 + s n)
    with noise from its own fork of the noise source, then integrates its
    Karras levels down to t_min again. Each piece starts the method afresh
    (a multistep history does not survive a jump); the callback's step
    index runs on across pieces and run.calls counts them all."""
    x, step, jumps = run.x, 0, 0
    for piece in pieces:
        if piece.jump is not None:
            t_min, t_max = piece.jump
            jumps += 1
            s_min, s_max = run.proc.snr_sigma(t_min), run.proc.snr_sigma(t_max)
            z = run.draw_at(t_min, t_max, key=Run.CHURN_NOISE + jumps)
            x = run.proc.renoise(x, t_min, t_max, math.sqrt(s_max * s_max - s_min * s_min), z)
        part = run.piece(piece.sig, x, step)
        x = solve(part)
        run.calls += part.calls
        step += len(piece.sig) - 1
    return run.result(x)
