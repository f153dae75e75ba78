"""The one class for a user-settable value of the engine: schedule
parameters and sampler options alike (nodes/widgets.py turns both into
widgets). Each failure is a ValueError that names the input and what it may
be, because the message ends up in a ComfyUI error popup where nobody can
read a traceback. No host import."""
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch


@dataclass(frozen=True)
class Param:
    """A schedule parameter or sampler option: its default and the values it
    accepts.

    `lo`/`hi` bound numbers (None: unbounded); `lo_open`/`hi_open` make a bound
    exclusive (a rho of 0 or a threshold of 1 would divide by zero or collapse
    the schedule). `kind` is "float", "int", "choice", "text" or "dict" (a
    dict the caller passes to be filled, or None); `step` is the grid a UI
    should offer, where the published data only exist on one.
    """
    default: Any
    lo: Optional[float]
    hi: Optional[float]
    description: str
    kind: str = "float"
    lo_open: bool = False
    hi_open: bool = False
    choices: Tuple[str, ...] = ()
    step: Optional[float] = None

    def range_text(self):
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "text":
            return "a string"
        if self.kind == "dict":
            return "a dict or None"
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        what = "an integer" if self.kind == "int" else "a number"
        return f"{what} in {left}{_fmt(self.lo, '-inf')}, {_fmt(self.hi, 'inf')}{right}"

    def check(self, where, value):
        """Return the value in its canonical type, or raise naming `where`."""
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(f"{where} must be {self.range_text()}, got {value!r}")
            return value
        if self.kind == "text":
            if not isinstance(value, str):
                raise ValueError(f"{where} must be a string, got {type(value).__name__}")
            return value
        if self.kind == "dict":
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"{where} must be a dict (filled with run statistics) or None, "
                                 f"got {type(value).__name__}")
            return value
        if self.kind == "int":
            # None is how a caller says "use the schedule's own default".
            if value is None and self.default is None:
                return None
            if not is_int(value):
                raise ValueError(f"{where} must be {self.range_text()}, got {value!r}")
            value = int(value)
        else:
            value = as_float(where, value, self.range_text())
        if not in_range(value, self.lo, self.hi, self.lo_open, self.hi_open):
            raise ValueError(f"{where} must be {self.range_text()}, got {value!r}")
        return value


def _fmt(x, missing):
    return missing if x is None else f"{x:g}"


_REQUIRED = object()


def number(where, raw, lo=None, hi=None, *, integer=False, lo_open=False, hi_open=False,
           text=False, default=_REQUIRED, allowed=None):
    """`raw` as a finite float (an int with integer=True) within [lo, hi]
    (None: unbounded; lo_open/hi_open exclude an end): a number or a
    one-element tensor; with text=True also the text of one (a URL query's
    value). With `default` given, None and "" stand for it.

    Raises ValueError "<where> must be <allowed>, got <raw>", `allowed`
    being "a finite number in [lo, hi]" (or "an integer in ...") unless the
    caller words it. A bool is never a number here (True is no step count
    and no noise strength), nor is text unless asked for."""
    if default is not _REQUIRED and (raw is None or (isinstance(raw, str) and raw == "")):
        return default
    if allowed is None:
        what = "an integer" if integer else "a finite number"
        allowed = (f"{what} in {'(' if lo_open else '['}{'-inf' if lo is None else lo}, "
                   f"{'inf' if hi is None else hi}{')' if hi_open else ']'}")
    value = None
    if isinstance(raw, str):
        if text:
            try:
                value = int(raw) if integer else float(raw)
            except ValueError:
                pass
    elif integer:
        value = int(raw) if is_int(raw) else None
    elif not isinstance(raw, bool):
        try:
            value = float(raw)
        except (TypeError, ValueError, RuntimeError):
            pass
    if value is None or not math.isfinite(value) or \
            not in_range(value, lo, hi, lo_open, hi_open):
        raise ValueError(f"{where} must be {allowed}, got {raw!r}")
    return value


def check_options(kind, name, specs, values, noun="option"):
    """`values` (name -> raw value) checked against `specs` (name -> Param)
    and laid over the specs' defaults, as a new dict. `kind` and `name` say
    whose they are ("sampler", "lms"); an unknown key is a ValueError that
    lists the known ones, a bad value one that names "<name>: <key>" and its
    allowed range (Param.check)."""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        allowed = ", ".join(specs) or "none"
        raise ValueError(f"unknown {noun} {', '.join(map(repr, unknown))} for {kind} {name!r}; "
                         f"its {noun}s: {allowed}")
    checked = {k: p.default for k, p in specs.items()}
    for key, value in values.items():
        checked[key] = specs[key].check(f"{name}: {key}", value)
    return checked


def is_int(value):
    # bool is an int to Python but never a step count.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def as_float(where, value, allowed):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where} must be {allowed}, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} must be {allowed}, got {value!r}")
    return value


def in_range(value, lo, hi, lo_open=False, hi_open=False):
    if lo is not None and (value < lo or (lo_open and value == lo)):
        return False
    if hi is not None and (value > hi or (hi_open and value == hi)):
        return False
    return True
