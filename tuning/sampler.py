"""A tuned sampler as data: its step times and its coefficient table, run by
the one loop (samplers.core.sample_grid).

Step i (model call i at sigmas[i]) moves to the next model input

    x_(i+1) = c_i x_0 + sum_(j <= i) W_ij D_j,        D_j = D(x_j, sigmas[j]),

and the last row gives the result. Every deterministic one-call-per-step
sampler is such a table (tuning/linear.py reads it off), e.g. DDIM's
c_i = sigma_(i+1) / sigma_0, W_ii = 1 - sigma_(i+1) / sigma_i together
with the rows before; the tuner frees the entries (Bespoke / BNS solvers,
Shaul et al. 2024, arXiv:2310.19075 / 2403.01329; S4S, Frankel et al. 2025,
arXiv:2502.17423) and fits them to the model in hand.
"""
import math
from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

from ..samplers.core import Run, sample_grid
from ..samplers.methods import Method, combine
from ..samplers.process import get_process

__all__ = ["TunedMethod", "TunedSampler", "FORMAT", "VERSION"]

FORMAT = "sampler_lab.tuned_sampler"
VERSION = 1
MAX_CALLS = 64
# The host hands the sigmas on as float32; the table's sigmas are float32
# values, so an exact match is expected and this only forgives a host that
# recomputes them.
SIGMA_RTOL = 1e-5


@dataclass(frozen=True)
class TunedMethod(Method):
    """The table as a `methods.Method`: one model call per grid point."""
    sigmas: Tuple[float, ...]
    x0: Tuple[float, ...]
    weights: Tuple[Tuple[float, ...], ...]

    def start(self, run):
        sig = run.sig
        if len(sig) != len(self.sigmas) or any(
                abs(a - b) > SIGMA_RTOL * max(abs(b), 1e-12) for a, b in zip(sig, self.sigmas)):
            raise ValueError(
                f"this tuned sampler was fitted on its own sigmas ({len(self.sigmas) - 1} steps: "
                f"{', '.join(f'{s:.4g}' for s in self.sigmas)}); it was given "
                f"{len(sig) - 1} steps ({', '.join(f'{s:.4g}' for s in sig)}). Connect the "
                f"SIGMAS the tuner returned")
        if run.eta != 0.0 or run.s_churn != 0.0:
            raise ValueError("a tuned sampler is deterministic: it needs eta (noise strength) "
                             "= 0 and s_churn = 0")
        return {"x0": None, "ds": []}

    def step(self, run, st, i, x, denoised):
        if i == 0:
            st["x0"] = x
        st["ds"].append(denoised)
        c = self.x0[i]
        out = combine(self.weights[i], st["ds"])
        if c:
            term = st["x0"] * c
            out = term if out is None else out + term
        return out if out is not None else torch.zeros_like(x)


def _fail(field_name, what):
    raise ValueError(f"tuned sampler table: {field_name} {what}")


def _floats(field_name, value, n=None):
    if not isinstance(value, (list, tuple)):
        _fail(field_name, f"must be a list of numbers, got {type(value).__name__}")
    if n is not None and len(value) != n:
        _fail(field_name, f"must have {n} entries, got {len(value)}")
    out = []
    for k, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            _fail(f"{field_name}[{k}]", f"must be a finite number, got {v!r}")
        out.append(float(v))
    return tuple(out)


def _check_table(process, sigmas, x0, weights):
    proc = get_process(process)
    sig = _floats("sigmas", sigmas)
    n = len(sig) - 1
    if not 1 <= n <= MAX_CALLS:
        _fail("sigmas", f"must hold 2 to {MAX_CALLS + 1} values (steps + 1), got {len(sig)}")
    if sig[-1] != 0.0:
        _fail("sigmas", f"must end at 0 (a full run), ends at {sig[-1]}")
    for k in range(n):
        if not sig[k + 1] < sig[k]:
            _fail("sigmas", f"must decrease strictly: sigmas[{k}] = {sig[k]}, "
                            f"sigmas[{k + 1}] = {sig[k + 1]}")
    if sig[0] > proc.sigma_limit:
        _fail("sigmas", f"start at {sig[0]}, above a {proc.name} model's limit "
                        f"{proc.sigma_limit}")
    c = _floats("x0", x0, n)
    if not isinstance(weights, (list, tuple)) or len(weights) != n:
        _fail("weights", f"must be {n} rows (one per step)")
    rows = tuple(_floats(f"weights[{i}]", row, i + 1) for i, row in enumerate(weights))
    return proc.name, sig, c, rows


