"""Accuracy per model call: every sampler x schedule x call budget on exact
denoisers, beside the peers on the same ODE in the same run.

    python -m sampler_lab.bench.accuracy [--quick] [--out DIR]

Problems (no downloaded weights): Gaussian data, whose probability-flow ODE
has a closed-form solution, and the digits data set blurred by a Gaussian
kernel (bandwidth 0.25; its optimal denoiser is closed-form too, and the blur
keeps the end point a continuous function of the start, so one image landing
in another digit's basin does not dominate the error). Both in the VE process
(sigma 14.6 -> 0, the SD 1.x range) and the flow process (sigma 1 -> 0).

Error: RMSE of the final sample against the reference (closed form, or a
2048-step RK4 solve whose convergence tests/test_bench_models.py shows).

Systems:
  ours         every deterministic sampler (eta = 0) x schedule
  k-diffusion  the PyPI host's `comfy.k_diffusion.sampling`, same sigmas (VE)
  optimized    schedules.optimize per sampler and budget (5-12 calls), searched
               on 64 other draws of the same distribution; its search calls are
               a one-time cost, listed in their own table
  host         the host's own sampler x its own schedulers (VE). Flow, which the
               March-2024 host lacks: the k-diffusion functions the newest host
               runs unchanged on flow sigmas, on its flow schedulers
  diffusers    DDIM, PNDM, UniPC, DPM-Solver++ schedulers on the same model
               in its discrete SD 1.x form (VE)
For each system and budget the table keeps its best combination. The
"calls for the same error" tables give, for each error the host's best
combination reaches, the calls it needs over the calls we need.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import torch

from .. import samplers, schedules
from .engine_report import FLOW_SHIFT, VE_RANGE, flow_table, load_host_kdiffusion
from .models import EmpiricalData, GaussianData, digits

BUDGETS = (5, 6, 8, 10, 12, 15, 20, 30, 50)
QUICK_BUDGETS = (5, 8, 10, 15, 20)
SCHEDULES = ("karras", "exponential", "normal", "simple", "align_your_steps", "gits")
HOST_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform")
HOST_SAMPLERS = ("euler", "heun", "lms", "dpm_2", "dpmpp_2s_ancestral", "dpmpp_sde",
                 "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpm_fast")
ADAPTIVE = "dpm_adaptive"


def problems(quick):
    """name -> (process, denoiser, x_T, reference at 0)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for process in ("ve", "flow"):
        s_max = VE_RANGE[1] if process == "ve" else 1.0
        g = GaussianData(0.1, 0.5, process)
        x = _gaussian_start(process, 16, gen)
        out[f"gaussian-{process}"] = (process, g.denoiser, x, g.ode_solution(x, s_max, 0.0))
        if quick and process == "flow":
            continue
        d = EmpiricalData(digits(dtype=torch.float64), process, bandwidth=0.25)
        xd = d.noisy(32, s_max, gen, torch.float64)
        out[f"digits-{process}"] = (process, d.denoiser, xd,
                                    d.reference_solution(xd, s_max, 0.0, steps=2048))
    return out


def _gaussian_start(process, n, gen):
    s_max = VE_RANGE[1] if process == "ve" else 1.0
    x = torch.randn(n, 4, 8, 8, generator=gen, dtype=torch.float64)
    x = x * s_max if process == "ve" else x
    return x + (0.1 if process == "ve" else 0.0)


def calibration_start(pname, problem, n=64):
    """Starts for the schedule search: the test batch's distribution, other
    draws (seed 1000), so the optimized rows are scored on unseen noise."""
    process = problem[0]
    gen = torch.Generator().manual_seed(1000)
    if pname.startswith("gaussian"):
        return _gaussian_start(process, n, gen)
    s_max = VE_RANGE[1] if process == "ve" else 1.0
    d = EmpiricalData(digits(dtype=torch.float64), process, bandwidth=0.25)
    return d.noisy(n, s_max, gen, torch.float64)


def our_sigmas(schedule, process, steps):
    if process == "ve":
        return schedules.get_sigmas(schedule, steps, sigma_min=VE_RANGE[0],
                                    sigma_max=VE_RANGE[1]).double()
    if schedule in ("align_your_steps", "gits"):
        return None  # published for SD1/SDXL noise levels, not flow
    return schedules.get_sigmas(schedule, steps, model_sigmas=flow_table()).double()


