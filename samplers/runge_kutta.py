"""One-step (Runge-Kutta) samplers as Butcher tableaus over the probability-flow
ODE dx/dsigma = (x - D(x, sigma)) / sigma, which has this form for both the VE
and the flow process (see process.py), so one loop serves both.

The first stage reuses the model call the step loop already made at the grid
point. A step that ends at sigma = 0 is an Euler step: the ODE's right-hand
side is undefined at 0, and Euler's step to 0 lands exactly on the denoised
estimate.
"""
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .core import run_with_split, to_d


@dataclass(frozen=True)
class Tableau:
    a: Sequence[Sequence[float]]  # a[j] = weights of earlier stages for stage j
    b: Sequence[float]
    # Stage positions as fractions of the step; a function of (sigma, sigma_to)
    # where the method places its nodes non-uniformly (DPM-2's log-midpoint).
    c: Callable[[float, float], Sequence[float]]


def _fixed(*c):
    return lambda sigma, sigma_to: c


def _log_midpoint(sigma, sigma_to):
    # DPM-Solver-2 (Lu et al. 2022) evaluates at the geometric mean of the two
    # noise levels, i.e. the midpoint in log sigma; as an RK2 node that is:
    return (0.0, (math.sqrt(sigma * sigma_to) - sigma) / (sigma_to - sigma))


EULER = Tableau(a=((),), b=(1.0,), c=_fixed(0.0))
HEUN = Tableau(a=((), (1.0,)), b=(0.5, 0.5), c=_fixed(0.0, 1.0))
DPM_2 = Tableau(a=((), None), b=(0.0, 1.0), c=_log_midpoint)  # a[1] = (c[1],)


def rk_step(run, x, denoised, sigma, sigma_to, tableau):
    d = to_d(x, sigma, denoised)
    dt = sigma_to - sigma
    if sigma_to == 0.0 or len(tableau.b) == 1:
        return x + d * dt
    c = tableau.c(sigma, sigma_to)
    ds = [d]
    for j in range(1, len(tableau.b)):
        row = tableau.a[j] if tableau.a[j] is not None else (c[j],)
        x_j = x + _combine(row, ds) * dt
        sigma_j = sigma + c[j] * dt
        ds.append(to_d(x_j, sigma_j, run.denoise_at(x_j, sigma_j)))
    return x + _combine(tableau.b, ds) * dt


def _combine(weights, ds):
    """sum_k w_k d_k without a pass over the latent for zero or unit weights
    (Python's sum would start from 0 and copy; measured 6-25% per step on
    SD-sized latents for heun and dpm_2)."""
    acc = None
    for w, dk in zip(weights, ds):
        if w:
            term = dk if w == 1.0 else dk * w
            acc = term if acc is None else acc + term
    return acc


def sample_rk(run, tableau):
    def step(run, i, x, denoised, sigma, sigma_down):
        return rk_step(run, x, denoised, sigma, sigma_down, tableau)
    return run_with_split(run, step)
