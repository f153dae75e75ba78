"""A step schedule searched for one model and one sampler.

Fixed schedules (Karras, AYS, GITS tables) are tuned for a model family. Here
the schedule is tuned for the model in hand, in two stages:

1. Reference. A fine deterministic solve from the seed's noise, on a grid
   uniform in the half-log-SNR lambda, records the trajectory x_ref and the
   model's prediction D_ref at every grid point, and its end point x_end.

2. Start. Candidates are scored by the sampler's real global error
   |sample(schedule) - x_end|: Karras (rho 7), lambda-uniform, and the
   schedule that minimises the sum of first-order local errors along the
   reference trajectory, found by dynamic programming over the grid (the
   GITS search of Chen et al. 2024, "On the Trajectory Regularity of
   ODE-based Diffusion Sampling", arXiv:2405.11326). The local errors reuse
   the reference's predictions, so the DP costs no model calls.

3. Descent. Coordinate pattern search on the interior points, in lambda, on
   the sampler's real global error: each point is moved a fraction of the
   gap to a neighbour, which keeps the schedule decreasing; a point whose
   two moves both fail gets a smaller fraction. It stops when the budget of
   model calls cannot pay for another run, or when every fraction is tiny.

Every model call in the search is on the whole calibration batch and counts
against `budget_calls`. Deterministic samplers are tuned as they run;
stochastic ones by their deterministic form (eta = 0), which is what a
schedule controls. dpm_fast and dpm_adaptive choose their own steps and take
only the range from a schedule, so there is nothing to tune for them.
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..samplers import SAMPLERS, get_process, get_sampler
from .registry import SCHEDULE_NAMES, get_sigmas
from ..params import number

__all__ = ["optimize", "OptimizeResult", "search_cost_floor", "fixed_starts", "UNTUNABLE"]

# Samplers that lay their own steps over the range: a fact of their rows
# (SamplerSpec.tunable); the name stays for the node and the bench.
UNTUNABLE = tuple(name for name, spec in SAMPLERS.items() if not spec.tunable)
# Third order: on the digits model 128 steps uniform in -log(sigma) are
# within 1e-5 (VE) of a 2048-step RK4 solve; 2M needs 4x the steps.
REFERENCE_SAMPLER = "uni_pc"
REFERENCE_ORDER = 3
REFERENCE_STEPS = 128
# The reference continues down to sigma_min * REFERENCE_FLOOR (see optimize).
REFERENCE_FLOOR = 0.01
MAX_STEPS = 200


@dataclass
class OptimizeResult:
    sigmas: torch.Tensor               # steps + 1 float32 sigmas, strictly decreasing, ending in 0
    calls: int                         # model calls spent, each on the whole batch
    error_before: float                # RMSE vs the reference: best fixed start candidate
    error_after: float                 # RMSE vs the reference: the returned schedule
    start: str                         # which candidate the descent started from
    start_errors: Dict[str, float]     # RMSE of every start candidate
    reference_calls: int
    reference_error: float             # estimated RMSE of the reference end point itself
    evaluations: int                   # sampler runs scored
    history: List[Tuple[int, float]] = field(default_factory=list)  # (calls, best error)

    def summary(self):
        return (f"{self.calls} calls ({self.reference_calls} for the reference, "
                f"{self.evaluations} runs scored); RMSE vs reference "
                f"{self.error_before:.3e} ({self.start}) -> {self.error_after:.3e}; "
                f"reference error about {self.reference_error:.1e}")


class _Budget(Exception):
    pass


class _CountingModel:
    """Counts model calls and stops the search before the budget is exceeded."""

    def __init__(self, model, budget, progress):
        self.model, self.budget, self.progress = model, budget, progress
        self.calls = 0

    def __call__(self, x, sigma, **extra_args):
        if self.calls >= self.budget:
            raise _Budget()
        self.calls += 1
        out = self.model(x, sigma, **extra_args)
        if self.progress is not None:
            self.progress(self.calls, self.budget)
        return out


def _rmse(a, b):
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def _run_calls(spec, steps):
    """Model calls of one run of `spec` over `steps` steps (plms pays one more)."""
    extra = 1 if spec.name == "plms" else 0
    return steps * spec.calls_per_step + extra


def search_cost_floor(sampler_name, steps, reference_steps=None):
    """The fewest calls `optimize` accepts: the reference, its check and
    three runs of the sampler (the start candidates)."""
    spec = get_sampler(sampler_name)
    if spec.calls_per_step is None:
        return None
    r = reference_steps or REFERENCE_STEPS
    return r + r // 2 + 3 * _run_calls(spec, steps)


def fixed_starts(steps, sigma_min, sigma_max, model_sigmas=None, model_sampling=None):
    """Every fixed schedule that gives `steps` steps over the range, as start
    candidates for `optimize` (name -> float64 sigmas ending in 0).
    model_sampling / model_sigmas: the model's, as for get_sigmas."""
    out = {}
    for name in SCHEDULE_NAMES:
        if name == "custom":
            continue
        try:
            sigmas = get_sigmas(name, steps, sigma_min=sigma_min, sigma_max=sigma_max,
                                model_sigmas=model_sigmas, model_sampling=model_sampling)
        except ValueError:
            continue  # e.g. sd_turbo past its 10-step grid
        if len(sigmas) == steps + 1:  # ddim_uniform / beta can give other counts
            out[name] = sigmas.double().tolist()
    return out