class Counter:
    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        return self.model(x, sigma, **kw)


def rmse(a, b):
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def run_within(fn, budget, first_guess):
    """The most steps whose run spends at most `budget` calls -> (calls, out)."""
    n = max(1, first_guess)
    while n >= 1:
        calls, out = fn(n)
        if calls <= budget:
            return calls, out
        n -= 1
    return None, None


def bench_ours(problem, budgets, rows):
    process, model, x, ref = problem
    for name in samplers.SAMPLER_NAMES:
        spec = samplers.get_sampler(name)
        if spec.cfg_pp:  # needs a guided model's unconditional prediction
            continue
        for sched in SCHEDULES:
            for budget in budgets:
                if spec.calls_per_step is None:
                    continue

                def go(n, spec=spec, sched=sched):
                    sig = our_sigmas(sched, process, n)
                    if sig is None:
                        return math.inf, None
                    counter = Counter(model)
                    out = spec.fn(counter, x, sig, process=process, eta=0.0)
                    return counter.calls, out
                calls, out = run_within(go, budget, budget // spec.calls_per_step)
                if out is not None:
                    rows.append(("ours", name, sched, budget, calls, rmse(out, ref)))
    for rtol, atol in ((0.05, 0.0078), (0.01, 0.001), (0.002, 0.0002)):
        counter = Counter(model)
        info = {}
        out = samplers.get_sampler(ADAPTIVE).fn(counter, x, our_sigmas("karras", process, 10),
                                                process=process, rtol=rtol, atol=atol,
                                                info=info)
        for budget in budgets:
            if info["nfe"] <= budget:
                rows.append(("ours", ADAPTIVE, f"rtol={rtol}", budget, info["nfe"],
                             rmse(out, ref)))


OPT_SAMPLERS = ("euler", "heun", "dpmpp_2m", "ipndm", "uni_pc_bh2", "deis")
OPT_BUDGETS = (5, 6, 8, 10, 12)
OPT_SEARCH_CALLS = 800


def sigma_min_of(process):
    return VE_RANGE[0] if process == "ve" else float(flow_table()[0])


def bench_optimized(problem, calib, budgets, rows, searches, samplers_=OPT_SAMPLERS):
    """schedules.optimize per sampler and budget, searched on the calibration
    batch (every fixed schedule of the bench as a start), scored on the test
    batch. `searches` gets (sampler, budget, search calls, estimated error)."""
    process, model, x, ref = problem
    s_max, s_min = (VE_RANGE[1] if process == "ve" else 1.0), sigma_min_of(process)
    for name in samplers_:
        spec = samplers.get_sampler(name)
        for budget in budgets:
            steps = budget // spec.calls_per_step
            if steps < 1:
                continue
            starts = {}
            for sched in SCHEDULES:
                sig = our_sigmas(sched, process, steps)
                if sig is not None:
                    starts[sched] = sig.tolist()
            result = schedules.optimize(model, None, name, steps, process=process,
                                        sigma_min=s_min, sigma_max=s_max,
                                        budget_calls=OPT_SEARCH_CALLS, x=calib,
                                        dtype=torch.float64, starts=starts)
            counter = Counter(model)
            out = spec.fn(counter, x, result.sigmas.double(), process=process, eta=0.0)
            rows.append(("optimized", name, "optimized", budget, counter.calls, rmse(out, ref)))
            searches.append((name, budget, result.calls, result.error_after))


def _host_sampler(kds, name, model, x, sig, n):
    """The host's k-diffusion `name` on sigmas `sig` -> (calls, result)."""
    counter = Counter(model)
    if name == "dpm_fast":
        out = kds.sample_dpm_fast(counter, x, float(sig[-2]), float(sig[0]), n, disable=True)
    else:
        kw = {"eta": 0.0} if samplers.get_sampler(name).stochastic else {}
        if name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):
            kw["noise_sampler"] = lambda a, b: torch.zeros_like(x)
        out = getattr(kds, f"sample_{name}")(counter, x, sig, extra_args={}, disable=True, **kw)
    return counter.calls, out


