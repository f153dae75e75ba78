"""How a model maps sigma to its timestep and back: the part of the host's
`model_sampling` that schedules read, as plain data (no host import).

The host's schedulers are defined through these maps: `normal` spaces the
timesteps of sigma_max and sigma_min evenly and maps them back to sigmas,
`simple` / `ddim_uniform` / `beta` index the model's sigma table. A flow
model's timestep is sigma * multiplier *without* its shift, so the same
schedule name gives other sigmas than a table look-up would; reading the
maps of the model in hand is what makes our sigmas the host's.

    ms = FlowSampling(shift=3.0)               # SD3-type, as ModelSamplingDiscreteFlow
    ms = FluxSampling(shift=1.15)              # Flux-type, as ModelSamplingFlux
    ms = DiscreteSampling(sd1_sigmas())        # eps / v models, as ModelSamplingDiscrete
    ms.timestep(sigma), ms.sigma(t)            # float64 numpy, elementwise

`nodes/host.py` builds these from the host's object; the schedule preview
builds them from a model family's name. Tables are float32 values carried in
float64, as the host stores them; the maps compute in float64.
"""
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..sigma_tables import _shift, flow_table, flux_table  # noqa: F401
from .validation import as_float, check_model_sigmas
from ..params import number


def _readonly(arr):
    arr = np.array(arr, dtype=np.float64)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ModelSampling:
    """Base of the descriptions: the model's increasing sigma table (one
    entry per training timestep, float64 numpy, read-only) and the ends of
    its sigma range (the table's ends unless the host says otherwise)."""
    sigmas: np.ndarray
    sigma_min: float = None
    sigma_max: float = None
    kind = "table"

    def __post_init__(self):
        table = check_model_sigmas(self.sigmas)
        object.__setattr__(self, "sigmas", _readonly(table))
        if self.sigma_min is None:
            object.__setattr__(self, "sigma_min", float(table[0]))
        if self.sigma_max is None:
            object.__setattr__(self, "sigma_max", float(table[-1]))
        for name in ("sigma_min", "sigma_max"):
            value = as_float(name, getattr(self, name), "a finite number > 0")
            if value <= 0:
                raise ValueError(f"model sampling: {name} must be > 0, got {value!r}")
            object.__setattr__(self, name, value)

    def timestep(self, sigma):
        raise NotImplementedError

    def sigma(self, timestep):
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class DiscreteSampling(ModelSampling):
    """A discrete-time model (eps, v, x0 prediction), as the host's
    ModelSamplingDiscrete: the timestep of a sigma is the index of the table
    entry nearest in log sigma (first on ties); the sigma of a fractional
    timestep interpolates log sigma linearly between entries, clamped to the
    table. `log_sigmas`: the log table the host keeps beside the table (in
    float32); by default the table's logs rounded to float32, as the host
    stores them. Both maps compute in float32 with that log table, as the
    host does (see sigma)."""
    log_sigmas: np.ndarray = field(default=None, repr=False)
    kind = "discrete"

    def __post_init__(self):
        super().__post_init__()
        logs = self.log_sigmas
        if logs is None:
            logs = np.log(self.sigmas).astype(np.float32)
        logs = _readonly(logs)
        if logs.shape != self.sigmas.shape or not np.all(np.isfinite(logs)):
            raise ValueError(f"log_sigmas must be finite with the table's shape "
                             f"{self.sigmas.shape}, got {logs.shape}")
        object.__setattr__(self, "log_sigmas", logs)

    def timestep(self, sigma):
        sigma = torch.as_tensor(np.asarray(sigma, dtype=np.float64), dtype=torch.float32)
        dist = (sigma.log()[..., None] - self._log_table()).abs()
        return dist.argmin(dim=-1).double().numpy()

    def sigma(self, timestep):
        # In float32, as the host evaluates it: a timestep halfway between two
        # entries gives a sigma whose nearest entry (the timestep the model
        # then sees) is decided by that rounding.
        log_table = self._log_table()
        t = torch.as_tensor(np.asarray(timestep, dtype=np.float64), dtype=torch.float32)
        t = t.clamp(0, len(self.sigmas) - 1)
        low, high = t.floor().long(), t.ceil().long()
        w = t - t.floor()
        return ((1 - w) * log_table[low] + w * log_table[high]).exp().double().numpy()

    def _log_table(self):
        return torch.from_numpy(np.asarray(self.log_sigmas, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class FlowSampling(ModelSampling):
    """A rectified-flow model x = (1 - sigma) x0 + sigma noise with a shift,
    as the host's ModelSamplingDiscreteFlow (SD3, AuraFlow with multiplier 1,
    Wan, HunyuanVideo, ...): timestep(sigma) = sigma * multiplier, and
    sigma(t) = shift x / (1 + (shift - 1) x) with x = t / multiplier.

    The timestep is not shifted, so mapping sigma_min to a timestep and back
    gives a larger sigma than sigma_min itself whenever shift > 1."""
    sigmas: np.ndarray = None
    shift: float = 1.0
    multiplier: float = 1000.0
    kind = "flow"

    def __post_init__(self):
        for name in ("shift", "multiplier"):
            object.__setattr__(self, name, number(f"flow {name}", getattr(self, name), 0.0,
                                                  lo_open=True, allowed="a finite number > 0"))
        if self.sigmas is None:
            object.__setattr__(self, "sigmas", flow_table(self.shift, self.multiplier))
        super().__post_init__()

    def timestep(self, sigma):
        return np.asarray(sigma, dtype=np.float64) * self.multiplier

    def sigma(self, timestep):
        return _shift(self.shift, np.asarray(timestep, dtype=np.float64) / self.multiplier)


@dataclass(frozen=True, eq=False)
class FluxSampling(ModelSampling):
    """A flow model with Flux's exponential shift, as the host's
    ModelSamplingFlux: timestep(sigma) = sigma, and
    sigma(t) = e^mu / (e^mu + 1/t - 1) with mu = `shift` (Flux's
    time_shift with exponent 1)."""
    sigmas: np.ndarray = None
    shift: float = 1.15
    kind = "flux"

    def __post_init__(self):
        shift = as_float("flux shift", self.shift, "a finite number")
        object.__setattr__(self, "shift", shift)
        if self.sigmas is None:
            object.__setattr__(self, "sigmas", flux_table(shift))
        super().__post_init__()

    def timestep(self, sigma):
        return np.asarray(sigma, dtype=np.float64)

    def sigma(self, timestep):
        t = np.asarray(timestep, dtype=np.float64)
        e = math.exp(self.shift)
        with np.errstate(divide="ignore"):
            return e / (e + (1.0 / t - 1.0))


@dataclass(frozen=True, eq=False)
class MappedSampling(ModelSampling):
    """Any other model sampling: its own maps as plain functions (float64
    array in, float64 array out), for host classes we have no formula for."""
    to_timestep: Callable = field(default=None, repr=False)
    to_sigma: Callable = field(default=None, repr=False)
    kind = "mapped"

    def __post_init__(self):
        if not callable(self.to_timestep) or not callable(self.to_sigma):
            raise ValueError("MappedSampling needs to_timestep and to_sigma functions")
        super().__post_init__()

    def timestep(self, sigma):
        return np.asarray(self.to_timestep(np.asarray(sigma, dtype=np.float64)),
                          dtype=np.float64)

    def sigma(self, timestep):
        return np.asarray(self.to_sigma(np.asarray(timestep, dtype=np.float64)),
                          dtype=np.float64)


def as_model_sampling(model_sampling=None, model_sigmas=None, default=None):
    """The description a schedule reads: `model_sampling` as given, else a
    discrete model over `model_sigmas`, else `default()`."""
    if model_sampling is not None:
        if model_sigmas is not None:
            raise ValueError("give model_sampling or model_sigmas, not both (the "
                             "description carries its own table)")
        if not isinstance(model_sampling, ModelSampling):
            raise ValueError(f"model_sampling must be a schedules.ModelSampling "
                             f"description, got {type(model_sampling).__name__}")
        return model_sampling
    if model_sigmas is None:
        return default()
    return DiscreteSampling(model_sigmas)
