"""The regularized incomplete beta function and its inverse, in float64 numpy.

Written here because the engine may not depend on scipy. The function is the
continued fraction of DLMF 8.17.22 evaluated with the modified Lentz method;
the inverse is Newton's method kept inside a shrinking bisection bracket, so it
cannot diverge and ends at full float64 precision.
"""
import math

import numpy as np

_TINY = 1e-300
_EPS = 2.220446049250313e-16
# Below a few ulps the Lentz factors jitter around 1 instead of reaching it.
_CF_TOL = 4 * _EPS
_MAX_TERMS = 2000
_MAX_SOLVE = 200


def _log_beta(a, b):
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _fraction(x, a, b):
    """1 / (1 + d1 / (1 + d2 / (1 + ...))) of DLMF 8.17.22, elementwise in x.

    It converges fast for x < (a + 1) / (a + b + 2); callers use the symmetry
    I_x(a, b) = 1 - I_{1-x}(b, a) for the rest.
    """
    f = np.ones_like(x)
    c = np.ones_like(x)
    d = np.zeros_like(x)
    for j in range(1, _MAX_TERMS + 1):
        m = j // 2
        if j % 2:
            coef = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            coef = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + coef * d
        d = np.where(np.abs(d) < _TINY, _TINY, d)
        c = 1.0 + coef / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        d = 1.0 / d
        delta = c * d
        f = f * delta
        if np.all(np.abs(delta - 1.0) <= _CF_TOL):
            break
    return 1.0 / f


def _front(x, y, a, b):
    # x^a y^b / (a B(a, b)) in logs: the powers under- or overflow on their own.
    with np.errstate(divide="ignore"):
        return np.exp(a * np.log(x) + b * np.log(y) - math.log(a) - _log_beta(a, b))


def betainc_pair(x, a, b, y=None):
    """(I_x(a, b), 1 - I_x(a, b)), each accurate even where it is tiny.

    `y` is 1 - x when the caller knows it more precisely than 1 - x rounds to.
    """
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = 1.0 - x if y is None else np.atleast_1d(np.asarray(y, dtype=np.float64))
    lower = np.zeros_like(x)
    upper = np.zeros_like(x)
    inner = (x > 0) & (y > 0)
    # Each branch only on its own points: the fraction converges slowly (or
    # not at all) on the other side of the switch point.
    direct = inner & (x < (a + 1.0) / (a + b + 2.0))
    mirror = inner & ~direct
    if np.any(direct):
        part = _front(x[direct], y[direct], a, b) * _fraction(x[direct], a, b)
        lower[direct], upper[direct] = part, 1.0 - part
    if np.any(mirror):
        part = _front(y[mirror], x[mirror], b, a) * _fraction(y[mirror], b, a)
        upper[mirror], lower[mirror] = part, 1.0 - part
    lower = np.where(x <= 0, 0.0, np.where(y <= 0, 1.0, lower))
    upper = np.where(x <= 0, 1.0, np.where(y <= 0, 0.0, upper))
    return lower, upper


def betainc(x, a, b):
    """Regularized incomplete beta I_x(a, b) for x in [0, 1], a, b > 0."""
    shape = np.shape(x)
    return betainc_pair(x, a, b)[0].reshape(shape)


def _solve_half(level, level_c, a, b):
    """x in (0, 1/2] with I_x(a, b) = level, for levels whose root is known to
    lie there; level_c is 1 - level.

    Newton runs on log I against log x (on log(1 - I) when the level is near
    1, so the residual keeps its digits): near 0, I_x ~ x^a / (a B) is a power
    law, a straight line in those coordinates, so the steps are nearly exact
    however small the root. A step that leaves the bracket is replaced by a
    bisection, which keeps every iteration inside it.
    """
    log_b = _log_beta(a, b)
    upper_tail = level > 0.5
    target = np.where(upper_tail, level_c, level)
    with np.errstate(divide="ignore"):
        x = np.exp((np.log(level) + math.log(a) + log_b) / a)
    x = np.clip(np.nan_to_num(x, nan=0.25), 1e-300, 0.5)
    lo = np.zeros_like(level)
    hi = np.full_like(level, 0.5)
    for _ in range(_MAX_SOLVE):
        lower, upper = betainc_pair(x, a, b)
        value = np.where(upper_tail, upper, lower)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            gap = np.log(value) - np.log(target)
            rising = np.where(upper_tail, -gap, gap)
            density = np.exp((a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x) - log_b)
            step = x * np.exp(-rising * value / (x * density))
        lo = np.where(rising < 0, x, lo)
        hi = np.where(rising > 0, x, hi)
        halve = np.where(lo > 0, np.sqrt(lo * hi), 0.25 * hi)
        bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(bad, halve, step)
        new = np.where(rising == 0, x, new)
        done = np.abs(new - x) <= 4 * _EPS * x
        x = new
        if np.all(done):
            break
    return x


def beta_quantiles(q, q_complement, a, b):
    """(x, 1 - x) with I_x(a, b) = q, both to float64 precision.

    Each root is solved in whichever of x and 1 - x is at most 1/2 (where
    float64 resolves it finely); the side is read off I_{1/2}(a, b).
    """
    q = np.asarray(q, dtype=np.float64)
    qc = np.asarray(q_complement, dtype=np.float64)
    half, half_c = betainc_pair(np.array([0.5]), a, b)
    left = np.where(q <= 0.5, q <= half[0], qc >= half_c[0])
    x = np.empty_like(q)
    y = np.empty_like(q)
    edge0, edge1 = q <= 0, qc <= 0
    inner = ~edge0 & ~edge1
    sel = inner & left
    if np.any(sel):
        x[sel] = _solve_half(q[sel], qc[sel], a, b)
        y[sel] = 1.0 - x[sel]
    sel = inner & ~left
    if np.any(sel):
        y[sel] = _solve_half(qc[sel], q[sel], b, a)
        x[sel] = 1.0 - y[sel]
    x[edge0], y[edge0] = 0.0, 1.0
    x[edge1], y[edge1] = 1.0, 0.0
    return x, y


def betaincinv(q, a, b, q_complement=None):
    """x in [0, 1] with I_x(a, b) = q (the Beta(a, b) quantile function).

    `q_complement` is 1 - q when the caller has it exactly (a level near 1
    is known better from its distance to 1 than from its own value).
    """
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"beta shape parameters must be finite and > 0, got a={a}, b={b}")
    q = np.atleast_1d(np.asarray(q, dtype=np.float64))
    qc = 1.0 - q if q_complement is None else np.atleast_1d(
        np.asarray(q_complement, dtype=np.float64))
    if not np.all(np.isfinite(q) & (q >= 0) & (q <= 1)):
        raise ValueError("beta quantile levels must lie in [0, 1]")
    return beta_quantiles(q, qc, a, b)[0]
