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


def _arctan_stage(points, slope, pivot, start, end):
    """`points` values from `start` down to `end` along the falling arctan
    step g(x) = 1/2 + atan(-slope (x - pivot)) / pi at x = 0 .. points - 1,
    rescaled so that x = 0 gives `start` and the last x gives `end`."""
    x = np.arange(points, dtype=np.float64)
    g = 0.5 + np.arctan(-slope * (x - pivot)) / math.pi
    return (g - g[-1]) / (g[0] - g[-1]) * (start - end) + end


def bong_tangent(steps, ctx, middle, pivot_1, pivot_2, slope_1, slope_2):
    """RES4LYF's "bong_tangent" (ClownsharkBatwing): two arctan steps joined
    at `middle`, in units of sigma_max (on flow models, sigma_max = 1, this
    is RES4LYF's schedule; its start 1 and end 0 become sigma_max and 0).

    With M = steps + 2 points, the stages split at m = int(M (pivot_1 +
    pivot_2) / 2): stage 1 has m points from 1 to `middle` with its pivot at
    int(M pivot_1), stage 2 the other M - m from `middle` to 0 with its pivot
    at int(M pivot_2) - m; both slopes are divided by M / 40, so the shape
    does not depend on the step count. Stage 1's last point (= middle) is
    left out, which leaves steps + 1 sigmas ending in 0. sigma_min does not
    apply.
    """
    m_points = steps + 2
    split = int(m_points * (pivot_1 + pivot_2) / 2)
    first, second = split, m_points - split
    if first < 2 or second < 2:
        raise ValueError(f"bong_tangent: with pivot_1={pivot_1:g} and pivot_2={pivot_2:g}, "
                         f"steps={steps} leaves a stage of {min(first, second)} point(s); "
                         f"each needs 2 (use more steps or pivots nearer 0.5)")
    scale = m_points / 40.0
    stage_1 = _arctan_stage(first, slope_1 / scale, int(m_points * pivot_1), 1.0, middle)
    stage_2 = _arctan_stage(second, slope_2 / scale, int(m_points * pivot_2) - first,
                            middle, 0.0)
    values = np.concatenate([stage_1[:-1], stage_2]) * ctx.sigma_max
    values[-1] = 0.0  # exactly, whatever the rounding of the rescale
    return values


# LTX-Video's shift is linear in the token count through these two points.
LTXV_TOKENS = (1024, 4096)


def ltxv(steps, ctx, max_shift, base_shift, stretch, terminal, tokens):
    """LTX-Video's schedule (the host's LTXVScheduler node; Lightricks):
    sigma = 1 - k / steps, k = 0 .. steps, put through Flux's exponential
    shift e^mu / (e^mu + 1/sigma - 1), where mu is linear in the latent's
    token count: base_shift at 1024 tokens, max_shift at 4096. With stretch,
    1 - sigma is rescaled so the last sigma before 0 is `terminal` (the first
    stays 1). Its range is its own (1 down to 0): sigma_min and sigma_max do
    not apply.

    One step has no range to stretch: [1, 0] (the host divides 0 by 0 there).
    """
    lo, hi = LTXV_TOKENS
    mu = base_shift + (max_shift - base_shift) / (hi - lo) * (tokens - lo)
    s = 1.0 - np.arange(steps, dtype=np.float64) / steps
    # 1 - shifted sigma, computed without the cancellation of 1 - (~1):
    # 1 - e/(e + u) = u / (e + u) with u = 1/s - 1 (mu may be large).
    u = 1.0 / s - 1.0
    e = math.exp(min(mu, 700.0))
    one_minus = u / (e + u)
    if stretch == "true" and steps > 1:
        one_minus = one_minus * ((1.0 - terminal) / one_minus[-1])
    return append_zero(1.0 - one_minus)
