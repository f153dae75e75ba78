"""Samplers fitted to the model in hand (pure torch, no host import).

    ts = tune(denoiser, noise, "ve", calls=8, sigma_min=0.0292, sigma_max=14.6146)
    x = ts.sample(denoiser, other_noise)
    d = ts.to_dict(); TunedSampler.from_dict(d)      # JSON-safe, a few KB

A TunedSampler is data: step times and a coefficient table run by the one
loop (samplers.core.sample_grid); see tuning/tune.py for the method.
"""
from .sampler import TunedMethod, TunedSampler
from .tuner import Interrupted, candidate_samplers, tune

__all__ = ["tune", "TunedSampler", "TunedMethod", "Interrupted", "candidate_samplers"]
