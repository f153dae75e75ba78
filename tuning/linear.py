"""Every deterministic fixed-grid sampler is linear in its start and the
model's outputs, and what that lets the tuner do without model calls.

On a given grid a deterministic sampler computes only sums of the start x_0
and of the model's outputs D_0, D_1, ... with scalar weights that depend on
the sigmas alone (Euler, Heun, the Adams and exponential Adams methods,
UniPC's corrector, DEIS's polynomial: all of them), so its result is

    x_N = c x_0 + sum_k W_k D_k.

`linear_form` reads c and W off a run whose latent is a coefficient vector
(entry 0 counts x_0, entry 1 + k counts D_k) and whose model returns the unit
vector of its own call: the sampler's arithmetic, applied to those vectors,
writes its weights. It also records where each call was made. A sampler
with one call per grid point at the grid's sigmas is then exactly a
`TunedMethod` table (tuning/sampler.py), the table the tuner starts from.

The reference trajectory (a fine solve) is kept at its grid points; the
teacher's state and prediction at other sigmas come from the exponential
integrator's exact formula over the cubic through the neighbouring
predictions in log sigma (`dense_state`, `dense_denoised`):

    dx/d log(sigma) = x - D   =>   x(s) = (s / s_k) x_k + int_(log s)^(log s_k) e^(log s - v) D(v) dv,

the probability-flow ODE of both processes written in sigma (samplers/
methods.py), so the same code serves VE and flow.
"""
import math

import numpy as np
import torch

__all__ = ["linear_form", "dense_weights", "interp_weights"]


class _Tracer:
    """A model that returns, on its k-th call, the unit vector of D_k."""

    def __init__(self, width):
        self.width = width
        self.sigmas = []
        self.states = []

    def __call__(self, x, sigma, **extra_args):
        k = len(self.sigmas)
        self.sigmas.append(float(torch.as_tensor(sigma).reshape(-1)[0]))
        self.states.append(x[0].tolist())
        out = torch.zeros_like(x)
        if 1 + k < self.width:
            out[..., 1 + k] = 1.0
        return out


def linear_form(fn, sigmas, process, max_calls):
    """The linear form of sampler function `fn` (a registry row's `fn`) on
    `sigmas` at eta = 0 -> (states, call_sigmas, out): D_k is the model's
    output at its k-th call, made at call_sigmas[k] on the latent
    states[k][0] x_0 + sum_j states[k][1 + j] D_j, and the result is
    out[0] x_0 + sum_k out[1 + k] D_k (lists of floats, len n_calls + 1).
    None when the run makes more than `max_calls` calls or fails on these
    sigmas."""
    width = max_calls + 2          # one spare entry catches calls beyond max_calls
    x = torch.zeros(1, width, dtype=torch.float64)
    x[0, 0] = 1.0
    tracer = _Tracer(width)
    try:
        out = fn(tracer, x, sigmas, process=process, eta=0.0, disable=True)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    n = len(tracer.sigmas)
    if n > max_calls or not bool(torch.isfinite(out).all()):
        return None
    states = [st[:1 + n] for st in tracer.states]
    return states, tracer.sigmas, out[0].tolist()[:1 + n]


# ---------------------------------------------------------------- dense output

_GL_X, _GL_W = np.polynomial.legendre.leggauss(8)


def _lagrange(nodes, v):
    """Values of the Lagrange basis polynomials through `nodes` at v."""
    out = []
    for j, nj in enumerate(nodes):
        b = 1.0
        for k, nk in enumerate(nodes):
            if k != j:
                b *= (v - nk) / (nj - nk)
        out.append(b)
    return out


def _stencil(grid_u, k, width=4):
    """Indices of `width` grid points around the interval [k, k + 1]."""
    n = len(grid_u)
    lo = max(0, min(k - (width // 2 - 1), n - width))
    return list(range(lo, min(n, lo + width)))


def _interval(grid_u, u):
    """k with grid_u[k] >= u >= grid_u[k + 1] (grid_u decreasing)."""
    n = len(grid_u)
    for k in range(n - 1):
        if grid_u[k + 1] <= u:
            return k
    return n - 2


def dense_weights(grid, s, k=None):
    """For the decreasing reference grid `grid` (sigmas > 0) and a sigma s in
    its range: (k, a, {m: w_m}) with x(s) = a x_k + sum_m w_m D_m, the cubic
    through four neighbouring predictions in log sigma integrated exactly
    (8-point Gauss-Legendre; the integrand is a cubic times an exponential
    over one fine step). k: the interval to step from (default: the one
    holding s)."""
    u_grid = [math.log(g) for g in grid]
    u = math.log(s)
    if k is None:
        k = _interval(u_grid, u)
    if u >= u_grid[k]:
        return k, 1.0, {}
    idx = _stencil(u_grid, k)
    nodes = [u_grid[m] for m in idx]
    lo, hi = u, u_grid[k]
    w = [0.0] * len(idx)
    for xg, wg in zip(_GL_X, _GL_W):
        v = lo + (hi - lo) * (xg + 1.0) / 2.0
        weight = wg * (hi - lo) / 2.0 * math.exp(u - v)
        for j, b in enumerate(_lagrange(nodes, v)):
            w[j] += weight * b
    return k, math.exp(u - u_grid[k]), dict(zip(idx, w))


def interp_weights(grid, s):
    """{m: w_m} with D(s) ~ sum_m w_m D_m: the cubic through four
    neighbouring predictions in log sigma."""
    u_grid = [math.log(g) for g in grid]
    u = math.log(s)
    k = _interval(u_grid, u)
    idx = _stencil(u_grid, k)
    return dict(zip(idx, _lagrange([u_grid[m] for m in idx], u)))
