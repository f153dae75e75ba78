"""`tune`: a sampler fitted to the model in hand at a budget of model calls.

1. Reference. A fine third-order solve (UniPC, uniform steps in log sigma)
   from the calibration noises down to the model's sigma_min, then its
   denoise there: the teacher trajectory (states and predictions at its grid
   points) and the end point every fixed sampler is judged by. States at
   other sigmas come from its dense output (tuning/linear.py).
2. Auto pick. Every deterministic sampler of the registry x every schedule
   that fits `calls` calls: its linear form (no model calls) gives a
   error estimate along the reference (the model linearised around the
   reference path with the identity as its Jacobian); the best few of
   those are run for real on a few calibration images and ranked by their
   RMSE against the reference. The best sampler with one call per grid
   point on each of the best schedules is a start (its table read off
   exactly).
3. Step times. For the best two starts, a pattern search on the interior
   step times against the same estimate (no model calls; schedules/
   optimize.py's search with the estimate in place of real runs) proposes
   one more start each; like every start it is kept only on its real run.
4. Fit. For each start (one per schedule, as many as the budget pays for):
   its own run over the whole calibration batch, then a fitting pass at its
   step times: at step i the model's outputs D_0..D_i at the student's own
   states are known, and the next state is linear in the step's row (c_i,
   W_i0..W_ii), so the row is a least-squares fit to the teacher's state at
   sigma_(i+1) (the last row: to the teacher's end point), ridge-regularised
   toward the start's row with the strength chosen by two-fold
   cross-validation over the images (infinite strength, the start's row, is
   one of the choices), each image weighted so that seeds the start already
   misses badly (another digit) do not dominate. No backpropagation through
   the model (as PAS, Wang et al. 2025; BNS and S4S backpropagate). After
   each run the last row alone is refitted to the end point on that run's
   own predictions, which costs no model call. Every candidate is a real
   run, so its end error is measured, not estimated; the table with the
   lowest end RMSE over the batch wins, the starts included, so on the
   calibration batch the result is never worse than the best start.

Measured on the trained digit networks (bench/tuned.py): the greedy
state-matching pass often loses to its start (a state brought nearer the
teacher's at one step gave predictions that served the later steps worse);
the last-row refit and the searched step times are where the gains come
from.

Every model call counts against `max_evals` in single-image evaluations
(a call on a batch of B is B), the reference included.
"""
import math
import time
from typing import Callable, Optional, Sequence

import torch

from .. import samplers as _samplers
from .. import schedules as _schedules
from ..samplers.process import get_process
from .linear import dense_weights, interp_weights, linear_form
from .sampler import MAX_CALLS, TunedSampler

__all__ = ["tune", "Interrupted", "REFERENCE_STEPS", "candidate_samplers"]

REFERENCE_SAMPLER = "uni_pc"
REFERENCE_STEPS = 48
# The reference's steps are uniform in log(sigma + offset x sigma_max).
# Measured at 48 steps against RK4 with 1024 steps (16 seeds): on the digit
# flow network uniform log sigma left 0.029 RMSE (too few steps where the
# flow leaves pure noise), offset 0.2 0.006; on the eps network log sigma
# is best (0.0025; offsets 0.5 and 2 gave 0.0038 and 0.0071).
REFERENCE_OFFSET = {"ve": 0.0, "flow": 0.2}
SCREEN_IMAGES = 2
LAMBDAS = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, math.inf)
SCREEN_SHARE = 0.3   # of the evaluations left after the reference
MAX_STARTS = 6
SEARCHED_STARTS = 2
SEARCH_EVALS = 150
FIT_MODES = (("all", True, 0.0),)
# Left out of the auto pick: adaptive step counts and samplers that need
# the unconditional prediction (CFG++).
_SKIP = ("dpm_adaptive",)


class Interrupted(Exception):
    """`should_stop()` returned True: tuning stopped; nothing was returned."""


class _Budget(Exception):
    pass


def candidate_samplers():
    """Registry names the auto pick considers (deterministic forms, eta = 0)."""
    return [n for n in _samplers.SAMPLER_NAMES
            if n not in _SKIP and not _samplers.get_sampler(n).cfg_pp
            and _samplers.get_sampler(n).calls_per_step is not None]


