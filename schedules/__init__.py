"""Sampler Lab's noise schedules: pure torch/numpy, no host import.

    sigmas = get_sigmas("karras", 20, sigma_min=0.0292, sigma_max=14.6146)
    sigmas = get_sigmas("normal", 20, model_sigmas=model_sampling.sigmas)
    result = optimize(model, x.shape, "dpmpp_2m", 8, sigma_min=0.0292, sigma_max=14.6)

Every schedule returns steps + 1 strictly decreasing float32 sigmas ending
in exactly 0, or raises ValueError saying which input is wrong.
"""
from .custom import parse_sigmas
from .discrete import sd1_sigmas
from .optimize import OptimizeResult, optimize
from .registry import SCHEDULE_NAMES, SCHEDULES, ScheduleSpec, get_schedule, get_sigmas
from .validation import Param

__all__ = ["SCHEDULE_NAMES", "SCHEDULES", "ScheduleSpec", "Param", "get_schedule",
           "get_sigmas", "sd1_sigmas", "parse_sigmas", "optimize", "OptimizeResult"]
