"""Sampler Lab's noise schedules: pure torch/numpy, no host import.

    sigmas = get_sigmas("karras", 20, sigma_min=0.0292, sigma_max=14.6146)
    sigmas = get_sigmas("normal", 20, model_sampling=FlowSampling(shift=3.0))
    sigmas = ksampler_sigmas("beta", 10, denoise=0.5, model_sigmas=sd1_sigmas())
    result = optimize(model, x.shape, "dpmpp_2m", 8, sigma_min=0.0292, sigma_max=14.6)

Every schedule returns strictly decreasing float32 sigmas ending in 0 (steps
+ 1 of them unless its definition gives another count, see get_sigmas), or
raises ValueError saying which input is wrong.
"""
from .custom import parse_sigmas
from .discrete import sd1_sigmas
from .optimize import OptimizeResult, optimize
from .registry import (SCHEDULE_NAMES, SCHEDULES, ScheduleSpec, get_schedule, get_sigmas,
                       ksampler_sigmas)
from .sampling import (DiscreteSampling, FlowSampling, FluxSampling, MappedSampling,
                       ModelSampling)
from .validation import Param

__all__ = ["SCHEDULE_NAMES", "SCHEDULES", "ScheduleSpec", "Param", "get_schedule",
           "get_sigmas", "ksampler_sigmas", "sd1_sigmas", "parse_sigmas", "optimize",
           "OptimizeResult", "ModelSampling", "DiscreteSampling", "FlowSampling",
           "FluxSampling", "MappedSampling"]
