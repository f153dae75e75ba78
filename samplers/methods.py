"""Methods: what one step of a sampler computes, as data run by one loop
(loops.py). Two frames:

* the sigma frame integrates the probability-flow ODE as written,
      dx/dsigma = d(x, sigma) = (x - D(x, sigma)) / sigma,
  which has this form for VE and flow alike (process.py), so these methods
  never look at the process: Euler, Heun, DPM-2, Heun++, LMS, PLMS, iPNDM,
  DEIS, gradient estimation (Karras et al. 2022; Liu et al. 2022; Zhang &
  Chen 2023; Permenter & Yuan 2024).
* the data frame solves the linear part exactly in half-log-SNR lambda and
  approximates only the data prediction D (Lu et al. 2023, DPM-Solver++;
  Zhang et al. 2023, RES; Zhao et al. 2023, UniPC; Xue et al. 2023,
  SA-Solver; Gonzalez et al. 2023, SEEDS). In normalised coordinates
  X = x / alpha (process.py) a step from lambda to lambda + H is
      X' = e^-H X + sum_j w_j D_j,   i.e.  x' = (sigma'/sigma) x + alpha' sum_j w_j D_j,
  with the weights w from phi-functions (phi.py).

The clock. In the data frame lambda can be the process's half-log-SNR or
-log(sigma) for both processes. For flow they differ, and both are exact
rewritings of the same ODE (dx/dsigma = (x - D)/sigma is the VE ODE in form):
only the variable in which D is interpolated differs. Near sigma = 1, D -
mean grows like (1 - sigma)^2 in -log(sigma) but like e^(2 lambda) in flow's
lambda, which also runs to -inf there and needs a floor whose arbitrary value
weights the first corrections. Measured on exact Gaussian flow data (shift
3), -log(sigma) is 1.7-66x more accurate for DPM++(2M) and matches the
newest ComfyUI, whose deterministic samplers (dpmpp_2m, uni_pc,
res_multistep, deis) use it on flow models, while its SDE samplers use flow's
lambda; each registry row names its clock ("log_sigma" or "lambda").
Measured again for issue 22 (exact Gaussian flow data, shift 3, the core's 7
schedules x 5-50 steps, judged at 0 and at the last sigma; RMSE of flow's
lambda over -log(sigma)): DPM++(2M) normal 0.01-0.85, kl_optimal 0.44-0.81,
karras 1.6-5.7, exponential 2.0-67, simple/sgm_uniform/beta 0.27-15; UniPC
-log(sigma) better in 52 of 70. Neither clock is better everywhere, nor is a
per-step choice by the nodes' evenness (as deis_auto_tau), which was up to
15x worse on simple and beta at 8-12 steps, nor flow's lambda away from
sigma = 1: so each row keeps its clock, which keeps ours at least as accurate
as the core on the same sigmas.

Noise enters through a rule (noise_rules.py): every step moves
deterministically to sigma_down and adds fresh noise up to sigma_next. A
single-step method's deterministic move is a whole step to sigma_down (as
k-diffusion's ancestral samplers do); a multistep method integrates over the
kernel of span lambda(sigma_down) - lambda but reads the data trend in the
lambda actually elapsed, lambda(sigma_next) - lambda: the SDE's drift
(Lu et al. 2023, SDE-DPM-Solver++), not an extrapolation to a point the path
never reaches. Methods whose history is of d (sigma frame) restart it after
noise is added, so a multistep step never mixes derivatives of two paths.
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from .phi import etd_weights, phi
from .process import VE

# --- shared pieces ------------------------------------------------------------


def to_d(x, sigma, denoised):
    """dx/dsigma of the probability-flow ODE, the same for VE and flow."""
    return (x - denoised) / sigma


def combine(weights, tensors):
    """sum_k w_k t_k without a pass over the latent for zero or unit weights."""
    acc = None
    for w, t in zip(weights, tensors):
        if w:
            term = t if w == 1.0 else t * w
            acc = term if acc is None else acc + term
    return acc


def data_step(clock, x, denoised, sigma, sigma_to):
    """First-order data-frame step (DDIM, Song et al. 2021 = DPM-Solver++(1)):
    x' = (sigma'/sigma) x + alpha' (1 - e^-h) D, exact for a constant D and the
    same for every clock (alpha'(1 - e^-h) = 1 - sigma'/sigma for flow)."""
    if sigma_to == 0.0:
        return denoised
    return x * (sigma_to / sigma) + denoised * (clock.alpha(sigma_to) * (1.0 - clock.decay(sigma, sigma_to)))


class Method:
    """One step of a sampler. `step` gets the model's output at the grid
    point and returns the latent at the next grid point (noise included);
    `correct` may first improve the latent the previous step reached
    (predictor-corrector methods), given the model's output there."""
    clock = "log_sigma"

    def start(self, run):
        return {}

    def correct(self, run, st, i, x, denoised):
        return x, denoised

    def calls(self, sig, split):
        """Model calls for the schedule `sig` (floats); split(sigma, sigma_next)
        -> (sigma_down, up) is the run's noise rule at its eta."""
        return len(sig) - 1

    def step(self, run, st, i, x, denoised):
        raise NotImplementedError


def advance(run, i, x, denoised, move, on_noise=None, clock=None):
    """The noise rule around a deterministic move: x -> move(sigma_down), then
    fresh noise up to sigma_next. Returns x at sigma_next. clock: measure the
    rule's h on it (see Run.split)."""
    sigma, sigma_next = run.sig[i], run.sig[i + 1]
    sigma_down, up = run.split(sigma, sigma_next, clock)
    x_down = move(sigma_down)
    if up == 0.0:
        return x_down
    x_next = run.proc.renoise(x_down, sigma_down, sigma_next, up, run.draw(i))
    if on_noise is not None:
        on_noise(x_down, sigma_down, x_next)
    return x_next


# --- sigma frame: Runge-Kutta -------------------------------------------------

