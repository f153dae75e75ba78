"""Schedules read off the model's discrete sigma table (timestep -> sigma).

Every function here takes the step count and a `Context` and returns the
`steps` positive sigmas, largest first, in float64; the registry appends the
final 0 and checks the result.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .special import beta_quantiles

SD1_TIMESTEPS = 1000
SD1_BETA_START = 0.00085
SD1_BETA_END = 0.012


@dataclass(frozen=True)
class Context:
    """What a schedule may read besides its own parameters."""
    sigma_min: float
    sigma_max: float
    table: np.ndarray     # increasing float64 sigmas, one per training timestep


@lru_cache(maxsize=1)
def _sd1_table64():
    # "scaled linear" betas: linear in sqrt(beta), as SD 1.x and SDXL train.
    betas = np.linspace(SD1_BETA_START ** 0.5, SD1_BETA_END ** 0.5, SD1_TIMESTEPS,
                        dtype=np.float64) ** 2
    alphas_cumprod = np.cumprod(1.0 - betas)
    table = np.sqrt((1.0 - alphas_cumprod) / alphas_cumprod)
    table.setflags(write=False)
    return table


def sd1_table64():
    """The SD 1.x sigma table in full float64 precision (read-only)."""
    return _sd1_table64()


@lru_cache(maxsize=1)
def _sd1_table_as_host():
    # The host keeps model_sampling.sigmas in float32; rounding the same way
    # makes the no-model defaults equal what the host reads off an SD1 model.
    table = _sd1_table64().astype(np.float32).astype(np.float64)
    table.setflags(write=False)
    return table


def default_table():
    return _sd1_table_as_host()


def sd1_sigmas():
    """The Stable Diffusion 1.x discrete sigma table: 1000 increasing float32
    values, as the host's ModelSamplingDiscrete stores them."""
    return torch.from_numpy(_sd1_table_as_host().copy()).to(torch.float32)


def nearest_index(table, sigma):
    """Index of the table entry nearest `sigma` in log space (first on ties)."""
    return int(np.argmin(np.abs(np.log(table) - np.log(sigma))))


def sigma_at(table, t):
    """Sigma at fractional timesteps `t`: log-linear between table entries."""
    log_table = np.log(table)
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, len(table) - 1)
    low = np.floor(t).astype(np.int64)
    high = np.minimum(low + 1, len(table) - 1)
    w = t - low
    return np.exp((1.0 - w) * log_table[low] + w * log_table[high])


def _timestep_range(ctx):
    return (nearest_index(ctx.table, ctx.sigma_max),
            nearest_index(ctx.table, ctx.sigma_min))


def normal(steps, ctx):
    """Evenly spaced timesteps from the entry nearest sigma_max to the one
    nearest sigma_min, both included (the host's "normal")."""
    start, end = _timestep_range(ctx)
    return sigma_at(ctx.table, np.linspace(start, end, steps))


def sgm_uniform(steps, ctx):
    """As `normal` with steps + 1 points of which the last is dropped, so the
    smallest sigma is never sampled (the SGM / SDXL-turbo convention)."""
    start, end = _timestep_range(ctx)
    return sigma_at(ctx.table, np.linspace(start, end, steps + 1)[:-1])


def simple(steps, ctx):
    """Every (len / steps)-th table entry counted down from the top (the host's
    "simple"); sigma_min and sigma_max do not apply."""
    n = len(ctx.table)
    if steps > n:
        raise ValueError(f"simple: steps must be at most {n} (the table's length; more "
                         f"would repeat entries), got {steps}")
    stride = n / steps  # Python float on purpose: the host truncates k * stride
    index = [n - 1 - int(k * stride) for k in range(steps)]
    return ctx.table[index]


def ddim_uniform(steps, ctx):
    """DDIM's "leading" spacing with offset 1, as diffusers configures SD:
    timesteps 1, 1 + c, 1 + 2c, ... with c = len // steps, largest first.

    The host's loop runs on while the timestep fits the table, which gives
    more than `steps` sigmas whenever len / steps is not a whole number; this
    one always returns exactly `steps`. sigma_min and sigma_max do not apply.
    """
    n = len(ctx.table)
    if steps > n - 1:
        raise ValueError(f"ddim_uniform: steps must be at most {n - 1} for a table of "
                         f"{n} entries (timesteps start at 1), got {steps}")
    stride = max(n // steps, 1)
    index = 1 + stride * np.arange(steps)
    return ctx.table[index[::-1]]


def beta_schedule(steps, ctx, alpha, beta):
    """Timesteps at the quantiles 1 - k/steps of Beta(alpha, beta) (Lee et al.
    2024, arXiv 2407.12173), spread over the timesteps nearest sigma_max and
    sigma_min.

    The host rounds these timesteps to integers and drops repeats, which can
    return fewer than `steps` sigmas; here they stay fractional and the table
    is interpolated, so there are always `steps` distinct sigmas.
    """
    start, end = _timestep_range(ctx)
    k = np.arange(steps, dtype=np.float64)
    x, _ = beta_quantiles(1.0 - k / steps, k / steps, alpha, beta)
    return sigma_at(ctx.table, end + x * (start - end))
