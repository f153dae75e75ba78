"""DPM-Solver (Lu et al. 2022, arXiv:2206.00927): single-step solvers of order
1, 2 and 3 in the half-log-SNR lambda with the noise prediction
eps = (x - alpha D) / sigma, used two ways:

* `sample_dpm_fast`: a fixed budget of model calls spent on uniform steps in
  lambda, mostly third order (the paper's "DPM-Solver-fast", Sec. 4).
* `sample_dpm_adaptive`: an embedded pair (orders 1/2 or 2/3) whose difference
  estimates the local error and drives the step size (Sec. 4 / Appendix),
  with k-diffusion's PID controller (Soderlind 2003).

Both integrate from sigmas[0] to the last nonzero sigma, as ComfyUI's call of
k-diffusion does. Unlike the host, a schedule ending in 0 then gets one
denoise, so the result carries no leftover noise at sigma_min; dpm_fast
spends one call less on the way so that n steps cost n calls, like the host.

General process. The paper states its updates for any (alpha, sigma) pair,
e.g. DPM-Solver-1 x_t = (alpha_t / alpha_s) x_s - sigma_t (e^h - 1) eps_s;
in normalised coordinates (x / alpha, the VE process) that is k-diffusion's
formula. Since eps_s is defined from D_s, (alpha_t / alpha_s) x_s - sigma_t e^h
eps_s = alpha_t D_s exactly, so every first-order part is written as
alpha_t D_s + sigma_t eps_s: no division by alpha, and no cancellation of two
terms of size alpha_t / alpha_s when alpha_s is small.

Flow. The solver integrates in -log(sigma) for both processes (the clock of
methods.py): the probability-flow ODE has the VE form in (x, sigma) for flow
too, so there "eps" is (x - D) / sigma and the formulas are k-diffusion's as
the newest ComfyUI runs them on flow models, with lambda(1) = 0 finite. Only
the ancestral noise uses the process: the split of the process gives sigma_down,
and the fresh noise re-mixes as (1 - s) x0 + s n. (The first round integrated
in flow's own lambda from a floor at -6; from there the noise-prediction
corrections are amplified by e^H ~ 400x, which at eta = 1 ended a 4-step run
with 36x the data's std.)
"""
import math

import torch

from .noise_rules import get_rule
from .process import VE


def _phi(h):
    """(e^h - 1) / h - 1, with its series where the subtraction would cancel."""
    if abs(h) < 1e-4:
        return h * (0.5 + h * (1.0 / 6.0 + h / 24.0))
    return math.expm1(h) / h - 1.0