def _bench_host_samplers(kds, problem, budgets, rows, system, schedule_names, sigmas_for,
                         names=HOST_SAMPLERS):
    process, model, x, ref = problem
    for sched in schedule_names:
        for name in names:
            per_step = samplers.get_sampler(name).calls_per_step
            for budget in budgets:
                def go(n, name=name, sched=sched):
                    return _host_sampler(kds, name, model, x, sigmas_for(sched, n), n)
                try:
                    calls, out = run_within(go, budget, budget // per_step)
                except Exception:  # a host scheduler that cannot give n steps
                    continue
                if out is not None and torch.isfinite(out).all():
                    rows.append((system, name, sched, budget, calls, rmse(out, ref)))


def bench_kdiffusion(kds, problem, budgets, rows):
    """k-diffusion's samplers on our sigmas (VE only: it has no flow process)."""
    if problem[0] != "ve":
        return
    _bench_host_samplers(kds, problem, budgets, rows, "k-diffusion", SCHEDULES,
                         lambda sched, n: our_sigmas(sched, "ve", n))


# Flow: the newest host runs these k-diffusion functions on a flow model's
# sigmas unchanged (its SDE samplers and dpm_fast differ and are left out), on
# the schedulers it offers for a shift-3 flow table.
FLOW_HOST_SAMPLERS = ("euler", "heun", "lms", "dpm_2", "dpmpp_2m")
FLOW_HOST_SCHEDULERS = ("normal", "karras", "exponential", "sgm_uniform", "simple", "beta")


def bench_host(kds, problem, budgets, rows):
    """The host's samplers with the host's own schedulers. VE: the PyPI host's
    own functions and schedulers. Flow (the PyPI host has no flow models):
    its k-diffusion functions that the newest host applies to flow sigmas
    unchanged, on our copies of the host's schedulers over a flow table."""
    if problem[0] != "ve":
        _bench_host_samplers(
            kds, problem, budgets, rows, "host", FLOW_HOST_SCHEDULERS,
            lambda sched, n: schedules.get_sigmas(
                sched, n, model_sigmas=flow_table(), sigma_min=sigma_min_of("flow"),
                sigma_max=1.0).double(),
            names=FLOW_HOST_SAMPLERS)
        return
    import comfy.model_sampling
    import comfy.samplers

    class _Model:  # all the host's schedulers read: an SD 1.x sigma table
        model_sampling = comfy.model_sampling.ModelSamplingDiscrete()

    _bench_host_samplers(
        kds, problem, budgets, rows, "host", HOST_SCHEDULERS,
        lambda sched, n: comfy.samplers.calculate_sigmas_scheduler(_Model(), sched, n).double())


def bench_diffusers(problem, budgets, rows):
    """diffusers' schedulers on the discrete SD 1.x form of the same model
    (eps prediction in VP space: x_vp = x / sqrt(1 + sigma^2))."""
    process, model, x, ref = problem
    if process != "ve":
        return
    try:
        import diffusers
    except ImportError:
        return
    makers = {
        "DDIM": lambda: diffusers.DDIMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            set_alpha_to_one=True, steps_offset=1, clip_sample=False),
        "PNDM": lambda: diffusers.PNDMScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            skip_prk_steps=True, set_alpha_to_one=True, steps_offset=1),
        "UniPC": lambda: diffusers.UniPCMultistepScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            solver_order=3, solver_type="bh2", final_sigmas_type="zero"),
        "DPM++2M": lambda: diffusers.DPMSolverMultistepScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero"),
        "DPM++2M-karras": lambda: diffusers.DPMSolverMultistepScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            algorithm_type="dpmsolver++", solver_order=2, final_sigmas_type="zero",
            use_karras_sigmas=True),
    }
    for label, make in makers.items():
        for budget in budgets:
            def go(n, make=make):
                sched = make()
                sched.set_timesteps(n)
                ac = sched.alphas_cumprod.double()
                sigma0 = float(((1 - ac[sched.timesteps[0]]) / ac[sched.timesteps[0]]).sqrt())
                # the same start: our x_T at sigma_max, moved to diffusers' first level
                x_ve = ref_start(x, VE_RANGE[1], sigma0, model)
                xv = x_ve / math.sqrt(1 + sigma0 ** 2)
                calls = 0
                for t in sched.timesteps:
                    s = float(((1 - ac[t]) / ac[t]).sqrt())
                    x_in = xv * math.sqrt(1 + s * s)
                    d = model(x_in, torch.full((x.shape[0],), s, dtype=torch.float64))
                    calls += 1
                    eps = (x_in - d) / s
                    xv = sched.step(eps, t, xv).prev_sample
                return calls, xv
            calls, out = run_within(go, budget, budget)
            if out is not None and torch.isfinite(out).all():
                rows.append(("diffusers", label, "its own", budget, calls, rmse(out, ref)))


