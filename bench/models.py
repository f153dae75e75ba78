"""Exact denoisers for tests, benchmarks and the report.

Every model here knows its own optimal denoiser D(x, sigma) = E[x0 | x] in
closed form, so a sampler's error can be measured against the true
probability-flow ODE solution instead of against another sampler.

Processes use ComfyUI's sigma conventions:

* ``"ve"``:   x = x0 + sigma * n,               sigma in (0, inf)
* ``"flow"``: x = (1 - sigma) * x0 + sigma * n,  sigma in (0, 1]

Writing a = alpha(sigma) (1 for VE, 1 - sigma for flow), both share the
probability-flow ODE

    dx/dsigma = (x - D(x, sigma)) / sigma.

Derivation for flow: x = a x0 + sigma n gives dx/dsigma = -x0 + n along a
fixed (x0, n) pair; the PF-ODE replaces both by their conditional means,
E[n | x] = (x - a D) / sigma, so dx/dsigma = (x - a D) / sigma - D
= (x - D) / sigma since a + sigma = 1. For VE it is E[n | x] = (x - D) / sigma
directly. `tests/test_bench_models.py` checks this numerically.

A model is called as ``model(x, sigma_batch, **extra_args)`` with sigma_batch
of shape [batch], and returns a tensor of x's dtype.
"""
import math

import numpy as np
import torch

__all__ = [
    "PROCESSES", "alpha", "add_noise", "GaussianData", "EmpiricalData",
    "digits", "CallCounter", "rk4_log_sigma",
]

PROCESSES = ("ve", "flow")


def _check_process(process):
    if process not in PROCESSES:
        raise ValueError(f"process must be one of {PROCESSES}, got {process!r}")
    return process


def alpha(sigma, process):
    """Signal scale of the process at sigma (works on floats and tensors)."""
    _check_process(process)
    if process == "ve":
        return torch.ones_like(sigma) if torch.is_tensor(sigma) else 1.0
    return 1.0 - sigma


def _sigma_like(sigma, x):
    """sigma (float, 0-d or [batch] tensor) as float64, shaped to broadcast
    against x over its batch dimension."""
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    if s.ndim == 0:
        return s
    if s.ndim != 1 or s.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"sigma must be a scalar or have shape [batch] = [{x.shape[0]}], "
            f"got shape {tuple(s.shape)}")
    return s.reshape((-1,) + (1,) * (x.ndim - 1))


def add_noise(x0, noise, sigma, process):
    """The forward process: x at noise level sigma from clean x0 and unit noise."""
    s = _sigma_like(sigma, x0)
    a = alpha(s, process)
    out = a * x0.to(torch.float64) + s * noise.to(torch.float64)
    return out.to(x0.dtype)


