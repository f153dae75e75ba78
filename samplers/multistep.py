"""Linear multistep samplers: each step combines the current and earlier
derivative evaluations, one model call per step. A method is data:

  * which quantity it extrapolates (`form`): the ODE derivative d = (x - D)/sigma
    in sigma (LMS, PLMS, iPNDM), or the noise prediction eps = (x - alpha D)/sigma
    in lambda (DEIS's exponential integrator);
  * how it turns the history into step coefficients (`coeffs`): integrals of
    Lagrange polynomials through the history nodes (variable steps: LMS, DEIS),
    or the fixed Adams-Bashforth weights (PLMS, iPNDM);
  * its warm-up while history is short: lower order, or PLMS's pseudo-Heun
    first step.

The shared loop below runs all of them, with the ancestral split for eta > 0.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .core import run_with_split, to_d
from .exponential import data_step
from .runge_kutta import EULER, HEUN, rk_step

# Adams-Bashforth weights for equal steps, newest first (Hairer et al.,
# "Solving ODEs I", III.1); PNDM and iPNDM use them in sigma.
AB_WEIGHTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)

# 32-point Gauss-Legendre on [0, 1]: exact for the polynomials of LMS, and to
# rounding for DEIS's exponentially weighted ones at the step sizes we see.
_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_GL_X, _GL_W = (_GL_X + 1.0) / 2.0, _GL_W / 2.0


def lagrange_integrals(nodes, a, b, weight=None):
    """Integrals over [a, b] of weight(u) * l_j(u), where l_j is the Lagrange
    basis polynomial of nodes[j]."""
    u = a + (b - a) * _GL_X
    w = _GL_W * (b - a)
    if weight is not None:
        w = w * weight(u)
    out = []
    for j, nj in enumerate(nodes):
        basis = np.ones_like(u)
        for k, nk in enumerate(nodes):
            if k != j:
                basis *= (u - nk) / (nj - nk)
        out.append(float(np.dot(w, basis)))
    return out


@dataclass(frozen=True)
class Multistep:
    form: str                      # "d" (in sigma) or "eps" (in lambda)
    coeffs: Callable               # (proc, nodes, sigma, sigma_to) -> (A, [c_j])
    warmup: str = "lower"          # or "heun"


def _lms_coeffs(proc, nodes, sigma, sigma_to):
    return 1.0, lagrange_integrals(nodes, sigma, sigma_to)


def _ab_coeffs(proc, nodes, sigma, sigma_to):
    dt = sigma_to - sigma
    return 1.0, [w * dt for w in AB_WEIGHTS[len(nodes) - 1]]


def _deis_coeffs(proc, nodes, sigma, sigma_to):
    # In x/alpha the ODE is d(x/alpha)/dlambda = -e^-lambda eps, so
    # x' = (alpha'/alpha) x - alpha' * sum_j eps_j * int e^-u l_j(u) du.
    lams = [proc.lam(s) for s in nodes]
    ints = lagrange_integrals(lams, proc.lam(sigma), proc.lam(sigma_to), weight=lambda u: np.exp(-u))
    a_to = proc.alpha(sigma_to)
    return a_to / proc.alpha(sigma), [-a_to * c for c in ints]


LMS = Multistep(form="d", coeffs=_lms_coeffs)
IPNDM = Multistep(form="d", coeffs=_ab_coeffs)
PLMS = Multistep(form="d", coeffs=_ab_coeffs, warmup="heun")
DEIS = Multistep(form="eps", coeffs=_deis_coeffs)


def sample_multistep(run, method, order):
    if not (isinstance(order, int) and 1 <= order <= 4):
        raise ValueError(f"order must be an integer in [1, 4], got {order!r}")
    if method.coeffs is _ab_coeffs:
        order = min(order, len(AB_WEIGHTS))
    proc = run.proc
    hist = []  # (sigma, f), newest first

    def step(run, i, x, denoised, sigma, sigma_to):
        if method.form == "d":
            f = to_d(x, sigma, denoised)
        else:
            f = (x - denoised * proc.alpha(sigma)) / sigma
        hist.insert(0, (sigma, f))
        del hist[order:]
        if len(hist) == 1 or sigma_to == 0.0 and method.form == "eps":
            # First-order start (PLMS: its pseudo-Heun first step), and the
            # exponential form's last step, where lambda is infinite: DDIM.
            if method.form == "eps":
                return data_step(proc, x, denoised, sigma, sigma_to)
            first = HEUN if method.warmup == "heun" and i == 0 else EULER
            return rk_step(run, x, denoised, sigma, sigma_to, first)
        scale, cs = method.coeffs(proc, [s for s, _ in hist], sigma, sigma_to)
        x = x * scale if scale != 1.0 else x
        for c, (_, fk) in zip(cs, hist):
            x = x + fk * c
        return x

    return run_with_split(run, step)
