"""Closed-form schedules: sigma as a formula of the step index.

Every function takes the step count and a `Context` and returns the whole
schedule in float64, largest sigma first, ending in 0; the registry checks
it and rounds it to float32.
"""
import math

import numpy as np

from .discrete import append_zero


def _ramp(steps):
    # 0 .. 1 inclusive; a single step sits at 0 so it lands on sigma_max.
    if steps == 1:
        return np.zeros(1)
    return np.arange(steps, dtype=np.float64) / (steps - 1)


def karras(steps, ctx, rho):
    """Karras et al. 2022 (EDM), eq. 5: uniform steps in sigma^(1/rho)."""
    top = ctx.sigma_max ** (1.0 / rho)
    bottom = ctx.sigma_min ** (1.0 / rho)
    return append_zero((top + _ramp(steps) * (bottom - top)) ** rho)


def exponential(steps, ctx):
    """Uniform steps in log sigma."""
    return append_zero(np.exp(np.linspace(math.log(ctx.sigma_max), math.log(ctx.sigma_min),
                                          steps)))


def polyexponential(steps, ctx, rho):
    """log sigma runs from log sigma_max to log sigma_min along (1 - s)^rho;
    rho = 1 is `exponential`, larger rho spends more steps at low noise."""
    ramp = (1.0 - _ramp(steps)) ** rho
    log_min, log_max = math.log(ctx.sigma_min), math.log(ctx.sigma_max)
    return append_zero(np.exp(ramp * (log_max - log_min) + log_min))


def kl_optimal(steps, ctx):
    """Uniform steps in atan(sigma) (arXiv 2404.14507, "KL-optimal" under
    their assumptions)."""
    t = _ramp(steps)
    return append_zero(np.tan(t * math.atan(ctx.sigma_min) +
                              (1.0 - t) * math.atan(ctx.sigma_max)))


def _laplace_time(log_sigma, mu, beta):
    """(t, 1 - t) where the Laplace schedule has this log sigma.

    Both are returned because the schedule's ends sit within e^(-|u|)/2 of 0
    or 1, and the side near 1 must be carried as its distance to 1.
    """
    u = (log_sigma - mu) / beta
    if u >= 0:
        t = 0.5 * math.exp(-u)
        return t, 1.0 - t
    c = 0.5 * math.exp(u)
    return 1.0 - c, c


def laplace(steps, ctx, mu, beta):
    """Hang et al. 2024 ("Improved Noise Schedule for Diffusion Training"):
    log sigma(t) = mu - beta sign(1/2 - t) log(1 - 2|t - 1/2|) on t in (0, 1).

    The host samples t over all of [0, 1] and clamps sigma into
    [sigma_min, sigma_max], which repeats the end values; here t only covers
    the interval that the formula maps onto [sigma_min, sigma_max] (its
    inverse is closed form), so every step is distinct and the ends are exact.
    """
    t_a, c_a = _laplace_time(math.log(ctx.sigma_max), mu, beta)
    t_b, c_b = _laplace_time(math.log(ctx.sigma_min), mu, beta)
    f = _ramp(steps)
    g = (steps - 1 - np.arange(steps)) / max(steps - 1, 1)  # 1 - f, exactly
    t = g * t_a + f * t_b
    c = g * c_a + f * c_b
    with np.errstate(divide="ignore"):
        log_sigma = np.where(t < 0.5, mu - beta * np.log(2.0 * t), mu + beta * np.log(2.0 * c))
    sigmas = np.exp(log_sigma)
    sigmas[0] = ctx.sigma_max
    if steps > 1:
        sigmas[-1] = ctx.sigma_min
    return append_zero(sigmas)


def vp(steps, ctx, beta_d, beta_min, eps_s):
    """Song et al. 2021, the VP SDE's noise level on t from 1 down to eps_s:
    sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1). Its range comes
    from beta_d, beta_min and eps_s; sigma_min and sigma_max do not apply."""
    t = np.linspace(1.0, eps_s, steps)
    # expm1: near t = eps_s the exponent is ~1e-4, where exp(x) - 1 cancels.
    return append_zero(np.sqrt(np.expm1(beta_d * t ** 2 / 2.0 + beta_min * t)))


def linear_quadratic(steps, ctx, threshold_noise, linear_steps):
    """Mochi's schedule (genmo, as the host ships it): sigma = sigma_max (1 - s)
    where s rises linearly from 0 to threshold_noise over the first
    linear_steps steps, then along a quadratic that continues with the same
    value and slope and reaches 1 at step `steps` (the final 0).

    With L linear steps of N, the quadratic in j = i - L is
        s = thr + (thr / L) j + A j^2,   A = (L - thr N) / (L (N - L)^2),
    A fixed by s(N) = 1. It keeps rising up to step N only when
    thr <= 2 L / (N + L); past that sigma would dip below 0 and come back, so
    those inputs are refused. sigma_min does not apply.
    """
    n = steps
    if n == 1:
        return np.array([ctx.sigma_max, 0.0])
    lin = n // 2 if linear_steps is None else linear_steps
    if lin > n:
        raise ValueError(f"linear_quadratic: linear_steps must be an integer in [0, steps] "
                         f"= [0, {n}], got {lin}")
    thr = threshold_noise
    i = np.arange(n, dtype=np.float64)
    if lin == 0:
        # No linear phase to join: the quadratic starts at rest at sigma_max.
        s = (i / n) ** 2
    elif lin == n:
        s = i * thr / n
    else:
        limit = 2.0 * lin / (n + lin)
        if thr > limit:
            raise ValueError(
                f"linear_quadratic: threshold_noise must be at most 2*linear_steps/"
                f"(steps+linear_steps) = {limit:.6g} for linear_steps={lin} of {n} steps, "
                f"or sigma stops decreasing; got {thr!r}")
        quad = n - lin
        a = (lin - thr * n) / (lin * quad * quad)
        j = i - lin
        s = np.where(i < lin, i * thr / lin, thr + (thr / lin) * j + a * j * j)
    return append_zero(ctx.sigma_max * (1.0 - s))