_START_CACHE = {}


def ref_start(x, sigma_from, sigma_to, model):
    """x carried from sigma_from to sigma_to along the ODE (many Euler
    steps in log sigma), so a system starting at a lower sigma starts on the
    same trajectory; cached per target."""
    key = (id(x), round(sigma_to, 9))
    if key not in _START_CACHE:
        if sigma_to >= sigma_from * (1 - 1e-6):  # the same level, up to float32 rounding
            _START_CACHE[key] = x
        else:
            sig = torch.exp(torch.linspace(math.log(sigma_from), math.log(sigma_to), 401,
                                           dtype=torch.float64))
            _START_CACHE[key] = samplers.get_sampler("heun").fn(model, x, sig)
    return _START_CACHE[key]


def best_per_system(rows):
    best = {}
    for system, name, sched, budget, calls, err in rows:
        key = (system, budget)
        if key not in best or err < best[key][2]:
            best[key] = (name, sched, err, calls)
    return best


def calls_to_reach(rows, system, target):
    """The fewest calls with which `system`'s best combination reaches `target`."""
    ok = [calls for s, _, _, _, calls, err in rows if s == system and err <= target]
    return min(ok) if ok else None


def ratio_table(pname, rows, host_budgets=(8, 10, 12, 15, 16, 20, 30)):
    """For each error the host's best combination reaches: the calls it needs
    / the calls Sampler Lab needs (fixed or optimized schedules; the search
    is a one-time cost, reported apart)."""
    lines = [f"## Calls for the same error: {pname}", "",
             "| host's calls | its best RMSE | our calls (any) | ratio | "
             "our calls (fixed schedules only) | ratio |", "|---|---|---|---|---|---|"]
    seen = set()
    for budget in host_budgets:
        target = min((e for s, _, _, _, c, e in rows if s == "host" and c <= budget),
                     default=None)
        host_calls = None if target is None else calls_to_reach(rows, "host", target)
        if host_calls is None or host_calls in seen:
            continue
        seen.add(host_calls)
        cells = []
        for systems in (("ours", "optimized"), ("ours",)):
            need = min((c for s, _, _, _, c, e in rows if s in systems and e <= target),
                       default=None)
            cells += [str(need) if need else "-",
                      f"{host_calls / need:.2f}" if need else "-"]
        lines.append(f"| {host_calls} | {target:.2e} | " + " | ".join(cells) + " |")
    return lines + [""]


README_START = "<!-- accuracy:start (written by python -m sampler_lab.bench.accuracy --readme) -->"
README_END = "<!-- accuracy:end -->"
HEADLINE_BUDGETS = (8, 10, 15, 20)