class _Model:
    """The denoiser, counted in single-image evaluations; checks its output."""

    def __init__(self, denoiser, dtype, max_evals, progress, should_stop, extra_args):
        self.denoiser, self.dtype = denoiser, dtype
        self.max_evals, self.evals = max_evals, 0
        self.progress, self.should_stop = progress, should_stop
        self.extra_args = extra_args or {}

    def __call__(self, x, sigma):
        if self.should_stop is not None and self.should_stop():
            raise Interrupted("tuning was interrupted")
        n = x.shape[0]
        if self.evals + n > self.max_evals:
            raise _Budget()
        s = torch.full((n,), float(sigma), dtype=self.dtype, device=x.device)
        out = self.denoiser(x.to(self.dtype), s, **self.extra_args)
        self.evals += n
        if not torch.is_tensor(out) or out.shape != x.shape:
            raise ValueError(f"denoiser must return a tensor shaped like its input "
                             f"{tuple(x.shape)}, got "
                             f"{tuple(out.shape) if torch.is_tensor(out) else type(out).__name__}")
        out = out.to(torch.float64)
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"denoiser returned NaN or inf during calibration (at sigma "
                             f"{float(sigma):.6g}); nothing was fitted")
        if self.progress is not None:
            self.progress(self.evals, self.max_evals)
        return out