@dataclass(frozen=True)
class SigmaRK(Method):
    """Explicit Runge-Kutta on dx/dsigma = d. `coeffs(run, i, sigma, sigma_to)`
    returns (stage sigmas after the first, rows of A, b), all weights of the
    stage derivatives in absolute sigma units, so a stage may sit anywhere
    (DPM-2's log-midpoint; Heun++'s next grid points). A step to sigma = 0
    is an Euler step (the ODE is undefined at 0 and Euler lands on D)."""
    coeffs: Callable

    def calls(self, sig, split):
        total = 0
        for i in range(len(sig) - 1):
            down = split(sig[i], sig[i + 1])[0]
            total += 1 if down == 0.0 else 1 + len(self.coeffs(sig, i, sig[i], down)[0])
        return total

    def step(self, run, st, i, x, denoised):
        return advance(run, i, x, denoised,
                       lambda sigma_to: self.move(run, i, x, denoised, run.sig[i], sigma_to))

    def move(self, run, i, x, denoised, sigma, sigma_to):
        d = to_d(x, sigma, denoised)
        if sigma_to == 0.0:
            return x + d * (sigma_to - sigma)
        stage_sigmas, a, b = self.coeffs(run.sig, i, sigma, sigma_to)
        ds = [d]
        for sigma_j, row in zip(stage_sigmas, a):
            x_j = x + combine(row, ds)
            ds.append(to_d(x_j, sigma_j, run.denoise_at(x_j, sigma_j)))
        return x + combine(b, ds)


def euler_coeffs(sig, i, sigma, sigma_to):
    return (), (), (sigma_to - sigma,)


def heun_coeffs(sig, i, sigma, sigma_to):
    dt = sigma_to - sigma
    return (sigma_to,), ((dt,),), (dt / 2, dt / 2)


def dpm2_coeffs(sig, i, sigma, sigma_to):
    # DPM-Solver-2 (Lu et al. 2022) in sigma: the stage at the geometric mean.
    mid = math.sqrt(sigma * sigma_to)
    return (mid,), ((mid - sigma,),), (0.0, sigma_to - sigma)


def heunpp2_coeffs(sig, i, sigma, sigma_to):
    """Heun++ (Carzit's sd-webui-samplers-scheduler, as the core's heunpp2):
    stages at the next two grid points, reached by Euler steps, weighted by
    their sigma relative to the schedule's first sigma. Near the end it falls
    back to Heun (one grid point left before the last) and Euler (the last).
    Under noise the step ends at sigma_down and the look-ahead keeps the
    grid's next increment."""
    dt = sigma_to - sigma
    end = sig[-1]
    if i + 1 >= len(sig) - 1 or sig[i + 1] == end:
        return (), (), (dt,)
    if sig[i + 2] == end:
        w2 = sig[i + 1] / (2.0 * sig[0])
        return (sigma_to,), ((dt,),), ((1.0 - w2) * dt, w2 * dt)
    dt2 = sig[i + 2] - sig[i + 1]
    s3 = sigma_to + dt2
    w2 = sig[i + 1] / (3.0 * sig[0])
    w3 = sig[i + 2] / (3.0 * sig[0])
    return ((sigma_to, s3), ((dt,), (dt, dt2)),
            ((1.0 - w2 - w3) * dt, w2 * dt, w3 * dt))


# --- sigma frame: multistep ------------------------------------------------------

# 48-point Gauss-Legendre on [0, 1]: exact for the polynomials of LMS, and to
# rounding for the smooth weights of DEIS's time maps at the steps we see.
def _gauss_legendre(n):
    import numpy as np
    x, w = np.polynomial.legendre.leggauss(n)
    return [(xi + 1.0) / 2.0 for xi in x], [wi / 2.0 for wi in w]


_GL_X, _GL_W = _gauss_legendre(48)
# n points are exact for degree 2n - 1: LMS's cubics need 2; 4 leave room.
_GL4_X, _GL4_W = _gauss_legendre(4)

