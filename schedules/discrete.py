"""Schedules read off the model's sampling: its sigma table and its
sigma <-> timestep maps (see sampling.py), defined as the host defines the
schedules of the same names.

Every function takes the step count and a `Context` and returns the whole
schedule in float64, largest sigma first, with its final 0 where the
definition ends in one; the registry checks it and rounds it to float32.
"""
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import betaincinv

# The SD 1.x table lives on the ground floor (sigma_tables.py); its names stay
# importable from here, where bench/ and the tests read them.
from ..sigma_tables import (NEAR_ZERO, SD1_BETA_END, SD1_BETA_START,  # noqa: F401
                            SD1_TIMESTEPS, _sd1_table64, _sd1_table_as_host, default_table,
                            sd1_sigmas, sd1_table64)
from .sampling import DiscreteSampling, ModelSampling


@dataclass(frozen=True)
class Context:
    """What a schedule may read besides its own parameters: the sigma range
    (the model's, or the caller's), the model's table and its maps."""
    sigma_min: float
    sigma_max: float
    sampling: ModelSampling

    @property
    def table(self):
        """Increasing float64 sigmas, one per training timestep."""
        return self.sampling.sigmas


def append_zero(values):
    return np.append(np.asarray(values, dtype=np.float64), 0.0)


@lru_cache(maxsize=1)
def sd1_sampling():
    """The SD 1.x / SDXL discrete model as the host builds it: the table in
    float32 and its logs taken in float64, then rounded to float32."""
    return DiscreteSampling(_sd1_table_as_host(),
                            log_sigmas=np.log(_sd1_table64()).astype(np.float32))


def _timestep_range(ctx):
    ms = ctx.sampling
    return float(ms.timestep(ctx.sigma_max)), float(ms.timestep(ctx.sigma_min))


def _even(start, end, count):
    """`count` evenly spaced timesteps, both ends included, in float32 as the
    host spaces them (a discrete model's sigma(t) is then computed from the
    same float32 timesteps)."""
    return torch.linspace(start, end, count, dtype=torch.float32).double().numpy()


def normal(steps, ctx):
    """Evenly spaced timesteps from timestep(sigma_max) to timestep(sigma_min),
    both included, mapped back through the model's sigma(t) (the host's
    "normal"). On a discrete model the ends are the nearest table entries;
    on a flow model the timestep is unshifted, so the last sigma is
    sigma(timestep(sigma_min)), above sigma_min when shift > 1.

    Where that last sigma is within NEAR_ZERO of 0 it stands for the final 0:
    steps + 1 timesteps and no 0 appended, as the host does."""
    start, end = _timestep_range(ctx)
    ms = ctx.sampling
    if float(ms.sigma(end)) <= NEAR_ZERO:
        return ms.sigma(_even(start, end, steps + 1))
    return append_zero(ms.sigma(_even(start, end, steps)))


def sgm_uniform(steps, ctx):
    """As `normal` with steps + 1 timesteps of which the last is dropped, so
    the smallest sigma is never sampled (the SGM / SDXL-turbo convention)."""
    start, end = _timestep_range(ctx)
    return append_zero(ctx.sampling.sigma(_even(start, end, steps + 1)[:-1]))


def simple(steps, ctx):
    """Table entries counted down from the top in strides of len / steps,
    truncated to whole entries (the host's "simple"); sigma_min and
    sigma_max do not apply.

    With more steps than table entries the strides are below one entry and
    some entries repeat (zero-length steps); the registry keeps each once
    (see ScheduleSpec.repeats)."""
    n = len(ctx.table)
    index = (np.arange(steps) * (n / steps)).astype(np.int64)  # truncation, as int()
    return append_zero(ctx.table[n - 1 - index])


def ddim_uniform(steps, ctx):
    """DDIM's "leading" spacing with offset 1 (the host's "ddim_uniform"):
    every c-th entry from index 1 while it fits the table, c = len // steps
    (at least 1), largest first. When len / steps is not whole this gives
    more than `steps` steps, and with steps >= len it gives len - 1 steps,
    as the host. Where entry 1 is within NEAR_ZERO of 0 it stands for the
    final 0 (one more step, no 0 appended). sigma_min and sigma_max do not
    apply."""
    table = ctx.table
    n = len(table)
    ends_at_entry = table[1] <= NEAR_ZERO
    if ends_at_entry:
        steps += 1
    stride = max(n // steps, 1)
    values = table[np.arange(1, n, stride)][::-1]
    return values if ends_at_entry else append_zero(values)


def beta_schedule(steps, ctx, alpha, beta):
    """Table entries at the timesteps (len - 1) * q, rounded to whole
    timesteps, where q are the Beta(alpha, beta) quantiles of
    1, 1 - 1/steps, ..., 1/steps (Lee et al. 2024, arXiv:2407.12173; the
    host's "beta"). A timestep equal to the previous one is dropped, so many
    steps can give fewer sigmas, as the host. sigma_min and sigma_max do not
    apply; the quantiles are scipy's (the host uses the same function)."""
    table = ctx.table
    levels = 1.0 - np.linspace(0.0, 1.0, steps, endpoint=False)
    t = np.rint(betaincinv(alpha, beta, levels) * (len(table) - 1)).astype(np.int64)
    keep = np.ones(len(t), dtype=bool)
    keep[1:] = t[1:] != t[:-1]
    return append_zero(table[t[keep]])


SD_TURBO_GRID = 10


def sd_turbo_denoised(steps, ctx, denoise):
    """SD-Turbo's schedule (the host's SDTurboScheduler node): the model's
    sigma at every 100th timestep from 999 (999, 899, ..., 99), starting
    10 - int(10 denoise) grid points in, `steps` of them, then 0.

    The grid has 10 points; where `steps` do not fit after the start this
    raises (the host would silently return fewer)."""
    start = SD_TURBO_GRID - int(SD_TURBO_GRID * denoise)
    room = SD_TURBO_GRID - start
    if steps > room:
        where = "" if start == 0 else f" from denoise {denoise:g} on"
        raise ValueError(f"sd_turbo: steps must be at most {room} (its grid is every "
                         f"100th timestep from 999{where}), got {steps}")
    grid = 100.0 * np.arange(SD_TURBO_GRID, 0, -1) - 1.0
    return append_zero(ctx.sampling.sigma(grid[start:start + steps]))


def sd_turbo(steps, ctx):
    """sd_turbo_denoised at denoise 1: from timestep 999."""
    return sd_turbo_denoised(steps, ctx, 1.0)