@dataclass(frozen=True)
class TunedSampler:
    """A sampler fitted to one model (see `tuning.tune`).

    process: "ve" / "flow"; sigmas: steps + 1 floats ending at 0 (one model
    call per step); x0, weights: the coefficient table (module docstring);
    start_scale: the start latent is start_scale x unit noise; base: the
    fixed sampler and schedule it started from ({"sampler", "schedule",
    "error"}); ranking: ((sampler, schedule, calibration RMSE), ...) best
    first; errors: calibration RMSE against the reference {"before",
    "after", "images"}; cost: {"evals" (single-image model evaluations),
    "seconds", "reference_steps"}; fitted_on: what it was fitted on (images,
    seed, process, sigma range, shape, and the caller's `key`)."""
    process: str
    sigmas: Tuple[float, ...]
    x0: Tuple[float, ...]
    weights: Tuple[Tuple[float, ...], ...]
    start_scale: float
    base: dict = field(default_factory=dict)
    ranking: tuple = ()
    errors: dict = field(default_factory=dict)
    cost: dict = field(default_factory=dict)
    fitted_on: dict = field(default_factory=dict)

    def __post_init__(self):
        proc, sig, c, rows = _check_table(self.process, self.sigmas, self.x0, self.weights)
        object.__setattr__(self, "process", proc)
        object.__setattr__(self, "sigmas", sig)
        object.__setattr__(self, "x0", c)
        object.__setattr__(self, "weights", rows)
        scale = _floats("start_scale", [self.start_scale])[0]
        if scale <= 0:
            _fail("start_scale", f"must be > 0, got {scale}")
        object.__setattr__(self, "start_scale", scale)

    @property
    def calls(self):
        """Model calls per image."""
        return len(self.sigmas) - 1

    def method(self):
        return TunedMethod(self.sigmas, self.x0, self.weights)

    def sigmas_tensor(self, dtype=torch.float32):
        return torch.tensor(self.sigmas, dtype=dtype)

    def sampler_function(self):
        """fn(model, x, sigmas, extra_args=None, callback=None, disable=None)
        -> the sample: the signature of a ComfyUI KSAMPLER function. x is the
        start latent at sigmas[0]; sigmas must be this sampler's."""
        method = self.method()
        process = self.process

        def sample_tuned(model, x, sigmas, extra_args=None, callback=None, disable=None,
                         **unused):
            run = Run(model, x, sigmas, extra_args=extra_args, callback=callback,
                      disable=disable, process=process, eta=0.0, s_noise=1.0, noise=None)
            return sample_grid(run, method)
        return sample_tuned

    def sample(self, denoiser, noise, callback=None, disable=None, extra_args=None):
        """The sample from unit noise [B, ...] (the start is start_scale x noise)."""
        if not torch.is_tensor(noise) or noise.ndim < 1 or noise.shape[0] < 1:
            raise ValueError("noise must be a tensor [batch, ...] with batch >= 1")
        x = noise * self.start_scale
        return self.sampler_function()(denoiser, x, self.sigmas_tensor(torch.float64),
                                       extra_args=extra_args, callback=callback,
                                       disable=disable)

    # --------------------------------------------------------------- serialise
    def to_dict(self):
        """JSON-safe and small (a few KB): plain lists, numbers and strings."""
        return {
            "format": FORMAT, "version": VERSION, "process": self.process,
            "sigmas": list(self.sigmas), "x0": list(self.x0),
            "weights": [list(r) for r in self.weights], "start_scale": self.start_scale,
            "base": dict(self.base), "ranking": [list(r) for r in self.ranking],
            "errors": dict(self.errors), "cost": dict(self.cost),
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, d):
        """The sampler of `to_dict`'s output; ValueError naming the field of
        a corrupt, foreign or newer table."""
        if not isinstance(d, dict):
            raise ValueError(f"tuned sampler table must be a dict, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            _fail("format", f"must be {FORMAT!r}, got {d.get('format')!r} (not a Sampler Lab "
                            f"tuned sampler)")
        if d.get("version") != VERSION:
            _fail("version", f"must be {VERSION}, got {d.get('version')!r}")
        for key in ("process", "sigmas", "x0", "weights", "start_scale"):
            if key not in d:
                _fail(key, "is missing")
        if d["process"] not in ("ve", "flow"):
            _fail("process", f"must be 've' or 'flow', got {d['process']!r}")
        extras = {}
        for key in ("base", "errors", "cost", "fitted_on"):
            value = d.get(key, {})
            if not isinstance(value, dict):
                _fail(key, f"must be a dict, got {type(value).__name__}")
            extras[key] = dict(value)
        ranking = d.get("ranking", [])
        if not isinstance(ranking, (list, tuple)):
            _fail("ranking", "must be a list of [sampler, schedule, error]")
        rows = []
        for k, r in enumerate(ranking):
            if not (isinstance(r, (list, tuple)) and len(r) == 3 and isinstance(r[0], str)
                    and isinstance(r[1], str) and isinstance(r[2], (int, float))
                    and not isinstance(r[2], bool)):
                _fail(f"ranking[{k}]", f"must be [sampler, schedule, error], got {r!r}")
            rows.append((r[0], r[1], float(r[2])))
        return cls(d["process"], d["sigmas"], d["x0"], d["weights"], d["start_scale"],
                   ranking=tuple(rows), **extras)