class GaussianData:
    """Independent per-element Gaussian data x0 ~ N(mean, std^2).

    mean and std are scalars or tensors broadcastable to the sample shape
    (e.g. shape [C, 1, 1] for per-channel statistics of [B, C, H, W] samples).
    """

    def __init__(self, mean=0.0, std=1.0, process="ve"):
        self.process = _check_process(process)
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.std = torch.as_tensor(std, dtype=torch.float64)
        if bool((self.std <= 0).any()):
            raise ValueError("std must be positive")

    def _stats(self, x):
        return self.mean.to(x.device), self.std.to(x.device)

    def denoiser(self, x, sigma, **extra_args):
        """E[x0 | x] at noise level sigma (the Wiener filter)."""
        xd = x.to(torch.float64)
        s = _sigma_like(sigma, x)
        a = alpha(s, self.process)
        m, v = self._stats(x)
        v = v * v
        # Written with a in the numerator so flow at sigma = 1 (a = 0) is
        # exactly the prior mean rather than 0/0.
        out = m + a * v / (a * a * v + s * s) * (xd - a * m)
        return out.to(x.dtype)

    __call__ = denoiser

    def marginal_std(self, sigma):
        """Standard deviation of x at noise level sigma."""
        s = torch.as_tensor(sigma, dtype=torch.float64)
        a = alpha(s, self.process)
        return torch.sqrt(a * a * self.std ** 2 + s * s)

    def ode_solution(self, x, sigma_from, sigma_to):
        """Exact probability-flow ODE transport of x from sigma_from to sigma_to.

        The PF-ODE of a 1-D Gaussian marginal maps quantiles to quantiles, so
        z = (x - a mean) / sqrt(a^2 std^2 + sigma^2) is constant along every
        trajectory; the data are independent per element, so this holds
        elementwise. sigma_to = 0 (a = 1) is allowed.
        """
        xd = x.to(torch.float64)
        s0 = _sigma_like(sigma_from, x)
        s1 = _sigma_like(sigma_to, x)
        a0, a1 = alpha(s0, self.process), alpha(s1, self.process)
        m, sd = self._stats(x)
        v = sd * sd
        z = (xd - a0 * m) / torch.sqrt(a0 * a0 * v + s0 * s0)
        out = a1 * m + z * torch.sqrt(a1 * a1 * v + s1 * s1)
        return out.to(x.dtype)

    def sample(self, shape, generator=None, dtype=torch.float32, device="cpu"):
        """Clean data x0 of the given shape."""
        n = torch.randn(shape, generator=generator, dtype=torch.float64, device=device)
        m, sd = self.mean.to(device), self.std.to(device)
        return (m + sd * n).to(dtype)

    def noisy(self, shape, sigma, generator=None, dtype=torch.float32):
        """x drawn from the marginal at sigma (x0 and noise from one generator)."""
        x0 = self.sample(shape, generator, torch.float64)
        n = torch.randn(shape, generator=generator, dtype=torch.float64)
        return add_noise(x0, n, sigma, self.process).to(dtype)