class _Solver:
    """DPM-Solver stages between points given by lambda, for one run."""

    def __init__(self, run):
        self.run, self.proc, self.clock = run, run.proc, VE
        sig = run.sig
        # ComfyUI hands k-diffusion sigma_max = sigmas[0] and the last nonzero
        # sigma as sigma_min.
        self.sigma_max = sig[0]
        self.sigma_min = sig[-2] if sig[-1] == 0.0 else sig[-1]
        self.lam_start = self.clock.lam(self.sigma_max)
        self.lam_end = self.clock.lam(self.sigma_min)

    def point(self, lam):
        """(sigma, alpha) of the solver's point at lambda on its clock: every
        coefficient comes from here, so all of them agree with the lambda
        steps (alpha = 1: the VE form)."""
        sigma = self.clock.sigma_from_lam(lam)
        return sigma, 1.0

    def model_sigma(self, lam):
        """Where the model is asked: the schedule's own numbers at its ends
        (exactly, not through exp(-log(sigma)))."""
        if lam == self.lam_start:
            return self.sigma_max
        if lam == self.lam_end:
            return self.sigma_min
        return self.point(lam)[0]

    def evaluate(self, x, lam):
        """Model at lambda -> (denoised, eps)."""
        sigma = self.model_sigma(lam)
        denoised = self.run.denoise_at(x, sigma)
        return denoised, (x - denoised) / sigma

    def first_order(self, denoised, eps, lam_to):
        """DPM-Solver-1 (= DDIM) from the step's start to lam_to."""
        return denoised + eps * self.point(lam_to)[0]

    # Each solver below starts from the step's first evaluation (denoised,
    # eps at lam) and returns the latent at lam_to; intermediate points are at
    # lam + r h (Lu et al. 2022, Algorithms 4-5 with r1 = 1/2 for order 2 and
    # r1, r2 = 1/3, 2/3 for order 3, as the paper and k-diffusion use).

    def stage(self, denoised, eps, lam, lam_to, r):
        """eps at lam + r h, reached by a first-order step."""
        lam_r = lam + r * (lam_to - lam)
        return self.evaluate(self.first_order(denoised, eps, lam_r), lam_r)[1]

    def order2_from(self, base, eps, eps_r, lam, lam_to, r):
        """Second order given eps at lam + r h; `base` = first_order(..., lam_to)."""
        h = lam_to - lam
        sigma_to = self.point(lam_to)[0]
        return base - (eps_r - eps) * (sigma_to * math.expm1(h) / (2.0 * r))

    def solve(self, order, denoised, eps, lam, lam_to):
        base = self.first_order(denoised, eps, lam_to)
        if order == 1:
            return base
        if order == 2:
            eps_1 = self.stage(denoised, eps, lam, lam_to, 0.5)
            return self.order2_from(base, eps, eps_1, lam, lam_to, 0.5)
        return self.order3(denoised, eps, lam, lam_to, base)[1]

    def order3(self, denoised, eps, lam, lam_to, base):
        """DPM-Solver-3 -> (the order-2 solution through the r = 1/3 stage,
        the order-3 solution): the embedded pair of the adaptive solver."""
        r1, r2 = 1.0 / 3.0, 2.0 / 3.0
        h = lam_to - lam
        eps_1 = self.stage(denoised, eps, lam, lam_to, r1)
        low = self.order2_from(base, eps, eps_1, lam, lam_to, r1)
        lam_2 = lam + r2 * h
        sigma_2 = self.point(lam_2)[0]
        u2 = self.first_order(denoised, eps, lam_2) - (eps_1 - eps) * (
            sigma_2 * (r2 / r1) * _phi(r2 * h))
        eps_2 = self.evaluate(u2, lam_2)[1]
        sigma_to = self.point(lam_to)[0]
        high = base - (eps_2 - eps) * (sigma_to / r2 * _phi(h))
        return low, high

    # --- ancestral noise (k-diffusion's DPMSolver, any process) ---------------
    def ancestral(self, lam, lam_next):
        """-> (lam_to, up): solve to lam_to, then add `up` (normalised units)
        of fresh noise to reach lam_next. The deterministic target is capped
        at the end of the interval, and `up` recomputed from the cap, as the
        host does; the last step therefore adds nothing."""
        eta = self.run.eta
        if eta == 0.0:
            return lam_next, 0.0
        proc = self.proc
        sigma, sigma_next = self.model_sigma(lam), self.model_sigma(lam_next)
        # The split of the process with the step's decay read on the solver's
        # clock (sigma_next / sigma): from flow's pure noise the process's own
        # decay is 0 whatever the step, every attempt would be all fresh and
        # dpm_adaptive's controller could never accept a step.
        sigma_down, _ = get_rule("ancestral").split(proc, sigma, sigma_next, eta,
                                                    decay=sigma_next / sigma)
        # eta large enough asks for all of sigma_next as fresh noise
        # (sigma_down = 0, lambda = inf): the cap applies.
        lam_to = self.lam_end if sigma_down <= 0.0 else min(self.lam_end,
                                                             self.clock.lam(sigma_down))
        hat_next = proc.snr_sigma(sigma_next)
        hat_to = proc.snr_sigma(self.point(lam_to)[0])
        return lam_to, math.sqrt(max(0.0, hat_next * hat_next - hat_to * hat_to))

    def renoise(self, x, lam, lam_to, lam_next, up):
        if up <= 0.0:
            return x  # no draw: a zero weight consumes no randomness
        run = self.run
        z = run.draw_at(self.model_sigma(lam), self.model_sigma(lam_next))
        return self.proc.renoise(x, self.point(lam_to)[0], self.point(lam_next)[0], up, z)

    def _scalar(self, value):
        # A device op with the float as its argument: a fresh tensor from a
        # Python float would be a blocking host-to-device copy on every step.
        return self.run.s_in[0] * value

    # --- reporting -------------------------------------------------------------
    def report(self, i, x, lam, denoised, **extra):
        cb = self.run.callback
        if cb is None:
            return
        sigma = self._scalar(self.model_sigma(lam))
        cb({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised, **extra})

    def finish(self, x, lam, i):
        """The host stops at sigma_min; a schedule ending in 0 asks for a clean
        result, which one denoise at the reached point gives."""
        if self.run.sig[-1] == 0.0:
            denoised = self.run.denoise_at(x, self.model_sigma(lam))
            self.report(i, x, lam, denoised)
            x = denoised
        return self.run.result(x)


def _fast_orders(nfe):
    """Orders of the K = floor(nfe / 3) + 1 steps that spend exactly nfe
    calls (Lu et al. 2022, Sec. 4, and k-diffusion alike): third order, then
    the remainder nfe % 3 as one lower-order step, or a second- and a
    first-order step when nfe is a multiple of 3."""
    k = nfe // 3 + 1
    if nfe % 3 == 0:
        return [3] * (k - 2) + [2, 1]
    return [3] * (k - 1) + [nfe % 3]