def _lam_grid(sigma_max, sigma_min, n):
    """n sigmas from sigma_max to sigma_min, uniform in -log(sigma): the clock
    the reference sampler integrates in for both processes (samplers/methods.py),
    finite at flow's sigma = 1."""
    lo, hi = -math.log(sigma_max), -math.log(sigma_min)
    sig = [math.exp(-(lo + (hi - lo) * k / (n - 1))) for k in range(n)]
    sig[0], sig[-1] = sigma_max, sigma_min
    return sig


def _as_schedule(sig):
    """Python floats (ending before 0) -> float64 tensor ending in 0."""
    return torch.tensor(list(sig) + [0.0], dtype=torch.float64)


def _float32_decreasing(sig):
    """Round to float32 and keep the schedule strictly decreasing."""
    out = torch.tensor(sig, dtype=torch.float32)
    for k in range(1, len(out) - 1):
        if not out[k] < out[k - 1]:
            out[k] = torch.nextafter(out[k - 1], torch.tensor(0.0))
    return out


def _dp_schedule(proc, data_step, grid, xs, ds, x_end, steps):
    """GITS-style search: the `steps`-step path over the grid (ending at 0)
    that minimises the summed RMSE of first-order steps taken from the
    reference trajectory."""
    n = len(grid)            # nodes 0..n-1 are grid sigmas, node n is sigma = 0
    targets = list(xs) + [x_end]
    sig = list(grid) + [0.0]
    inf = math.inf
    cost = [[inf] * (n + 1) for _ in range(n + 1)]
    for i in range(n):
        for j in range(i + 1, n + 1):
            pred = data_step(proc, xs[i], ds[i], sig[i], sig[j])
            cost[i][j] = _rmse(pred, targets[j])
    # best[k][j]: least cost to reach node j in k steps from node 0.
    best = [[inf] * (n + 1) for _ in range(steps + 1)]
    prev = [[-1] * (n + 1) for _ in range(steps + 1)]
    best[0][0] = 0.0
    for k in range(1, steps + 1):
        for j in range(1, n + 1):
            for i in range(j):
                c = best[k - 1][i] + cost[i][j]
                if c < best[k][j]:
                    best[k][j], prev[k][j] = c, i
    path, j = [], n
    for k in range(steps, 0, -1):
        j = prev[k][j]
        path.append(j)
    path.reverse()           # node indices of sigma_0 .. sigma_{steps-1}
    return [sig[i] for i in path]