def _check_int(name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_float(name, value, lo, hi):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in ({lo}, {hi}], got {value!r}") from None
    if not math.isfinite(v) or not lo < v <= hi:
        raise ValueError(f"{name} must be a finite number in ({lo}, {hi}], got {value!r}")
    return v


def _rmse(a, b):
    return float(((a - b) ** 2).mean().sqrt())


def _f32(values):
    """Python floats rounded to float32, strictly decreasing kept."""
    out = torch.tensor(values, dtype=torch.float32)
    for k in range(1, len(out)):
        if out[k] != 0 and not out[k] < out[k - 1]:
            out[k] = torch.nextafter(out[k - 1], torch.tensor(0.0))
    return [float(v) for v in out]


# ----------------------------------------------------------------- candidates

class _Combo:
    __slots__ = ("sampler", "schedule", "sigmas", "states", "calls", "out", "table",
                 "proxy", "error", "aliases")

    def __init__(self, sampler, schedule, sigmas, form):
        self.sampler, self.schedule, self.sigmas = sampler, schedule, sigmas
        self.states, self.calls, self.out = form
        self.table = None
        self.proxy = self.error = None
        self.aliases = []


def _schedule_sigmas(name, steps, smin, smax, model_sampling):
    try:
        sig = _schedules.get_sigmas(name, steps, sigma_min=smin, sigma_max=smax,
                                    model_sampling=model_sampling)
    except (ValueError, TypeError):
        return None
    sig = [float(v) for v in sig.double()]
    inner = sig[:-1] if sig[-1] == 0.0 else sig
    if len(sig) != steps + 1 or sig[-1] != 0.0:
        return None
    if abs(sig[0] - smax) > 1e-4 * smax or min(inner) < smin * (1 - 2e-3) or \
            max(inner) > smax * (1 + 1e-4):
        return None
    return sig


def _table_of(combo, proc):
    """(x0, weights) of a one-call-per-grid-point form, or None."""
    n = len(combo.sigmas) - 1
    if len(combo.calls) != n:
        return None
    for k, (a, b) in enumerate(zip(combo.calls, combo.sigmas[:-1])):
        ok = abs(a - b) <= 1e-6 * b
        # lambda-clock samplers call a flow model at 1 - floor for sigma = 1
        if not ok and k == 0 and b >= 1.0 and getattr(proc, "_alpha_floor", None):
            ok = abs(a - (1.0 - proc._alpha_floor)) <= 1e-9
        if not ok:
            return None
    rows = combo.states[1:] + [combo.out]
    for i, row in enumerate(rows):   # row i: x_(i+1) from x_0 and D_0..D_i
        if any(abs(v) > 1e-12 for v in row[i + 2:]):
            return None
    return [row[0] for row in rows], [row[1:i + 2] for i, row in enumerate(rows)]


def _combos(names, schedule_names, calls, smin, smax, model_sampling, proc):
    """Distinct (sampler, schedule) forms spending at most `calls` calls."""
    out, seen = [], {}
    for sched in schedule_names:
        cache = {}
        for name in names:
            spec = _samplers.get_sampler(name)
            n = max(1, calls // max(1, spec.calls_per_step))
            form = sig = None
            while n >= 1:
                if n not in cache:
                    cache[n] = _schedule_sigmas(sched, n, smin, smax, model_sampling)
                sig = cache[n]
                if sig is not None:
                    form = linear_form(spec.fn, torch.tensor(sig, dtype=torch.float64), proc,
                                       calls)
                    if form is not None:
                        break
                n -= 1
            if form is None:
                continue
            key = (tuple(round(s, 9) for s in form[1]),
                   tuple(round(v, 9) for st in form[0] + [form[2]] for v in st))
            if key in seen:
                seen[key].aliases.append((name, sched))
                continue
            combo = _Combo(name, sched, sig, form)
            combo.table = _table_of(combo, proc)
            seen[key] = combo
            out.append(combo)
    return out


# ----------------------------------------------------------------- the teacher

class _Teacher:
    """The reference trajectory: predictions D[k] at grid[k] (the last grid
    point is sigma_min, D there the end point) and the states re-integrated
    from x_0 through the cubic interpolant of all predictions (a centred,
    fourth-order quadrature). The solver's own states are not used: UniPC
    reports the predictor at each grid point, not its corrected state, and
    that differed from a 400-step RK4 solve by as much as the samplers being
    fitted (0.027 RMSE at sigma 0.39 on the digit flow network)."""

    def __init__(self, grid, xs, ds):
        self.grid, self.ds = grid, ds
        self.end = ds[-1]
        states = [xs[0]]
        for k in range(len(grid) - 1):
            _, a, w = dense_weights(grid, grid[k + 1], k)
            x = states[k] * a
            for m, wm in w.items():
                x = x + ds[m] * wm
            states.append(x)
        self.xs = states

    def state(self, s, idx=None):
        if s == 0.0:
            return self.end if idx is None else self.end[idx]
        k, a, w = dense_weights(self.grid, s)
        pick = (lambda t: t) if idx is None else (lambda t: t[idx])
        out = pick(self.xs[k]) * a
        for m, wm in w.items():
            out = out + pick(self.ds[m]) * wm
        return out

    def denoised(self, s):
        out = None
        for m, wm in interp_weights(self.grid, s).items():
            out = self.ds[m] * wm if out is None else out + self.ds[m] * wm
        return out


def _proxy(combo, teacher, x0, gain=1.0):
    """The combination's end error with the model replaced by its linear
    model around the reference path: D(x, s) ~ D_ref(s) + gain (x - x_ref(s))
    (gain 1: a state error passes into the prediction whole, as it does
    where the model picks the image's mode). Measured on the trained digit
    flow network at 8 calls, 40 random combinations: rank correlation 0.74
    with the real error; without the feedback (the D's exact along the
    path) 0.02, because it lets an error made at high noise fade with
    sigma where in the network it picks another digit."""
    d_p = []

    def form(row):
        acc = x0 * row[0]
        for w, d in zip(row[1:], d_p):
            if w:
                acc = acc + d * w
        return acc
    for k, s in enumerate(combo.calls):
        x_k = form(combo.states[k])
        d_p.append(teacher.denoised(s) + (x_k - teacher.state(s)) * gain)
    err = form(combo.out) - teacher.end
    return _rmse(err, torch.zeros_like(err))


def _search_grid(combo, teacher, x0, proc, calls, sigma_min, sigma_max, evaluations):
    """Step times for the combination's sampler that lower its estimated
    error (`_proxy`, no model calls): coordinate pattern search on the
    interior points in log sigma, each moved a fraction of the gap to a
    neighbour (the order is kept), as schedules/optimize.py searches with
    real runs. -> a new _Combo with a table, or None."""
    spec = _samplers.get_sampler(combo.sampler)
    sig = list(combo.sigmas)
    n = len(sig) - 1
    if n < 3:
        return None
    best_err = combo.proxy
    best = combo
    u = [math.log(v) for v in sig[:-1]]
    frac = [0.3] * n
    spent = 0
    lo_u = math.log(sigma_min)
    while spent < evaluations and max(frac[1:]) > 1e-3:
        for k in range(1, n):
            if frac[k] <= 1e-3 or spent >= evaluations:
                continue
            above = u[k - 1]
            below = u[k + 1] if k + 1 < n else lo_u
            moved = False
            for target in (u[k] + frac[k] * (above - u[k]), u[k] - frac[k] * (u[k] - below)):
                trial = u[:k] + [target] + u[k + 1:]
                trial_sig = [sigma_max] + [math.exp(v) for v in trial[1:]] + [0.0]
                trial_sig = _f32(trial_sig)
                if any(not b < a for a, b in zip(trial_sig, trial_sig[1:])):
                    continue
                spent += 1
                form = linear_form(spec.fn, torch.tensor(trial_sig, dtype=torch.float64),
                                   proc, calls)
                if form is None:
                    continue
                cand = _Combo(combo.sampler, combo.schedule + "+searched", trial_sig, form)
                cand.table = _table_of(cand, proc)
                if cand.table is None:
                    continue
                err = _proxy(cand, teacher, x0)
                if err < best_err:
                    best_err, best, u = err, cand, trial
                    cand.proxy = err
                    frac[k] = min(0.6, frac[k] * 1.5)
                    moved = True
                    break
            if not moved:
                frac[k] *= 0.5
    return None if best is combo else best


# ----------------------------------------------------------------- fitting

def _fit_row(feats, target, prior, folds, image_weights=None):
    """Ridge least squares of `target` on `feats` (a list of [B, ...]
    tensors), pulled toward `prior` with a strength chosen by two-fold
    cross-validation over the images -> (row, lambda). image_weights [B]:
    each image's weight in the squared error."""
    f = torch.stack([t.reshape(t.shape[0], -1) for t in feats])      # [p, B, d]
    y = target.reshape(target.shape[0], -1)
    gram = torch.einsum("pbd,qbd->bpq", f, f)
    rhs = torch.einsum("pbd,bd->bp", f, y)
    yy = (y * y).sum(1)
    if image_weights is not None:
        gram = gram * image_weights[:, None, None]
        rhs = rhs * image_weights[:, None]
        yy = yy * image_weights
    w0 = torch.tensor(prior, dtype=torch.float64)
    scale = torch.diagonal(gram.sum(0)).clamp_min(1e-300)

    def solve(idx, lam):
        g, r = gram[idx].sum(0), rhs[idx].sum(0)
        if math.isinf(lam):
            return w0
        pen = torch.diag(scale * (lam * len(idx) / gram.shape[0]))
        try:
            return torch.linalg.solve(g + pen, r + pen @ w0)
        except RuntimeError:
            return None

    def loss(w, idx):
        g, r = gram[idx].sum(0), rhs[idx].sum(0)
        return float(w @ g @ w - 2 * w @ r + yy[idx].sum())

    best_lam, best = math.inf, math.inf
    if folds is not None:
        a, b = folds
        for lam in LAMBDAS:
            wa, wb = solve(a, lam), solve(b, lam)
            if wa is None or wb is None:
                continue
            score = loss(wa, b) + loss(wb, a)
            if score < best * (1 - 1e-9):
                best, best_lam = score, lam
    else:
        best_lam = 1e-4
    w = solve(list(range(gram.shape[0])), best_lam)
    if w is None or not bool(torch.isfinite(w).all()):
        w = w0
    return [float(v) for v in w], best_lam


def _combine_row(x0, c, row, ds):
    x = x0 * c
    for w, d in zip(row, ds):
        if w:
            x = x + d * w
    return x


def _run_table(model, x0, grid, x0c, weights, refit=None):
    """One run of the table over the batch; with refit(i, ds, x_i) -> row,
    each row is refitted before it is used. -> (end, x0c, weights, ds)."""
    x0c, weights = list(x0c), [list(r) for r in weights]
    ds = []
    x = x0
    for i in range(len(grid) - 1):
        ds.append(model(x, grid[i]))
        if refit is not None:
            row = refit(i, ds, x)
            x0c[i], weights[i] = row[0], row[1:]
        x = _combine_row(x0, x0c[i], weights[i], ds)
    return x, x0c, weights, ds


# ----------------------------------------------------------------- tune

def tune(denoiser: Callable, noise: torch.Tensor, process, calls: int, *,
         sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
         model_sampling=None, start_scale: Optional[float] = None, max_evals: int = 2000,
         reference_steps: Optional[int] = None, seed: int = 0, key: Optional[str] = None,
         sampler_names: Optional[Sequence[str]] = None,
         schedule_names: Optional[Sequence[str]] = None, extra_args=None,
         progress: Optional[Callable[[int, int], None]] = None,
         should_stop: Optional[Callable[[], bool]] = None) -> TunedSampler:
    """Fit a sampler of `calls` model calls per image to `denoiser`.

    denoiser(x, sigma_batch, **extra_args) -> denoised (k-diffusion's
    convention; it closes over the conditioning and CFG). noise: the
    calibration batch of unit noises [B, ...]; the start is
    start_scale x noise (default sigma_max; ComfyUI starts eps models at
    sqrt(1 + sigma_max^2)). process: "ve" / "flow" or a samplers Process.
    The model's sigma range: sigma_min / sigma_max, or the ends of
    `model_sampling` (a schedules.ModelSampling, which the model-dependent
    schedules also read; without it they assume SD 1.x's table for VE and
    are skipped for flow), as schedules.optimize takes them.
    max_evals: the cost cap in single-image model evaluations, the reference
    solve included. reference_steps: the reference's steps (default 48).
    seed: the cross-validation split. key: free text stored in fitted_on.
    sampler_names / schedule_names narrow the auto pick. progress(done,
    total) is called after every model call; should_stop() -> True raises
    `Interrupted` (nothing is returned or written).

    Raises ValueError naming the input: an empty or non-finite noise batch,
    a denoiser output of another shape or with NaN, a budget below what the
    reference and two passes need, a bad range or count."""
    t0 = time.perf_counter()
    proc = get_process(process)
    calls = _check_int("calls", calls, 1, MAX_CALLS)
    max_evals = _check_int("max_evals", max_evals, 1, 10 ** 9)
    seed = _check_int("seed", seed, 0, 2 ** 63 - 1)
    if not torch.is_tensor(noise) or noise.ndim < 2:
        raise ValueError(f"noise must be a tensor [batch, ...] of unit noises, got "
                         f"{tuple(noise.shape) if torch.is_tensor(noise) else type(noise).__name__}")
    if noise.shape[0] < 1 or noise.numel() == 0:
        raise ValueError(f"noise is an empty calibration batch (shape {tuple(noise.shape)}); "
                         f"give at least one image's noise")
    if not noise.is_floating_point() or not bool(torch.isfinite(noise).all()):
        raise ValueError("noise must be a finite floating-point tensor")
    if model_sampling is not None:
        sigma_min = model_sampling.sigma_min if sigma_min is None else sigma_min
        sigma_max = model_sampling.sigma_max if sigma_max is None else sigma_max
    if sigma_max is None and proc.name == "flow":
        sigma_max = 1.0
    if sigma_min is None or sigma_max is None:
        raise ValueError("sigma_min and sigma_max (the model's sigma range) are needed, or "
                         "model_sampling")
    sigma_max = _check_float("sigma_max", sigma_max, 0.0, proc.sigma_limit)
    sigma_min = _check_float("sigma_min", sigma_min, 0.0, proc.sigma_limit)
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min ({sigma_min}) must be below sigma_max ({sigma_max})")
    start_scale = sigma_max if start_scale is None else _check_float(
        "start_scale", start_scale, 0.0, 1e6)
    r_steps = REFERENCE_STEPS if reference_steps is None else _check_int(
        "reference_steps", reference_steps, 8, 4096)
    names = candidate_samplers() if sampler_names is None else list(sampler_names)
    for n in names:
        _samplers.get_sampler(n)
    sched_names = [s for s in (_schedules.SCHEDULE_NAMES if schedule_names is None
                               else schedule_names) if s != "custom"]
    if model_sampling is None and proc.name == "flow":
        sched_names = [s for s in sched_names
                       if not _schedules.get_schedule(s).needs_model_sigmas]

    b = noise.shape[0]
    n_screen = min(SCREEN_IMAGES, b)
    ref_cost = b * (r_steps + 1)
    pass_cost = b * calls
    floor = ref_cost + 2 * pass_cost
    if max_evals < floor:
        raise ValueError(
            f"max_evals = {max_evals} is below what tuning needs for {b} calibration images at "
            f"{calls} calls: the reference takes {ref_cost} ({r_steps + 1} calls on {b} images) "
            f"and the start's run and one fitting pass {pass_cost} each; give at least "
            f"{floor}, or fewer calibration images or reference_steps")

    model = _Model(denoiser, noise.dtype, max_evals, progress, should_stop, extra_args)
    x0 = noise.to(torch.float64) * start_scale

    # 1. The reference.
    off = REFERENCE_OFFSET.get(proc.name, 0.0) * sigma_max
    hi, lo = math.log(sigma_max + off), math.log(sigma_min + off)
    grid = [math.exp(hi + (lo - hi) * k / r_steps) - off for k in range(r_steps + 1)]
    grid[0], grid[-1] = sigma_max, sigma_min
    xs, ds = [], []

    def record(info):
        xs.append(info["x"].to(torch.float64))
        ds.append(info["denoised"].to(torch.float64))

    def ref_model(x, s, **kw):
        return model(x, float(s.reshape(-1)[0]))
    x_last = _samplers.get_sampler(REFERENCE_SAMPLER).fn(
        ref_model, x0, torch.tensor(grid, dtype=torch.float64), process=proc, eta=0.0,
        callback=record, disable=True)
    xs.append(x_last)
    ds.append(model(x_last, sigma_min))
    teacher = _Teacher(grid, xs, ds)
    ref_evals = model.evals

    # 2. Auto pick.
    combos = _combos(names, sched_names, calls, sigma_min, sigma_max, model_sampling, proc)
    if not combos:
        raise ValueError(f"no sampler x schedule of the auto pick fits {calls} calls on this "
                         f"model's range")
    for combo in combos:
        combo.proxy = _proxy(combo, teacher, x0)
    combos.sort(key=lambda c: c.proxy)
    avail = max_evals - model.evals - 2 * pass_cost
    per_screen = n_screen * calls
    k_screen = max(1, min(len(combos), int(SCREEN_SHARE * avail) // per_screen))
    screened = combos[:k_screen]
    tabled = [c for c in combos if c.table is not None]
    if not tabled:
        raise ValueError("no sampler of the auto pick has one model call per step here; "
                         "nothing to start from")
    if not any(c.table is not None for c in screened):
        screened = screened[:max(1, k_screen - 1)] + tabled[:1]
    xs_screen = x0[:n_screen]
    end_screen = teacher.end[:n_screen]

    def screen_model(x, s, **kw):
        return model(x, float(s.reshape(-1)[0]))
    for combo in screened:
        if model.evals + per_screen + 2 * pass_cost > max_evals:
            break
        out = _samplers.get_sampler(combo.sampler).fn(
            screen_model, xs_screen, torch.tensor(combo.sigmas, dtype=torch.float64),
            process=proc, eta=0.0, disable=True)
        combo.error = _rmse(out.to(torch.float64), end_screen)
    ranked = sorted((c for c in screened if c.error is not None), key=lambda c: c.error)
    # one start per schedule: on one grid the fit ends at the same table
    # whichever sampler it starts from (measured), so the starts are the
    # step-time candidates
    starts, grids = [], set()
    for c in [c for c in ranked if c.table is not None] or tabled[:1]:
        if c.schedule not in grids:
            grids.add(c.schedule)
            starts.append(c)

    # 3. Fit each of the best starts at its step times (2 passes each: its
    # own run on the whole batch, then the fitting pass); keep the best.
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(b, generator=gen).tolist()
    folds = (perm[: b // 2], perm[b // 2:]) if b >= 2 else None
    # step times searched on the estimate for the best starts (no model
    # calls; each kept only if its real run is better, like every start)
    searched = []
    for c in starts[:SEARCHED_STARTS]:
        found = _search_grid(c, teacher, x0, proc, calls, sigma_min, sigma_max, SEARCH_EVALS)
        if found is not None:
            searched.append(found)
    starts = starts[:1] + searched + starts[1:]
    per_start = (1 + len(FIT_MODES)) * pass_cost
    n_starts = max(1, min(len(starts), MAX_STARTS, (max_evals - model.evals) // per_start))
    fits = []
    for base in starts[:n_starts]:
        sig = _f32(base.sigmas)
        sig[0] = float(torch.tensor(sigma_max, dtype=torch.float32))
        targets = [teacher.state(s) for s in sig[1:]]
        prior_c, prior_w = base.table

        n_rows = len(sig) - 1

        def make_refit(first, weights, keep):
            def refit(i, dlist, x_i):
                prior = [prior_c[i]] + list(prior_w[i])
                if i < first:
                    return prior
                target = targets[i]
                if keep and i > 0:
                    # ask the step for its own truncation error only, not to
                    # undo the deviation it inherits (which, with the model's
                    # Jacobian near the identity, the exact flow would keep)
                    target = target + (x_i - targets[i - 1]) * keep
                row, _ = _fit_row([x0] + dlist, target, prior, folds, weights)
                return row
            return refit

        def consider(entry, label, c_tab, w_tab, ds, weights):
            """The run's table, and the same with its last row refitted to the
            end point on the run's own predictions (no model calls)."""
            end = _combine_row(x0, c_tab[-1], w_tab[-1], ds)
            err = _rmse(end, teacher.end)
            entry[4].append((label, err))
            if err < entry[3][0]:
                entry[3] = (err, list(c_tab), [list(r) for r in w_tab])
            row, _ = _fit_row([x0] + ds, teacher.end, [c_tab[-1]] + list(w_tab[-1]), folds,
                              weights)
            end = _combine_row(x0, row[0], row[1:], ds)
            err_last = _rmse(end, teacher.end)
            entry[4].append((label + "+last", err_last))
            if err_last < entry[3][0]:
                entry[3] = (err_last, list(c_tab[:-1]) + [row[0]],
                            [list(r) for r in w_tab[:-1]] + [row[1:]])
        try:
            end, c0, w0, ds0 = _run_table(model, x0, sig, prior_c, prior_w)
            err0 = _rmse(end, teacher.end)
            per = ((end - teacher.end) ** 2).flatten(1).mean(1).sqrt()
            robust = 1.0 / torch.maximum(per, per.median()).clamp_min(1e-12) ** 2
            robust = robust / robust.mean()
            entry = [base, sig, err0, (err0, c0, w0), []]
            fits.append(entry)
            consider(entry, "start", c0, w0, ds0, robust)
            for mode in FIT_MODES:
                first = {"all": 0, "tail": n_rows // 2, "last": n_rows - 1}[mode[0]]
                weights = robust if mode[1] else None
                end, c1, w1, ds1 = _run_table(model, x0, sig, prior_c, prior_w,
                                              make_refit(first, weights, mode[2]))
                consider(entry, "fit " + "/".join(map(str, mode)), c1, w1, ds1, weights)
        except _Budget:
            break
    if not fits:
        raise ValueError(f"max_evals = {max_evals} left no room for a start's run; raise it")
    start = min(fits, key=lambda f: f[2])          # the best start on the whole batch
    best = min(fits, key=lambda f: f[3][0])        # the best fitted table
    base, sig = best[0], best[1]
    err_after, c_tab, w_tab = best[3]

    seconds = time.perf_counter() - t0
    ranking = tuple((c.sampler, c.schedule, c.error) for c in ranked)
    return TunedSampler(
        proc.name, sig, c_tab, w_tab, start_scale,
        base={"sampler": base.sampler, "schedule": base.schedule, "error": best[2]},
        ranking=ranking[:20],
        errors={"before": start[2], "after": err_after, "images": b,
                "screen_images": n_screen,
                "starts": [[f[0].sampler, f[0].schedule, f[2], f[3][0]] for f in fits],
                "modes": [f[4] for f in fits]},
        cost={"evals": model.evals, "reference_evals": ref_evals, "seconds": seconds,
              "reference_steps": r_steps, "screened": len(ranked), "candidates": len(combos)},
        fitted_on={"images": b, "seed": seed, "process": proc.name, "sigma_min": sigma_min,
                   "sigma_max": sigma_max, "shape": list(noise.shape[1:]),
                   "key": key or ""})