def sample_dpm_fast(run):
    sv = _Solver(run)
    x = run.x
    # n steps, n calls: the final denoise of a schedule ending in 0 is one of them
    nfe = len(run.sig) - 1 - (1 if run.sig[-1] == 0.0 else 0)
    lam0, lam1 = sv.lam_start, sv.lam_end
    lam = lam0
    steps = 0
    # With [sigma, 0] there is nothing to integrate (sigma_min = sigma_max):
    # the final denoise is the whole answer.
    if lam1 > lam0:
        orders = _fast_orders(nfe)
        m = len(orders)
        grid = [lam0 + (lam1 - lam0) * (k / m) for k in range(m)] + [lam1]
        for i, order in enumerate(orders):
            lam, lam_next = grid[i], grid[i + 1]
            lam_to, up = sv.ancestral(lam, lam_next)
            denoised, eps = sv.evaluate(x, lam)
            sv.report(i, x, lam, denoised)
            x_to = sv.solve(order, denoised, eps, lam, lam_to)
            x = sv.renoise(x_to, lam, lam_to, lam_next, up)
        lam, steps = lam1, m
    return sv.finish(x, lam, steps)


class _PIDStep:
    """Step-size controller: the next h is h * limiter(prod e_k^-b_k) over the
    normalised errors of this and the last two accepted steps (Soderlind 2003,
    'Digital filters in adaptive time-stepping'; the gains divided by the
    method's order, so the default pure I gain is the classic
    h * error^(-1/order)). The smooth arctan limiter keeps each change within
    (0.21, 2.57). A step is accepted when the factor is at least
    accept_safety, i.e. with the default gains when error <~ 0.81^-order;
    h changes on every attempt, accepted or not."""

    def __init__(self, h, pcoeff, icoeff, dcoeff, order, accept_safety):
        self.h = h
        self.gains = ((pcoeff + icoeff + dcoeff) / order,
                      -(pcoeff + 2.0 * dcoeff) / order,
                      dcoeff / order)
        self.accept_safety = accept_safety
        self.log_inv = None  # log(1 / error) of the last two accepted steps

    def propose(self, error):
        log_inv = -math.log(error + 1e-8)  # the floor keeps an exact step finite
        if self.log_inv is None:
            self.log_inv = (log_inv, log_inv)
        b1, b2, b3 = self.gains
        # in logs, so that large gains cannot overflow a product
        log_f = b1 * log_inv + b2 * self.log_inv[0] + b3 * self.log_inv[1]
        factor = 1.0 + math.atan(math.exp(min(log_f, 700.0)) - 1.0)
        accept = factor >= self.accept_safety
        if accept:
            self.log_inv = (log_inv, self.log_inv[0])
        self.h *= factor
        return accept


def sample_dpm_adaptive(run, order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
                        icoeff=1.0, dcoeff=0.0, accept_safety=0.81, info=None):
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive option order must be 2 or 3, got {order!r}")
    sv = _Solver(run)
    x = x_prev = run.x
    lam, lam_end = sv.lam_start, sv.lam_end
    # With noise injected the local error no longer falls like h^(order+1);
    # the host tunes the controller for order 1.5 then.
    pid = _PIDStep(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if run.eta > 0 else order,
                   accept_safety)
    n_accept = n_reject = attempts = 0
    root_n = math.sqrt(x.numel())
    # The host's stopping rule: within 1e-5 of the end in lambda counts as there.
    while lam < lam_end - 1e-5:
        lam_next = min(lam_end, lam + pid.h)
        lam_to, up = sv.ancestral(lam, lam_next)
        # A rejected attempt evaluates the start again: the host does, and its
        # call count (ComfyUI's step budget) is what users compare.
        denoised, eps = sv.evaluate(x, lam)
        base = sv.first_order(denoised, eps, lam_to)
        if order == 2:
            low = base
            eps_1 = sv.stage(denoised, eps, lam, lam_to, 0.5)
            high = sv.order2_from(base, eps, eps_1, lam, lam_to, 0.5)
        else:
            low, high = sv.order3(denoised, eps, lam, lam_to, base)
        # Mixed absolute/relative tolerance per element, against the larger of
        # this and the previous accepted low-order solution (Lu et al. 2022,
        # Appendix: the RMS of the scaled difference of the embedded pair).
        scale = torch.maximum(low.abs(), x_prev.abs()).mul_(rtol).clamp_(min=atol)
        error = float(torch.linalg.vector_norm((low - high) / scale)) / root_n
        if not math.isfinite(error):
            raise ValueError(
                f"dpm_adaptive: the error estimate is {error} at sigma "
                f"{sv.model_sigma(lam):.6g}; the model returned non-finite values")
        accepted = pid.propose(error)
        sv.report(attempts, x, lam, denoised, error=error, accepted=accepted)
        attempts += 1
        if accepted:
            x_prev = low
            x = sv.renoise(high, lam, lam_to, lam_next, up)
            lam = lam_next
            n_accept += 1
        else:
            n_reject += 1
    out = sv.finish(x, lam, attempts)
    if info is not None:
        info.update(nfe=run.calls, n_accept=n_accept, n_reject=n_reject, steps=attempts)
    return out