def optimize(model, x_shape: Sequence[int], sampler_name: str, steps: int, *,
             process="ve", sigma_min: float, sigma_max: float, budget_calls: int = 400,
             seed: int = 0, x: Optional[torch.Tensor] = None, extra_args=None,
             sampler_options=None, reference_steps: Optional[int] = None,
             starts: Optional[Dict[str, Sequence[float]]] = None,
             model_sigma_range: Optional[Tuple[float, float]] = None,
             reference_floor: Optional[float] = None,
             dtype=torch.float32, device="cpu",
             progress: Optional[Callable[[int, int], None]] = None) -> OptimizeResult:
    """Search a `steps`-step schedule from sigma_max to 0 (last nonzero sigma
    >= sigma_min) that minimises `sampler_name`'s error on `model`.

    model(x, sigma_batch, **extra_args) -> denoised, as samplers take it.
    The start x is `x` if given (a latent already at sigma_max, e.g. the
    host's noised latent), else the seed's Gaussian noise of `x_shape` at
    sigma_max. `starts` adds start candidates (name -> steps + 1 sigmas ending
    in 0, e.g. the fixed schedules of the model's table); one that does not
    start at sigma_max or leaves [sigma_min, sigma_max] is not scored.
    `model_sigma_range` (lo, hi): the sigmas the model was trained on; the
    range searched must lie inside it. `reference_floor`: where the reference
    solve stops before its final denoise (default sigma_min / 100; the model
    is called below its sigma_min there; pass sigma_min to forbid that).
    Raises ValueError naming the bad input.
    """
    proc = get_process(process)
    spec = get_sampler(sampler_name)
    if spec.calls_per_step is None or not spec.tunable:
        raise ValueError(
            f"sampler {sampler_name!r} chooses its own steps between sigma_max and sigma_min; "
            f"a schedule cannot be tuned for it (pick another sampler, or tune its range)")
    steps = number("steps", steps, 1, MAX_STEPS, integer=True)
    sigma_max = number("sigma_max", sigma_max, 0.0, proc.sigma_limit, lo_open=True)
    sigma_min = number("sigma_min", sigma_min, 0.0, proc.sigma_limit, lo_open=True)
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")
    if model_sigma_range is not None:
        m_lo, m_hi = (float(v) for v in model_sigma_range)
        where = f"the model's range is [{m_lo:.6g}, {m_hi:.6g}]"
        if sigma_min < m_lo * (1 - 1e-6):
            raise ValueError(f"sigma_min = {sigma_min:.6g} is below the model's smallest "
                             f"sigma: {where}")
        if sigma_max > m_hi * (1 + 1e-6):
            raise ValueError(f"sigma_max = {sigma_max:.6g} is above the model's largest "
                             f"sigma: {where}")
    budget_calls = number("budget_calls", budget_calls, 1, 10 ** 7, integer=True)
    seed = number("seed", seed, 0, 2 ** 64 - 1, integer=True)
    if reference_steps is not None:
        reference_steps = number("reference_steps", reference_steps, max(8, steps), 4096,
                                 integer=True)
    floor = search_cost_floor(sampler_name, steps, reference_steps)
    if budget_calls < floor:
        run = _run_calls(spec, steps)
        raise ValueError(
            f"budget_calls = {budget_calls} is too small for {steps} steps of {sampler_name}: "
            f"the reference takes {floor - 3 * run} calls and each scored run {run}; "
            f"give at least {floor} (a few times that to let the search work)")
    options = dict(sampler_options or {})
    if x is None:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        shape = tuple(int(s) for s in x_shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"x_shape must be a tuple of positive sizes, got {x_shape!r}")
        # Pure noise at sigma_max: x = x0 + sigma n (VE) or (1 - sigma) x0 + sigma n
        # (flow) with x0 = 0, an empty latent.
        noise = torch.randn(shape, generator=gen, dtype=torch.float64)
        x = (noise * sigma_max).to(dtype).to(device)
    counted = _CountingModel(model, budget_calls, progress)
    kwargs = dict(extra_args=extra_args, disable=True, process=process, eta=0.0)

    # 1. The reference trajectory, and a half-resolution solve to estimate its error.
    from ..samplers.methods import data_step  # the DDIM / DPM-Solver++(1) step
    n_ref = reference_steps or REFERENCE_STEPS
    # The answer a schedule is judged by is the ODE's end at sigma = 0, which
    # stopping at sigma_min and denoising misses by O(sigma_min^2) (1e-3 RMSE
    # on the benchmark's Gaussian). The reference therefore goes on below
    # sigma_min; schedule points stay at or above it.
    sigma_floor = sigma_min * REFERENCE_FLOOR if reference_floor is None else number(
        "reference_floor", reference_floor, 0.0, sigma_min, lo_open=True)
    grid = _lam_grid(sigma_max, sigma_floor, n_ref)
    xs, ds = [], []

    def record(info):
        xs.append(info["x"].detach().clone())
        ds.append(info["denoised"].detach().clone())
    ref_fn = get_sampler(REFERENCE_SAMPLER).fn
    x_end = ref_fn(counted, x, _as_schedule(grid), callback=record, **kwargs)
    coarse = _lam_grid(sigma_max, sigma_floor, max(4, n_ref // 2))
    x_coarse = ref_fn(counted, x, _as_schedule(coarse), **kwargs)
    # Order p: the half-resolution error is ~2^p times the full one.
    reference_error = _rmse(x_coarse, x_end) / (2 ** REFERENCE_ORDER - 1)
    reference_calls = counted.calls
    usable = sum(1 for v in grid if v >= sigma_min * (1 - 1e-9))

    run_fn = spec.fn
    evaluations = 0
    cache = {}

    def error(sig):
        nonlocal evaluations
        key = tuple(float(s) for s in _float32_decreasing(sig).tolist())
        if key not in cache:
            out = run_fn(counted, x, _as_schedule(key), **kwargs, **options)
            evaluations += 1
            cache[key] = _rmse(out, x_end)
        return cache[key]

    # 2. Start candidates.
    candidates = {
        "gits_dp": _dp_schedule(proc, data_step, grid[:usable], xs[:usable], ds[:usable],
                                x_end, steps),
        "karras": get_sigmas("karras", steps, sigma_min=sigma_min,
                             sigma_max=sigma_max).tolist()[:-1],
        "lambda_uniform": _lam_grid(sigma_max, sigma_min, steps) if steps > 1
        else [sigma_max],
    }
    for name, sig in (starts or {}).items():
        sig = [float(v) for v in sig]
        fits = (len(sig) == steps + 1 and sig[-1] == 0.0 and
                abs(sig[0] - sigma_max) <= 1e-5 * sigma_max and
                all(sigma_min * (1 - 1e-5) <= v for v in sig[:-1]) and
                all(b < a for a, b in zip(sig, sig[1:])))
        if fits and name not in candidates:
            candidates[name] = [sigma_max] + sig[1:-1]
    start_errors = {}
    try:
        for name, sig in candidates.items():
            start_errors[name] = error(sig)
    except _Budget:
        pass  # the floor pays for the first three; extra starts as the budget allows
    start = min(start_errors, key=start_errors.get)
    best_sig, best_err = list(candidates[start]), start_errors[start]
    history = [(counted.calls, best_err)]

    # 3. Pattern search in lambda on the interior points sigma_1 .. sigma_{steps-1}.
    lam_top = proc.lam(sigma_max)
    lam_bottom = proc.lam(sigma_min)
    lams = [proc.lam(s) for s in best_sig]
    frac = [0.3] * len(lams)
    try:
        while steps > 1 and max(frac[1:]) > 1e-3:
            for k in range(1, len(lams)):
                if frac[k] <= 1e-3:
                    continue
                below = lams[k - 1] if k > 1 else lam_top
                above = lams[k + 1] if k + 1 < len(lams) else lam_bottom
                moved = False
                for target in (lams[k] + frac[k] * (above - lams[k]),
                               lams[k] - frac[k] * (lams[k] - below)):
                    trial = lams[:k] + [target] + lams[k + 1:]
                    sig = [sigma_max] + [proc.sigma_from_lam(v) for v in trial[1:]]
                    err = error(sig)
                    if err < best_err:
                        lams, best_sig, best_err = trial, sig, err
                        history.append((counted.calls, best_err))
                        frac[k] = min(0.6, frac[k] * 1.5)
                        moved = True
                        break
                if not moved:
                    frac[k] *= 0.5
    except _Budget:
        pass  # the search ends with the best schedule found so far

    sigmas = torch.cat([_float32_decreasing(best_sig), torch.zeros(1)])
    return OptimizeResult(sigmas=sigmas, calls=counted.calls, error_before=min(start_errors.values()),
                          error_after=best_err, start=start, start_errors=start_errors,
                          reference_calls=reference_calls, reference_error=reference_error,
                          evaluations=evaluations, history=history)
