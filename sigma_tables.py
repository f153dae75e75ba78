"""The host's sigma tables: facts about the models, on the ground floor.

`samplers/` and `schedules/` both read these, side by side; this module
imports neither (numpy and torch only), so no import runs upward.

    sd1_sigmas()        # 1000 increasing float32 sigmas, the SD 1.x / SDXL table
    sd1_table64()       # the same table in full float64 precision (read-only)
    flow_table(3.0)     # what an SD3-type flow model stores (float32 values in float64)
    flux_table(1.15)    # what a Flux-type model stores

The SD 1.x table is the "scaled linear" beta schedule of Rombach et al. 2022
(arXiv:2112.10752) with the betas and step count below; the flow tables
follow Esser et al. 2024 (SD3, arXiv:2403.03206) eq. 23 and Flux's
exponential time shift. The host keeps its tables in float32; the functions
here round the same way, so our defaults equal what the host reads off a model.
"""
import math
from functools import lru_cache

import numpy as np
import torch

SD1_TIMESTEPS = 1000
SD1_BETA_START = 0.00085
SD1_BETA_END = 0.012
# The host treats a sigma within this of 0 as the final 0 (math.isclose with
# abs_tol=1e-5 in its normal and ddim_uniform schedulers).
NEAR_ZERO = 1e-5


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


def _shift(shift, t):
    # Esser et al. 2024 (SD3, arXiv:2403.03206) eq. 23: the resolution shift.
    return shift * t / (1.0 + (shift - 1.0) * t)


def flow_table(shift, multiplier=1000.0, timesteps=1000):
    """The table a flow model stores: sigma(k / timesteps * multiplier) for
    k = 1..timesteps, computed in float32 as the host computes and keeps it."""
    t = torch.arange(1, timesteps + 1, 1) / timesteps * multiplier
    x = t / multiplier
    values = x if shift == 1.0 else shift * x / (1 + (shift - 1) * x)
    return values.double().numpy()


def flux_table(shift, timesteps=10000):
    """The table a Flux-type model stores: the exponential shift at
    k / timesteps for k = 1..timesteps, in float32 as the host keeps it."""
    t = torch.arange(1, timesteps + 1, 1) / timesteps
    values = math.exp(shift) / (math.exp(shift) + (1 / t - 1))
    return values.double().numpy()