def headline(all_rows, problem="digits-ve"):
    """Markdown: best RMSE per system at the headline budgets on one problem."""
    rows = all_rows.get(problem, [])
    best = best_per_system(rows)
    systems = [("optimized", "Sampler Lab, optimized schedule"), ("ours", "Sampler Lab"),
               ("host", "ComfyUI core"),
               ("k-diffusion", "k-diffusion"), ("diffusers", "diffusers")]
    lines = [f"Best RMSE per model-call budget on the {problem} problem "
             "(sampler / schedule of the best combination):", "",
             "| calls | " + " | ".join(label for _, label in systems) + " |",
             "|---" * (len(systems) + 1) + "|"]
    for budget in HEADLINE_BUDGETS:
        cells = []
        for system, _ in systems:
            hit = best.get((system, budget))
            cells.append(f"{hit[2]:.2e} ({hit[0]} / {hit[1]})" if hit else "-")
        lines.append(f"| {budget} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme_section(text, readme):
    body = readme.read_text()
    if README_START not in body or README_END not in body:
        raise SystemExit(f"{readme} has no accuracy markers")
    head, rest = body.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_START + "\n" + text + "\n" + README_END + tail)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer budgets and problems")
    p.add_argument("--out", default=None, help="folder for accuracy.md and accuracy.png")
    p.add_argument("--readme", action="store_true",
                   help="also rewrite the headline table in README.md")
    a = p.parse_args(argv)
    budgets = QUICK_BUDGETS if a.quick else BUDGETS
    if a.readme:
        budgets = tuple(sorted(set(budgets) | set(HEADLINE_BUDGETS)))
    t0 = time.time()
    kds = load_host_kdiffusion()
    lines = ["# Accuracy per model call", "",
             "Best RMSE per system and budget (sampler / schedule in brackets). "
             "Reference: closed form (Gaussian) or converged RK4 (digits).", ""]
    all_rows = {}
    ratio_lines = []
    search_lines = ["## Schedule search cost", "",
                    f"Each optimized row: `schedules.optimize` with a budget of "
                    f"{OPT_SEARCH_CALLS} calls on a calibration batch of 64 other draws; "
                    "the calls below are spent once per model, sampler and step count.", "",
                    "| problem | sampler | calls | search calls | estimated RMSE |",
                    "|---|---|---|---|---|"]
    for pname, problem in problems(a.quick).items():
        rows = []
        bench_ours(problem, budgets, rows)
        searches = []
        opt_budgets = tuple(b for b in OPT_BUDGETS if b in budgets) if not a.quick else (8,)
        bench_optimized(problem, calibration_start(pname, problem), opt_budgets, rows,
                        searches, OPT_SAMPLERS if not a.quick else ("dpmpp_2m",))
        search_lines += [f"| {pname} | {n} | {b} | {c} | {e:.2e} |" for n, b, c, e in searches]
        if kds is not None:
            bench_kdiffusion(kds, problem, budgets, rows)
            bench_host(kds, problem, budgets, rows)
        bench_diffusers(problem, budgets, rows)
        all_rows[pname] = rows
        best = best_per_system(rows)
        systems = [s for s in ("optimized", "ours", "k-diffusion", "host", "diffusers")
                   if any(k[0] == s for k in best)]
        lines += [f"## {pname}", "", "| calls | " + " | ".join(systems) + " |",
                  "|---" * (len(systems) + 1) + "|"]
        for budget in budgets:
            cells = []
            for s in systems:
                if (s, budget) in best:
                    name, sched, err, calls = best[(s, budget)]
                    cells.append(f"{err:.2e} ({name} / {sched})")
                else:
                    cells.append("-")
            lines.append(f"| {budget} | " + " | ".join(cells) + " |")
        if ("host", 16) in best or any(k == ("host", b) for b in budgets for k in best):
            host16 = min((e for s, _, _, b, c, e in rows if s == "host" and c <= 16),
                         default=None)
            ours8 = min((e for s, _, _, b, c, e in rows if s == "ours" and c <= 8),
                        default=None)
            if host16 is not None and ours8 is not None:
                need = calls_to_reach(rows, "ours", host16)
                lines += ["", f"Host's best at <= 16 calls: {host16:.2e}; ours at <= 8 "
                              f"calls: {ours8:.2e}; ours reaches the host's 16-call error "
                              f"with {need} calls (goal: 8)."]
        lines.append("")
        if pname.startswith("digits"):
            ratio_lines += ratio_table(pname, rows)
    lines += ratio_lines + search_lines + [""]
    lines.append(f"Total time {time.time() - t0:.0f} s.")
    text = "\n".join(lines)
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "accuracy.md").write_text(text + "\n")
        plot(all_rows, out / "accuracy.png")
    if a.readme:
        cmd = "python -m sampler_lab.bench.accuracy" + (" --quick" if a.quick else "") + \
            " --readme"
        write_readme_section(headline(all_rows) + f"\n\nReproduce: `{cmd}`.",
                             Path(__file__).resolve().parents[1] / "README.md")
    return text


def plot(all_rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(all_rows), figsize=(5 * len(all_rows), 4), squeeze=False)
    for ax, (pname, rows) in zip(axes[0], all_rows.items()):
        for system in ("optimized", "ours", "k-diffusion", "host", "diffusers"):
            pts = {}
            for s, _, _, budget, calls, err in rows:
                if s == system and err > 0:
                    pts[budget] = min(err, pts.get(budget, math.inf))
            if pts:
                b = sorted(pts)
                ax.loglog(b, [pts[k] for k in b], marker="o", label=system)
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