class EmpiricalData:
    """The empirical distribution of a finite point set.

    Its optimal denoiser is the posterior mean over the points,
    D(x, sigma) = sum_i w_i y_i with w = softmax(-||x - a y_i||^2 / (2 sigma^2)),
    because x | y_i ~ N(a y_i, sigma^2 I) under either process.
    """

    def __init__(self, points, process="ve", bandwidth=0.0):
        """bandwidth > 0 blurs every point into N(y_i, bandwidth^2 I) (a
        kernel density estimate): the ODE then ends on a smooth density rather
        than exactly on a training image, which keeps errors continuous in
        the starting noise down to sigma = 0."""
        self.process = _check_process(process)
        if not (math.isfinite(bandwidth) and bandwidth >= 0):
            raise ValueError(f"bandwidth must be a finite number >= 0, got {bandwidth!r}")
        self.bandwidth = float(bandwidth)
        pts = torch.as_tensor(points)
        if pts.ndim < 2 or pts.shape[0] < 1:
            raise ValueError("points must have shape [N, ...] with N >= 1")
        self.points = pts.to(torch.float64)
        self.flat = self.points.reshape(pts.shape[0], -1)
        self.sq_norms = (self.flat * self.flat).sum(dim=1)
        self.sample_shape = tuple(pts.shape[1:])

    def _weights(self, x, sigma):
        """Posterior weights [B, N] in float64."""
        b = x.shape[0]
        xf = x.to(torch.float64).reshape(b, -1)
        if xf.shape[1] != self.flat.shape[1]:
            raise ValueError(
                f"x has {xf.shape[1]} elements per sample, the data {self.flat.shape[1]}")
        s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1)
        s = s.expand(b) if s.numel() == 1 else s
        a = alpha(s, self.process)
        # x | y_i ~ N(a y_i, (a^2 tau^2 + sigma^2) I): the blur adds to the noise.
        var = s * s + (a * self.bandwidth) ** 2
        # ||x - a y||^2 expanded; in float64 the cancellation error (~1e-16
        # |x|^2) stays far below sigma^2 for every sigma the samplers visit.
        cross = xf @ self.flat.T
        d2 = ((xf * xf).sum(1, keepdim=True) - 2 * a[:, None] * cross
              + (a * a)[:, None] * self.sq_norms[None, :]).clamp_min(0.0)
        zero = var == 0
        safe = torch.where(zero, torch.ones_like(var), var)
        logits = -d2 / (2 * safe[:, None])
        w = torch.softmax(logits, dim=1)
        if bool(zero.any()):
            # The sigma -> 0 limit: all mass on the nearest point.
            hard = torch.nn.functional.one_hot(d2.argmin(1), self.flat.shape[0]).to(w)
            w = torch.where(zero[:, None], hard, w)
        return w

    def denoiser(self, x, sigma, **extra_args):
        w = self._weights(x, sigma)
        out = w @ self.flat
        if self.bandwidth > 0:
            # E[x0 | x, i] = y_i + a tau^2 / (a^2 tau^2 + sigma^2) (x - a y_i);
            # summed over the posterior weights.
            b = x.shape[0]
            s = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1).expand(b)
            a = alpha(s, self.process)
            tau2 = self.bandwidth ** 2
            gain = (a * tau2 / (a * a * tau2 + s * s))[:, None]
            xf = x.to(torch.float64).reshape(b, -1)
            out = out + gain * (xf - a[:, None] * out)
        return out.reshape(x.shape).to(x.dtype)

    __call__ = denoiser

    def sample(self, n, generator=None, dtype=torch.float32):
        idx = torch.randint(0, self.points.shape[0], (n,), generator=generator)
        x0 = self.points[idx]
        if self.bandwidth > 0:
            x0 = x0 + self.bandwidth * torch.randn(x0.shape, generator=generator,
                                                   dtype=torch.float64)
        return x0.to(dtype)

    def noisy(self, n, sigma, generator=None, dtype=torch.float32):
        """n samples from the marginal at sigma."""
        x0 = self.sample(n, generator, torch.float64)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        return add_noise(x0, noise, sigma, self.process).to(dtype)

    def reference_solution(self, x, sigma_start, sigma_end=0.0, steps=2048,
                           sigma_floor=1e-4):
        """High-accuracy PF-ODE solution from sigma_start to sigma_end.

        Classic RK4 in t = log(sigma), where the ODE reads dx/dt = x - D(x, e^t)
        (smooth, no 1/sigma factor), float64 throughout. sigma_start = 1 is
        fine for flow: the right-hand side is regular there (D = data mean).
        sigma_end = 0 is reached by integrating to sigma_floor and taking
        D(x, sigma_floor): once the posterior has collapsed onto one point y
        (it has, for any realistic gap between points, long before 1e-4),
        x - y shrinks in proportion to sigma, so the limit is y = D.
        """
        if sigma_end < 0 or not sigma_end < sigma_start:
            raise ValueError("need 0 <= sigma_end < sigma_start")
        stop = sigma_end if sigma_end > 0 else min(sigma_floor, sigma_start / 2)

        def f(x_, t):
            return x_ - self.denoiser(x_, math.exp(t))

        xd = rk4_log_sigma(f, x.to(torch.float64), sigma_start, stop, steps)
        if sigma_end == 0:
            xd = self.denoiser(xd, stop)
        return xd.to(x.dtype)


def rk4_log_sigma(f, x, sigma_start, sigma_end, steps):
    """Classic RK4 for dx/dt = f(x, t) on a uniform grid in t = log(sigma)."""
    t0, t1 = math.log(sigma_start), math.log(sigma_end)
    h = (t1 - t0) / steps
    for k in range(steps):
        t = t0 + k * h
        k1 = f(x, t)
        k2 = f(x + 0.5 * h * k1, t + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, t + 0.5 * h)
        k4 = f(x + h * k3, t + h)
        x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def digits(n=None, dtype=torch.float32):
    """scikit-learn's bundled 8x8 digits (no download), scaled from 0..16 to
    [-1, 1], shape [N, 1, 8, 8]. n takes the first n images."""
    from sklearn.datasets import load_digits

    data = load_digits().data.astype(np.float64)  # [1797, 64]
    if n is not None:
        data = data[:n]
    pts = torch.from_numpy(data / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    return pts.to(dtype)


class CallCounter:
    """Wraps a model and counts its calls; `.sigmas` keeps each call's first
    sigma (as a float) so tests can see where a sampler evaluated."""

    def __init__(self, model):
        self.model = model
        self.calls = 0
        self.sigmas = []

    def __call__(self, x, sigma, **extra_args):
        self.calls += 1
        self.sigmas.append(float(torch.as_tensor(sigma).reshape(-1)[0]))
        return self.model(x, sigma, **extra_args)

    def reset(self):
        self.calls = 0
        self.sigmas = []
