"""The one set of input checks every schedule goes through.

Each failure is a ValueError that names the input and what it may be, because
the message ends up in a ComfyUI error popup where nobody can read a traceback.
"""
import math

import numpy as np
import torch

from ..params import Param, as_float, in_range, is_int, number  # noqa: F401  (re-exported)

MAX_STEPS = 10000


def check_steps(steps):
    return number("steps", steps, 1, MAX_STEPS, integer=True)


def check_sigma(where, value):
    """A positive finite sigma bound; None passes through (use the table's)."""
    if value is None:
        return None
    return number(where, value, 0.0, lo_open=True, allowed="a finite number > 0")


def check_model_sigmas(table):
    """The model's discrete sigma table as float64 numpy, checked."""
    if table is None:
        return None
    where = "model_sigmas"
    if isinstance(table, torch.Tensor):
        arr = table.detach().to("cpu", torch.float64).numpy()
    else:
        try:
            arr = np.asarray(table, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{where} must be a 1-D sequence of numbers") from None
    if arr.ndim != 1:
        raise ValueError(f"{where} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.size < 2:
        raise ValueError(f"{where} must have at least 2 entries, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} must be finite (found nan or inf)")
    if not np.all(arr > 0):
        raise ValueError(f"{where} must be > 0 everywhere (found {arr.min():g})")
    # Nearest-entry look-ups and interpolation in the table assume its order.
    if np.any(np.diff(arr) < 0):
        raise ValueError(f"{where} must be increasing (sigma of timestep 0 first), "
                         f"as the host's model_sampling.sigmas is")
    return arr


def check_range(sigma_min, sigma_max):
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min must be below sigma_max, got sigma_min={sigma_min!r}, "
                         f"sigma_max={sigma_max!r}")


def check_denoise(denoise):
    """A finite denoise; None means 1 (the whole schedule)."""
    if denoise is None:
        return 1.0
    return as_float("denoise", denoise, "a finite number (<= 0: no steps, 1: all)")


def drop_repeats(values):
    """The sigmas with exact repeats of the previous one removed: a repeated
    sigma is a step of length zero, which changes nothing for first-order
    steps and divides by zero in multistep ones."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return values
    keep = np.ones(values.size, dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def finish(name, values):
    """A whole schedule in float64 -> the float32 sigmas samplers get.

    Every sigma but the last must be finite and > 0, the last >= 0 (it is 0
    unless a definition ends elsewhere). The order check runs on the float32
    result because that is what samplers get: values distinct in float64 can
    collapse after rounding, and a repeated sigma is a zero-length step that
    some samplers divide by.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise AssertionError(f"{name}: computed {values.shape} sigmas; a schedule has >= 2")
    if not np.all(np.isfinite(values)) or not np.all(values[:-1] > 0) or values[-1] < 0:
        raise ValueError(f"{name}: with these inputs the schedule leaves the finite "
                         f"positive range (got {values.min():g} .. {values.max():g}); "
                         f"check its parameters")
    out = torch.from_numpy(values).to(torch.float32)
    if not torch.isfinite(out).all() or not (out[:-1] > 0).all():
        raise ValueError(f"{name}: with these inputs some sigmas do not fit in float32; "
                         f"check its parameters")
    if not bool((out[1:] < out[:-1]).all()):
        raise ValueError(f"{name}: {values.size - 1} steps give repeated sigmas at float32 "
                         f"precision (or rising ones); use fewer steps, a wider "
                         f"sigma_min..sigma_max range or other parameters")
    return out
