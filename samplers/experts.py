"""Two experts in one run: a high-noise and a low-noise model (Wan 2.2's
A14B pair, SDXL base + refiner style splits) chosen per model call by the
noise level, not by the step count. Wan 2.2 switches at timestep 875
(text-to-video) and 900 (image-to-video) of its 1000, i.e. where the
sampler's sigma crosses the boundary (Wan-Video/Wan2.2, generate.py:
`boundary = 0.875 * num_train_timesteps`, the high-noise expert for
t >= boundary).

Because the switch is a model wrapper, the sampler runs once: one loop, one
progress bar, one noise path, and a multistep sampler keeps its history
across the switch (two chained runs would restart it). No host import."""
import math

import torch


class ExpertSwitch:
    """A denoiser that calls `high` where sigma >= boundary and `low` below,
    with the caller's arguments unchanged: model(x, sigma_batch, ...) with
    sigma_batch a tensor of shape [batch] (one noise level per call, as every
    sampler here calls it) or a float. Other attributes (the host's
    inner_model, ...) are the high expert's. Raises ValueError for a
    boundary that is not a finite number > 0."""

    def __init__(self, high, low, boundary):
        b = float(boundary)
        if not (math.isfinite(b) and b > 0.0):
            raise ValueError(f"boundary must be a finite sigma > 0, got {boundary!r}")
        self.high, self.low, self.boundary = high, low, b
        self.calls = {"high": 0, "low": 0}

    def expert(self, sigma):
        """"high" or "low" for the noise level of a call."""
        s = float(sigma.reshape(-1)[0]) if torch.is_tensor(sigma) else float(sigma)
        return "high" if s >= self.boundary else "low"

    def __call__(self, x, sigma, *args, **kwargs):
        which = self.expert(sigma)
        self.calls[which] += 1
        return (self.high if which == "high" else self.low)(x, sigma, *args, **kwargs)

    def __getattr__(self, name):
        if name in ("high", "low", "boundary", "calls"):
            raise AttributeError(name)
        return getattr(self.high, name)


def switch_step(sigmas, boundary):
    """The index of the first step the low expert starts (the first grid
    sigma below the boundary); len(sigmas) - 1 when it never runs."""
    values = [float(s) for s in sigmas]
    for i, s in enumerate(values[:-1]):
        if s < boundary:
            return i
    return max(0, len(values) - 1)


UNITS = ("timestep", "sigma")


def boundary_sigma(value, unit, sigma_min, sigma_max, timestep_of=None):
    """The boundary as a sigma. unit "sigma": `value` itself; "timestep":
    the sigma whose model timestep (timestep_of(sigma), increasing, 0-1000
    for the models people use) is `value`, found by bisection in log sigma.
    Raises ValueError naming `boundary` when it lies outside the model's
    range [sigma_min, sigma_max] (or the timesteps of those ends)."""
    if unit not in UNITS:
        raise ValueError(f"boundary_unit must be one of {', '.join(UNITS)}, got {unit!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"boundary must be a number, got {value!r}") from None
    lo, hi = float(sigma_min), float(sigma_max)
    if unit == "sigma":
        if not (math.isfinite(v) and lo <= v <= hi):
            raise ValueError(f"boundary (sigma) must lie in the model's range [{lo:g}, {hi:g}], "
                             f"got {value!r}")
        return v
    if timestep_of is None:
        raise ValueError("boundary as a timestep needs the model's timestep map")
    t_lo, t_hi = float(timestep_of(lo)), float(timestep_of(hi))
    if not (math.isfinite(v) and min(t_lo, t_hi) <= v <= max(t_lo, t_hi)):
        raise ValueError(f"boundary (timestep) must lie in the model's range [{t_lo:.4g}, "
                         f"{t_hi:.4g}], got {value!r}")
    a, b = math.log(lo), math.log(hi)
    for _ in range(200):
        mid = 0.5 * (a + b)
        if float(timestep_of(math.exp(mid))) < v:
            a = mid
        else:
            b = mid
        if b - a < 1e-13:
            break
    return math.exp(0.5 * (a + b))
