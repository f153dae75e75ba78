"""Sampler Lab's samplers: pure torch, no host import.

    spec = get_sampler("dpmpp_2m")
    x = spec.fn(model, x, sigmas, process="flow", eta=0.5)
"""
from . import noise
from .noise import BrownianNoise, GaussianNoise
from .process import FLOW, VE, Process, get_process
from .registry import SAMPLER_NAMES, SAMPLERS, SamplerSpec, get_sampler, noise_fractions

__all__ = ["SAMPLER_NAMES", "SAMPLERS", "SamplerSpec", "get_sampler", "noise_fractions", "noise",
           "BrownianNoise", "GaussianNoise", "Process", "VE", "FLOW", "get_process"]