# Adams-Bashforth weights for equal steps, newest first (Hairer et al.,
# "Solving ODEs I", III.1); PNDM and iPNDM use them in sigma.
AB_WEIGHTS = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12),
              (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def lagrange_integral(nodes, sigma, sigma_to, tau=None):
    """[int_sigma^sigma_to l_j(tau(s)) ds for j]: the d history interpolated by
    a polynomial in the variable tau (None: sigma itself, LMS) and integrated
    over sigma. Gauss-Legendre in sigma is exact for LMS's polynomials (and
    reaches sigma_to = 0); other variables are integrated in log sigma, where
    their integrand is smooth."""
    log_space = tau is not None
    a, b = (math.log(sigma), math.log(sigma_to)) if log_space else (sigma, sigma_to)
    points = zip(_GL_X, _GL_W) if log_space else zip(_GL4_X, _GL4_W)
    tau = tau or (lambda v: v)
    t_nodes = [tau(s) for s in nodes]
    out = [0.0] * len(nodes)
    for xg, wg in points:
        u = a + (b - a) * xg
        s = math.exp(u) if log_space else u
        w = wg * (b - a) * (s if log_space else 1.0)
        t = tau(s)
        for j, tj in enumerate(t_nodes):
            basis = 1.0
            for k, tk in enumerate(t_nodes):
                if k != j:
                    basis *= (t - tk) / (tj - tk)
            out[j] += w * basis
    return out


def vp_time(sigma, sigma_min=0.002, sigma_max=80.0, eps_s=1e-3):
    """The time t of the VP-SDE whose linear beta(t) runs from eps_s to 1 over
    sigma in [sigma_min, sigma_max] (Song et al. 2021 VP-SDE; EDM's range),
    in which DEIS's reference implementation (Zhang & Chen 2023, "tAB")
    interpolates the noise prediction: sigma^2 = e^(beta_min t + beta_d t^2/2) - 1."""
    beta_d = 2.0 * (math.log(sigma_min ** 2 + 1.0) / eps_s - math.log(sigma_max ** 2 + 1.0)) / (eps_s - 1.0)
    beta_min = math.log(sigma_max ** 2 + 1.0) - 0.5 * beta_d
    return (math.sqrt(beta_min ** 2 + 2.0 * beta_d * math.log1p(sigma * sigma)) - beta_min) / beta_d


def _neg_log(sigma):
    return -math.log(sigma)


def _spacing_score(tau, points):
    """How unevenly `points` (newest step end first) are spaced in tau: the
    largest |log| ratio of neighbouring gaps; 0 for even spacing."""
    t = [tau(s) for s in points]
    gaps = [abs(t[k] - t[k + 1]) for k in range(len(t) - 1)]
    if len(gaps) < 2 or min(gaps) == 0.0:
        return 0.0
    return max(abs(math.log(gaps[k] / gaps[k + 1])) for k in range(len(gaps) - 1))


def deis_auto_tau(points):
    """DEIS's interpolation variable for one step: of -log(sigma) (the
    exponential integrator's lambda) and the VP time, the one in which the
    step and its history are most evenly spaced. Polynomial extrapolation is
    best conditioned on even nodes; -log(sigma) suits Karras/exponential
    schedules, the VP time the timestep-uniform ones (normal, kl_optimal).
    Measured on exact Gaussian data, eps and flow, 7 schedules x 5-50 steps:
    at least as accurate as the core's DEIS (VP time only) in 69 of 70 cases
    and as our lambda-only DEIS of the first round in most, up to 15x better
    than either elsewhere."""
    return min((_neg_log, vp_time), key=lambda tau: _spacing_score(tau, points))


def ipndm_v_weights(hs):
    """iPNDM with variable steps (Zhou et al. 2024, AMED-Solver's iPNDM_v, as
    the core's ipndm_v): weights of d_0, d_1, ... (newest first) per unit of
    the step h = hs[0], from the step sizes hs = [h, h_1, h_2, h_3]; the
    order-2 rule is variable-step Adams-Bashforth, the higher ones keep the
    equal-step pattern of AB3/AB4 with step-ratio corrections."""
    h = hs[0]
    if len(hs) == 1:
        return [1.0]
    h1 = hs[1]
    c1, c2 = (2.0 + h / h1) / 2.0, -(h / h1) / 2.0
    if len(hs) == 2:
        return [c1, c2]
    h2 = hs[2]
    t1 = (1.0 - h / (3.0 * (h + h1)) * (h * (h + h1)) / (h1 * (h1 + h2))) / 2.0
    if len(hs) == 3:
        return [c1 + t1, c2 - (1.0 + h1 / h2) * t1, t1 * h1 / h2]
    h3 = hs[3]
    q = h1 * (h1 + h2) / (h2 * (h2 + h3))
    t2 = ((1.0 - h / (3.0 * (h + h1))) / 2.0
          + (1.0 - h / (2.0 * (h + h1))) * h / (6.0 * (h + h1 + h2))) \
        * (h * (h + h1) * (h + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
    return [c1 + t1 + t2,
            c2 - (1.0 + h1 / h2) * t1 - (1.0 + h1 / h2 + q) * t2,
            t1 * h1 / h2 + (h1 / h2 + q * (1.0 + h2 / h3)) * t2,
            -t2 * q * h1 / h2]


@dataclass(frozen=True)
class SigmaMultistep(Method):
    """Linear multistep on d in sigma: x' = x + sum_j W_j d_j, one call a step.

    kind: "lagrange" (the polynomial through the history in `tau`, integrated
    exactly: LMS with tau = sigma, DEIS with the auto-chosen tau), "ab"
    (equal-step Adams-Bashforth weights x dt: PLMS, iPNDM), "ab_variable"
    (iPNDM_v) or "gradient" (gradient estimation: d' = gamma d - (gamma - 1) d_old).
    warmup "heun": PLMS's pseudo-Heun first step (one extra call).
    last: "denoise" ends a schedule ending in 0 with D (the newest core's
    LMS, iPNDM, DEIS); "extrapolate" takes the multistep step to 0, which the
    first round did for LMS and iPNDM: measured against the newest core on
    exact Gaussian data it is up to 4x (LMS, normal, 20 steps) and 7x
    (iPNDM, kl_optimal, 12 steps) less accurate, and on a random SD3-type
    network 0.61 vs 0.24 (LMS, simple, 8 steps): the last step is long and an
    extrapolated d over it amplifies the history's error."""
    kind: str
    order: int = 4
    tau: Optional[str] = None     # lagrange: "sigma" or "deis_auto"
    warmup: str = "lower"
    last: str = "denoise"
    gamma: float = 2.0

    def calls(self, sig, split):
        heun_start = self.warmup == "heun" and split(sig[0], sig[1])[0] > 0.0
        return len(sig) - 1 + (1 if heun_start else 0)

    def start(self, run):
        # (sigma, d, D), newest first; "noisy": fresh noise has entered
        return {"hist": [], "noisy": False}

    def _weights(self, hist, sigma, sigma_to, order):
        dt = sigma_to - sigma
        nodes = [h[0] for h in hist[:order]]
        if self.kind == "ab":
            return [w * dt for w in AB_WEIGHTS[len(nodes) - 1]]
        if self.kind == "ab_variable":
            hs = [dt] + [nodes[k] - nodes[k + 1] for k in range(len(nodes) - 1)]
            return [w * dt for w in ipndm_v_weights(hs)]
        if self.kind == "gradient":
            if len(nodes) == 1:
                return [dt]
            return [self.gamma * dt, (1.0 - self.gamma) * dt]
        tau = None if self.tau == "sigma" else deis_auto_tau([sigma_to] + nodes)
        return lagrange_integral(nodes, sigma, sigma_to, tau)

    def step(self, run, st, i, x, denoised):
        sigma, sigma_next = run.sig[i], run.sig[i + 1]
        hist = st["hist"]
        d = to_d(x, sigma, denoised)
        hist.insert(0, (sigma, d, denoised))
        order = 2 if self.kind == "gradient" else self.order
        del hist[order:]
        sigma_down, up = run.split(sigma, run.sig[i + 1])

        def move(sigma_to):
            if sigma_to == 0.0 and (self.last == "denoise" or len(hist) == 1):
                return denoised
            if len(hist) == 1 and self.warmup == "heun" and i == 0:
                return SigmaRK(heun_coeffs).move(run, i, x, denoised, sigma, sigma_to)
            if up > 0.0 or st["noisy"]:
                return self._data_move(run, x, sigma, run.sig[i + 1], sigma_to, hist, order)
            if len(hist) == 1:
                return x + d * (sigma_to - sigma)
            ws = self._weights(hist, sigma, sigma_to, len(hist))
            return x + combine(ws, [h[1] for h in hist])

        def on_noise(x_down, sigma_down, x_next):
            st["noisy"] = True

        return advance(run, i, x, denoised, move, on_noise)

    def _data_move(self, run, x, sigma, sigma_next, sigma_to, hist, order):
        """The step under noise. d_k = (x_k - D_k) / sigma_k is the derivative
        of the path it was taken on, and fresh noise starts another path:
        extrapolating the old d's into it blew LMS up to 30x the data's std,
        and restarting the history (the first round's fix) made every one of
        these samplers Euler ancestral (std 0.84 of the data's at 20 karras
        steps, both processes). The data predictions D_k stay estimates of the
        one function D(lambda) the SDE's drift integrates (Lu et al. 2023,
        SDE-DPM-Solver++), so under noise the step is the exponential Adams
        method of the same order through them in the process's half-log-SNR,
        the SDE's own frame, as dpmpp_2m_sde's: the kernel runs to sigma_down,
        the D's are read in the lambda the step elapses (ExpMultistep), with
        the amplification bound _NOISY_ADAMS states."""
        clock = run.proc
        if sigma_next == 0.0:
            return hist[0][2]
        elapsed = clock.lam(sigma_next) - clock.lam(sigma)
        entries = [(h[2], clock.lam(h[0])) for h in hist[:order]]
        return _NOISY_ADAMS._move(clock, x, sigma, sigma_to, elapsed, entries, noisy=True)


# --- data frame: single-step (exponential Runge-Kutta) -----------------------

def etd_row(nodes, span, rule="exact"):
    """Weights of one exponential RK row or multistep step (see phi.etd_weights):
    `nodes` in units of the row's physical length, `span` the kernel's length
    in lambda. rule "exact" integrates the interpolant; "midpoint" evaluates it
    at the middle and weights it by 1 - e^-span (DPM-Solver++ 2S/2M's choice,
    SEEDS-2)."""
    if rule == "midpoint":
        first = -math.expm1(-span) if not math.isinf(span) else 1.0
        return etd_weights(nodes, span, span, moments=[first * 0.5 ** m for m in range(len(nodes))])
    return etd_weights(nodes, span, span)


@dataclass(frozen=True)
class ExpRK(Method):
    """Exponential Runge-Kutta in the data prediction: stage j at lambda + c_j H,
    X_j = e^(-c_j H) X + sum_k A_jk D_k, X' = e^-H X + sum_k b_k D_k.

    tableau(H) -> (c, A, b) with A, b already integrated over the step
    (they include the factor H). stage_noise: None (noise only after the
    whole step: the ancestral form), "draws" (each stage split by the rule
    over [sigma, stage] with its own draw on that interval: DPM-Solver++ SDE,
    k-diffusion's dpmpp_sde) or "ou" (each stage gets the Ornstein-Uhlenbeck
    noise integrated along the step, one Brownian increment per stage
    interval: SEEDS, Gonzalez et al. 2023, arXiv:2305.14267, Alg. 3-4)."""
    tableau: Callable
    stages: int
    clock: str = "log_sigma"
    stage_noise: Optional[str] = None

    def calls(self, sig, split):
        total = 0
        for i in range(len(sig) - 1):
            down, up = split(sig[i], sig[i + 1])
            staged = self.stage_noise is not None and up > 0.0
            total += self.stages if (sig[i + 1] > 0.0 if staged else down > 0.0) else 1
        return total

    def step(self, run, st, i, x, denoised):
        if self.stage_noise is not None and run.eta > 0.0 and run.sig[i + 1] > 0.0:
            return self._noisy_step(run, i, x, denoised)
        return advance(run, i, x, denoised,
                       lambda sigma_to: self.move(run, x, denoised, run.sig[i], sigma_to),
                       clock=run.clock(self.clock))

    def move(self, run, x, denoised, sigma, sigma_to):
        clock = run.clock(self.clock)
        if sigma_to == 0.0:
            return denoised
        lam = clock.lam(sigma)
        big_h = clock.lam(sigma_to) - lam
        c, a, b = self.tableau(big_h)
        ds = [denoised]
        for j in range(1, len(c)):
            sigma_j = clock.sigma_from_lam(lam + c[j] * big_h)
            x_j = x * (sigma_j / sigma) + combine(a[j], ds) * clock.alpha(sigma_j)
            ds.append(run.denoise_at(x_j, sigma_j))
        return x * (sigma_to / sigma) + combine(b, ds) * clock.alpha(sigma_to)

    def _noisy_step(self, run, i, x, denoised):
        """Noise at every stage. Stage j sits at the physical lambda + c_j h
        (h the step to sigma_next) and is reached from x by the rule's split
        over [sigma, sigma_j]; its deterministic part uses the row's span
        H_j = lambda(sigma_j,down) - lambda (for the SDE rule (1 + eta) c_j h)."""
        clock = run.clock(self.clock)
        proc = run.proc
        sigma, sigma_next = run.sig[i], run.sig[i + 1]
        lam = clock.lam(sigma)
        h = clock.lam(sigma_next) - lam
        c = self.tableau(h)[0]
        ds = [denoised]
        ou = None           # running OU noise (normalised) for "ou"
        path = None         # running Brownian increment W(sigma_j) - W(sigma) for "draws"
        labels = _draw_labels(run, clock, sigma, sigma_next, c[1:]) if self.stage_noise == "draws" \
            else None
        prev_sigma = sigma
        for j in range(1, len(c) + 1):
            last = j == len(c)
            # a stage at c = 1 (exponential Heun) sits exactly on sigma_next
            sigma_j = sigma_next if last or c[j] == 1.0 else clock.sigma_from_lam(lam + c[j] * h)
            cj = 1.0 if last else c[j]
            sigma_down, up = run.split(sigma, sigma_j, clock)
            span = clock.lam(sigma_down) - lam if sigma_down > 0.0 else math.inf
            _, a, b = self.tableau(span / cj)
            row = b if last else a[j]
            x_down = denoised if sigma_down == 0.0 else (
                x * (sigma_down / sigma) + combine(row, ds) * clock.alpha(sigma_down))
            if self.stage_noise == "draws":
                # The stage's noise is the path's increment over [sigma, sigma_j]
                # and the step's over [sigma, sigma_next] (k-diffusion's draws,
                # which overlap): built here from the disjoint increments
                # [prev, sigma_j] of one Brownian path in sigma, so that a source
                # drawing fresh noise per call gives the overlap's correlation
                # too. Read as two separate draws, the step's noise lost its
                # correlation with the stage's, and the output 10-18% of the
                # data's std (eta 1, karras, 8-20 steps); a Brownian source gives
                # the same numbers either way.
                t0, t1 = labels[j - 1], labels[j]
                inc = run.draw_at(t0, t1) * math.sqrt(abs(t1 - t0))
                path = inc if path is None else path + inc
                z = path / math.sqrt(abs(t1 - labels[0]))
            elif prev_sigma == sigma_j:
                # a zero-length last segment (a stage at c = 1) adds no noise:
                # the step ends with the stage's own
                total = run.rule_decay(sigma, sigma_j, clock)
                z = ou / math.sqrt(max(1e-300, 1.0 - total * total))
            else:
                # OU increment over [prev_sigma, sigma_j]: decay of the part
                # already there and fresh noise for the rest, so that every
                # stage's noise is the integral of one Brownian path.
                q = run.rule_decay(prev_sigma, sigma_j, clock)
                fresh = run.draw_at(prev_sigma, sigma_j)
                ou = fresh * math.sqrt(max(0.0, 1.0 - q * q)) if ou is None else \
                    ou * q + fresh * math.sqrt(max(0.0, 1.0 - q * q))
                total = run.rule_decay(sigma, sigma_j, clock)
                norm = math.sqrt(max(1e-300, 1.0 - total * total))
                z = ou / norm
            x_j = proc.renoise(x_down, sigma_down, sigma_j, up, z) if up > 0.0 else x_down
            if last:
                return x_j
            ds.append(run.denoise_at(x_j, sigma_j))
            prev_sigma = sigma_j


def _draw_labels(run, clock, sigma, sigma_next, stages):
    """The sigmas dpmpp_sde's noise path is read at: sigma, each stage's
    (at fractions `stages` of the step in lambda), sigma_next. For VE they
    are computed as k-diffusion does, in the schedule's dtype through t =
    -log(sigma): its labels differ from the schedule's numbers by an ulp, and
    a Brownian path read an ulp apart differs by ~1e-4, enough to part ways
    with the core sampler's image for the same seed."""
    if run.proc.name != "ve":
        lam = clock.lam(sigma)
        h = clock.lam(sigma_next) - lam
        return [sigma] + [clock.sigma_from_lam(lam + r * h) for r in stages] + [sigma_next]
    import torch
    t = -torch.tensor([sigma, sigma_next], dtype=run.sigmas.dtype).log()
    mids = [float((-(t[0] + (t[1] - t[0]) * r)).exp()) for r in stages]
    return [float((-t[0]).exp())] + mids + [float((-t[1]).exp())]


def dpmpp_2s_tableau(r=0.5):
    """DPM-Solver++(2S) (Lu et al. 2023, Alg. 1): one stage at r H by a
    first-order step, the step with that stage's D alone."""
    def tableau(big_h):
        return (0.0, r), ((), etd_row([0.0], r * big_h)), (0.0,) + tuple(etd_row([0.0], big_h))
    return tableau


def sde_2s_tableau(r=0.5):
    """DPM-Solver++ SDE / SEEDS-2 (Gonzalez et al. 2023, Alg. 3): a stage at
    r H, then D interpolated through (0, D) and (r, D_r), read at the middle:
    D_d = (1 - 1/(2r)) D + 1/(2r) D_r, weighted by 1 - e^-H."""
    def tableau(big_h):
        return (0.0, r), ((), etd_row([0.0], r * big_h)), tuple(etd_row([0.0, r], big_h, "midpoint"))
    return tableau


def seeds_2_tableau(r=0.5, solver_type="phi_1"):
    """SEEDS-2 (Gonzalez et al. 2023, arXiv:2305.14267, Alg. 3) with the
    newest ComfyUI's `solver_type`: "phi_1" reads the line through (0, D) and
    (r, D_r) at the step's middle and weights it by 1 - e^-H (the paper's
    form, sde_2s_tableau); "phi_2" integrates that line exactly, b2 = H
    phi_2(-H) / r, b1 = H phi_1(-H) - b2 (res_2s_tableau). r = 1 with
    "phi_2" is the exponential Heun method of the core's exp_heun_2_x0."""
    if solver_type == "phi_1":
        return sde_2s_tableau(r)
    if solver_type == "phi_2":
        return res_2s_tableau(r)
    raise ValueError(f"solver_type must be 'phi_1' or 'phi_2', got {solver_type!r}")


def res_2s_tableau(c2=0.5):
    """RES 2-stage (Zhang et al. 2023, arXiv:2308.02157; Cox & Matthews 2002
    ETD2RK; RES4LYF's res_2s): stage at c2 H, then the exact integral of the
    line through (0, D) and (c2, D_2): b2 = H phi_2(-H) / c2, b1 = H phi_1(-H) - b2."""
    def tableau(big_h):
        return (0.0, c2), ((), etd_row([0.0], c2 * big_h)), tuple(etd_row([0.0, c2], big_h))
    return tableau


def res_3s_tableau(c2=0.5, c3=1.0):
    """RES 3-stage (RES4LYF's res_3s; third order by Hochbruck & Ostermann's
    conditions b.c = phi_2, b.c^2/2 = phi_3 at h -> 0): stages at c2, c3;
    gamma = c3 (2 - 3 c3) / (c2 (3 c2 - 2)) balances b2 = gamma b3 so that the
    c^2 condition holds; b3 = H phi_2(-H) / (gamma c2 + c3); row 3 takes
    a32 = gamma c2 phi_2(-c2 H) + c3^2 / c2 phi_2(-c3 H) (times H); the first
    column makes each row exact for a constant D."""
    gamma = c3 * (2.0 - 3.0 * c3) / (c2 * (3.0 * c2 - 2.0))

    def tableau(big_h):
        p1 = lambda c: c * big_h * phi(1, -c * big_h)  # noqa: E731
        p2 = lambda c: big_h * phi(2, -c * big_h)      # noqa: E731
        a32 = gamma * c2 * p2(c2) + c3 ** 2 / c2 * p2(c3)
        b3 = p2(1.0) / (gamma * c2 + c3)
        b2 = gamma * b3
        a = ((), (p1(c2),), (p1(c3) - a32, a32))
        b = (p1(1.0) - b2 - b3, b2, b3)
        return (0.0, c2, c3), a, b
    return tableau


def seeds_3_tableau(r1=1.0 / 3.0, r2=2.0 / 3.0):
    """SEEDS-3 (Gonzalez et al. 2023, Alg. 4): stages at r1, r2; the second
    stage from the line through (0, D), (r1, D_1); the step from the line
    through (0, D), (r2, D_2), each integrated exactly (b_1 = 0)."""
    def tableau(big_h):
        a3 = etd_row([0.0, r1 / r2], r2 * big_h)
        b = etd_row([0.0, r2], big_h)
        return (0.0, r1, r2), ((), etd_row([0.0], r1 * big_h), (a3[0], a3[1])), (b[0], 0.0, b[1])
    return tableau


# --- data frame: multistep (exponential Adams) -----------------------------------

def _exact(span, n):
    if math.isinf(span):
        return [1.0] * n  # the kernel sits at the step's end
    return [span * math.factorial(m) * phi(m + 1, -span) for m in range(n)]


def moments_exact(span, n, noisy=False):
    """The exact integrals: RES multistep (Zhang et al. 2023), SA-Solver
    (Xue et al. 2023, eq. 15), DPM-Solver++(2M) "heun"."""
    return _exact(span, n)


def moments_midpoint(span, n, noisy=False):
    """DPM-Solver++(2M) (Lu et al. 2023, Alg. 2): the line evaluated at the
    step's middle times 1 - e^-H."""
    first = 1.0 if math.isinf(span) else -math.expm1(-span)
    return [first * 0.5 ** m for m in range(n)]


def moments_kdiff_3m(span, n, noisy=False):
    """DPM-Solver++(3M) as k-diffusion and diffusers write it: the quadratic
    term weighted by H phi_3(-H) where the exact integral has 2 H phi_3(-H),
    so it converges at second order (measured; `order` says 2). Kept so that
    images match the core's dpmpp_3m_sde."""
    out = _exact(span, n)
    if n >= 3:
        out[2] *= 0.5
    return out


def unipc_moments(variant):
    """UniPC (Zhao et al. 2023, arXiv:2302.04867): with the data trend D1_k =
    (D_k - D_0)/r_k and B(h) = h (bh1) or 1 - e^-h (bh2), the coefficients rho
    solve sum_k rho_k r_k^(n-1) = n! h phi_(n+1)(-h) / B(h), which makes B
    rho the exact integral of the Taylor polynomial: the exact moments. The
    authors' code and diffusers take rho = 1/2 instead where one difference
    is used (the order-2 predictor, the order-1 corrector): moment 1 = B / 2.
    A noisy step solves for rho there too (B(H)/2 outgrows the exact weight
    and amplifies the fresh noise the differences carry)."""
    def moments(span, n, noisy=False):
        out = _exact(span, n)
        if n == 2 and not noisy:
            out[1] = 0.5 * (span if variant == "bh1" else -math.expm1(-span))
        return out
    moments.__name__ = f"unipc_{variant}_moments"
    return moments


def moments_in_s(span, n):
    """int_0^H e^-(H - u) (e^-u)^m du for m < n: the moments of the step's
    kernel for a polynomial in S / S_start = e^-u (S = sigma / alpha, u the
    lambda elapsed), the exponential integrator's weights when the data
    prediction is interpolated in the noise level instead of in lambda."""
    if math.isinf(span):
        return [1.0] + [0.0] * (n - 1)
    e = math.exp(-span)
    out = [-math.expm1(-span), span * e]
    for m in range(2, n):
        out.append((e - math.exp(-m * span)) / (m - 1))
    return out[:n]


# The amplification bound of a noisy exponential Adams step (ExpMultistep.
# noisy_amplification): the fresh noise the D's carry is multiplied by it.
NOISY_AMPLIFICATION = 5.0


@dataclass(frozen=True)
class ExpMultistep(Method):
    """Exponential Adams methods in the data prediction, one call a step:
    the polynomial through the newest D's (nodes in units of the lambda the
    step really elapses) integrated against the step's kernel (span lambda
    of sigma_down) with the method's moments (see phi.etd_weights).

    corrector: None; "unic" (UniPC's corrector: the step recomputed through
    the new point, reusing the model's output taken before the correction;
    skipped after a noisy step); "sa" (SA-Solver's Adams-Moulton corrector,
    the predictor's noise added again); "sa_pece" (then the model is
    evaluated at the corrected point: one more call a step).
    final: how the order drops at the end: None; "unipc" (at most the steps
    left, as the UniPC authors' lower_order_final); "sa" (SA-Solver: the
    predictor at most the steps left - 1, the corrector the steps left)."""
    moments: Callable
    order: int = 2
    clock: str = "log_sigma"
    corrector: Optional[str] = None
    corrector_order: Optional[int] = None
    final: Optional[str] = None
    # Drop the order while the weights amplify the D's more than this (sum |w|
    # over sum w): extrapolating a parabola over a step much longer than the
    # history's spacing (a flow schedule's last step 0.27 -> 0.002 is 6x its
    # predecessor in lambda) multiplies its error. Equal-step AB3 has 3.7;
    # 8 leaves every Karras step alone and cut res_3m's error on the uniform-t
    # flow schedule from 7.1 to 0.07 (10 steps) and 0.55 to 0.004 (40 steps).
    max_amplification: Optional[float] = None
    # Where a schedule ending in 0 really ends (UniPC: the authors' code and
    # the core integrate to sigma 0.001 and return x there rather than
    # denoising from the last sigma; measured on exact Gaussian data that is
    # up to 4.6x closer to the ODE's end at 0 than the denoise on flow
    # kl_optimal, whose last sigma 0.009 leaves a denoise error ~sigma^2).
    end_sigma: Optional[float] = None
    # The last step into a nonzero sigma (a schedule that stops above 0: the
    # first piece of a split run) has no corrector after it, and the usual
    # schedules make it long in lambda (normal, ddim_uniform, kl_optimal end
    # 0.3 -> 0.03 after steps of ~0.3), where a polynomial in lambda through
    # the history extrapolates a data prediction that saturates (D - D(0) ~
    # S^2 = e^-2 lambda) far beyond its nodes. "auto": that step interpolates
    # the D's in lambda or in S = e^-lambda, whichever spaces the step and the
    # newest history interval more evenly (deis_auto_tau's rule), with the
    # kernel's exact moments in either (moments_in_s). Measured on exact
    # Gaussian data, SA-Solver, 8 schedules x 2-33 steps x every stopping
    # point (675 cases a process): summed RMSE VE 10.4 -> 7.0, flow 20.5 ->
    # 11.2, the largest 0.51 -> 0.45 and 1.19 -> 0.49; 28 of the 71 cases
    # with RMSE > 0.1 at least 2x closer; 12 cases worse by more than 2% above
    # RMSE 1e-3. Against the newest core's function on its SD 1.x and
    # shift-3 flow models (603 stopping points each; it returns the corrected
    # state at the next-to-last sigma): summed RMSE eps 7.1 -> 3.7 (the
    # core's 389), flow 15.9 -> 6.6 (the core's 27.8). Always lambda, always
    # S and a first-order last step gave 7.1/15.9, 5.2/7.7 and 8.6/9.7.
    # Schedules ending in 0 are unchanged.
    end_variable: Optional[str] = None
    # The bound of a noisy step (see _move). 5 (the first round's 8 left, at
    # eta 1 on exact Gaussian data, output std / the data's: uni_pc 1.79 and
    # res_3m 1.73 at 8 VE karras steps, dpmpp_2m at eta 1 1.55 on VE normal
    # and 2.16 on flow normal at 12 steps; with 5 every one of them, and every
    # sampler of this kind at 8 and 12 steps of karras, simple, normal and beta
    # at eta 0.5 and 1, lies in 0.67-1.5x). The rows the core has at eta > 0
    # keep 8, the core function's steps (registry._CORE_NOISY).
    noisy_amplification: float = NOISY_AMPLIFICATION

    def calls(self, sig, split):
        n = len(sig) - 1
        return n + max(0, n - 1) if self.corrector == "sa_pece" else n

    def _in_s(self, clock, sigma, elapsed, entries):
        """For end_variable "auto": True where the step and the newest
        history interval (its end, start and the previous point) are more
        evenly spaced in S = e^-lambda than in lambda: how far the step
        reaches beyond its history in each variable."""
        lam_to = clock.lam(sigma) + elapsed
        lams = [lam_to] + [lk for _, lk in entries[:2]]
        score = lambda pts: _spacing_score(lambda v: v, pts)  # noqa: E731
        return score([math.exp(-(v - lam_to)) for v in lams]) < score(lams)

    def start(self, run):
        return {"hist": [], "pending": None}

    def _move(self, clock, x, sigma, sigma_to, elapsed, entries, noisy=False, in_s=False):
        """x at sigma_to from (x, sigma) with the D's `entries` = [(D, lambda)]
        interpolated over nodes (lambda - lambda(sigma)) / elapsed, or with
        in_s over S / S(sigma) = e^-(lambda - lambda(sigma))."""
        if sigma_to == 0.0:
            return entries[0][0]
        lam = clock.lam(sigma)
        # the span from the exact decay: infinite out of flow's pure noise,
        # where a first-order step needs no lambda at all
        decay = clock.decay(sigma, sigma_to)
        span = -math.log(decay) if decay > 0.0 else math.inf
        if in_s:
            nodes = [math.exp(-(lk - lam)) for _, lk in entries]
            ws = etd_weights(nodes, elapsed, span, moments=moments_in_s(span, len(nodes)))
            return x * (sigma_to / sigma) + \
                combine(ws, [dk for dk, _ in entries]) * clock.alpha(sigma_to)
        # Under noise the D's carry the fresh noise of earlier steps, and an
        # extrapolation over a step much longer than their spacing multiplies
        # it (measured: dpmpp_3m_sde at eta 1 on flow's normal schedule, last
        # step 0.3 -> 0.003, ended with 9.6x the data's std), so a noisy step
        # always keeps its amplification bounded.
        bound = self.max_amplification
        if noisy:
            bound = min(bound or self.noisy_amplification, self.noisy_amplification)
        while True:
            nodes = [(lk - lam) / elapsed for _, lk in entries]
            ws = etd_weights(nodes, elapsed, span, moments=self.moments(span, len(nodes), noisy))
            if bound is None or len(entries) == 1 or \
                    sum(abs(w) for w in ws) <= bound * abs(sum(ws)):
                break
            entries = entries[:-1]
        return x * (sigma_to / sigma) + combine(ws, [dk for dk, _ in entries]) * clock.alpha(sigma_to)

    def correct(self, run, st, i, x, denoised):
        pend = st["pending"]
        st["pending"] = None
        n = len(run.sig) - 1
        last_is_denoise = run.sig[i + 1] == 0.0 and self.end_sigma is None
        if pend is None or (last_is_denoise and self.corrector != "sa_pece"):
            return x, denoised  # the step to 0 outputs D whatever x is
        clock = run.clock(self.clock)
        x_prev, sigma_prev, entries, sigma_down, up, z = pend
        sigma = run.sig[i]
        lam_new = clock.lam(sigma)
        entries = [(denoised, lam_new)] + entries
        if self.corrector_order is not None:
            keep = self.corrector_order
            if self.final == "sa" and run.sig[-1] == 0.0:
                keep = min(keep, n - i)
            entries = entries[:max(1, keep)]
        elapsed = lam_new - clock.lam(sigma_prev)
        x_c = self._move(clock, x_prev, sigma_prev, sigma_down, elapsed, entries, up > 0.0)
        if up > 0.0:
            x_c = run.proc.renoise(x_c, sigma_down, sigma, up, z)
        if self.corrector == "sa_pece":
            denoised = run.denoise_at(x_c, sigma)
        return x_c, denoised

    def step(self, run, st, i, x, denoised):
        clock = run.clock(self.clock)
        sig = run.sig
        n = len(sig) - 1
        sigma, sigma_next = sig[i], sig[i + 1]
        lam = clock.lam(sigma)
        hist = st["hist"]
        order = self.order
        if self.final == "unipc":
            order = min(order, n - i)
        elif self.final == "sa" and sig[-1] == 0.0:
            order = max(1, min(order, n - i - 1))
        entries = [(denoised, lam)] + hist[:order - 1]
        if sigma_next == 0.0 and self.end_sigma is not None and sigma > self.end_sigma:
            sigma_next = sigma_down = self.end_sigma  # the last step stays noise-free
            up = 0.0
        else:
            sigma_down, up = run.split(sigma, sigma_next, clock)
        if sigma_down == 0.0:
            x_next = denoised
        else:
            elapsed = clock.lam(sigma_next) - lam
            in_s = self.end_variable == "auto" and i == n - 1 and len(entries) > 2 and \
                self._in_s(clock, sigma, elapsed, entries)
            x_next = self._move(clock, x, sigma, sigma_down, elapsed, entries, up > 0.0, in_s)
        z = None
        if up > 0.0:
            z = run.draw(i)
            x_next = run.proc.renoise(x_next, sigma_down, sigma_next, up, z)
        if self.corrector is not None and sigma_next > 0.0 and (up == 0.0 or self.corrector != "unic"):
            st["pending"] = (x, sigma, entries, sigma_down, up, z)
        # CFG++ keeps the unconditional prediction in the history (sample_grid)
        hist.insert(0, (st.get("history", denoised), lam))
        del hist[max(self.order, self.corrector_order or 0):]
        return x_next


# The exponential Adams method the sigma-frame multistep samplers step with
# under noise (SigmaMultistep._data_move). Its order drops while the weights
# amplify the noisy D's more than 5x (so equal-step AB4, 6.7, steps as AB3,
# 3.7). Measured at eta 1 on exact Gaussian data (lms; output std / the
# data's at 8 / 12 / 20 / 40 steps): a bound of 8 (the first round's) left VE
# karras 8 steps at 1.76; 4 biased the 50-step std by +2.7% (the moments
# test's Richardson extrapolation failed); 5 gives karras VE 1.29 / 1.38 /
# 1.00 / 1.01, flow 1.17 / 0.97 / 1.01 / 1.00, simple VE 0.78-0.99, flow
# 0.72-1.10.
_NOISY_ADAMS = ExpMultistep(moments_exact, order=4)


# --- ER-SDE ------------------------------------------------------------------------

ER_SDE_POINTS = 200


@dataclass(frozen=True)
class ERSDE(Method):
    """ER-SDE-Solver-3 (Cui et al. 2023, arXiv:2309.06169, Alg. 1-3; VP form
    in normalised S = sigma / alpha): with the noise scale f of the rule
    (noise_rules.er_sde_scale), r = f(S_t) / f(S_s),
        X_t = r X_s + (1 - r) D + (dS + f(S_t) int dS/f) D'
                                + (dS^2/2 + f(S_t) int (S - S_s) dS/f) D'' + noise,
    dS = S_t - S_s, with D' and D'' the divided differences of D in S (the
    second as the paper's Taylor term, divided by half the span). The
    integrals are the reference implementation's 200-point left Riemann sums
    over [S_t, S_s] (the core's too): exact integrals were more accurate in
    108 of 138 cases on exact Gaussian data (7 schedules, 5-50 steps, both
    processes) but up to 3.8x less in the rest, where the sum's error cancels
    the method's, and images must not be less accurate than the core's."""
    max_stage: int = 3
    clock: str = "lambda"

    def start(self, run):
        if run.increasing and math.isinf(run.proc.snr_sigma(run.sig[-1])):
            # its noise-scale integrals run over [S, S_next], infinite there
            raise ValueError("er_sde cannot unsample up to pure noise (a flow model's "
                             "sigma = 1); end below it")
        return {"hist": []}  # (D, S), newest first; and D' history

    def step(self, run, st, i, x, denoised):
        from .noise_rules import er_sde_scale
        proc = run.proc
        sigma, sigma_next = run.sig[i], run.sig[i + 1]
        hist = st["hist"]
        s_now = proc.snr_sigma(sigma)
        hist.insert(0, (denoised, s_now))
        del hist[3:]

        def move(sigma_down):
            if sigma_down == 0.0:
                return denoised
            s_t = proc.snr_sigma(sigma_next)
            eta = run.eta
            f = lambda s: er_sde_scale(s, eta)  # noqa: E731
            r = proc.snr_sigma(sigma_down) / s_now   # = f(s_t)/f(s) by the rule
            a_d = proc.alpha(sigma_down)
            out = x * (sigma_down / sigma) + denoised * (a_d * (1.0 - r))
            stage = min(self.max_stage, len(hist))
            if stage >= 2:
                ds = s_t - s_now
                f_t = f(s_t)
                int_1 = int_2 = 0.0
                width = (s_now - s_t) / ER_SDE_POINTS
                for k in range(ER_SDE_POINTS):
                    s = s_t + k * width
                    w = width / f(s)
                    int_1 += w
                    int_2 += w * (s - s_now)
                d1 = (hist[0][0] - hist[1][0]) / (hist[0][1] - hist[1][1])
                out = out + d1 * (a_d * (ds + int_1 * f_t))
                if stage >= 3:
                    d1_old = (hist[1][0] - hist[2][0]) / (hist[1][1] - hist[2][1])
                    d2 = (d1 - d1_old) / ((hist[0][1] - hist[2][1]) / 2.0)
                    out = out + d2 * (a_d * (ds * ds / 2.0 + int_2 * f_t))
            return out

        return advance(run, i, x, denoised, move)
