"""The report's pages on the trained digit networks (bench/networks.py):
pictures and numbers a user reads to choose a sampler.

* An image grid per network: samplers (deterministic, ancestral, SDE) x step
  counts, one seed; the 28x28 image is the decoded picture ([-1, 1] -> grey).
* Convergence: each sampler's distance to its own 100-step image as steps
  grow (stochastic ones on a Brownian path of the seed, so they converge too).
* Error vs model calls against a converged reference solve, ours beside the
  core's samplers on its schedulers and diffusers.
* Time per image.
* For stochastic samplers, the Frechet distance to the held-out digits in
  the features of a digit classifier (bench/classifier.py says why).

Everything here is called by bench/engine_report.py (`python -m sampler_lab
report`); the functions take their sizes as arguments so that a test can run
them small.
"""
import math
import time
from pathlib import Path

import torch

from .. import samplers, schedules

NETS = ("digits-eps", "digits-flow")
# (sampler, kind): the kinds are drawn side by side.
GRID_SAMPLERS = (("euler", "deterministic"), ("dpmpp_2m", "deterministic"),
                 ("uni_pc_bh2", "deterministic"), ("euler_ancestral", "ancestral"),
                 ("dpmpp_2s_ancestral", "ancestral"), ("dpmpp_2m_sde", "SDE"),
                 ("er_sde", "SDE"))
GRID_STEPS = (4, 8, 16, 32, 100)
# The schedule a user of each model family would pick in the core.
GRID_SCHEDULE = {"digits-eps": "karras", "digits-flow": "simple"}
STYLE = {"deterministic": "-", "ancestral": "--", "SDE": ":"}
# Error vs calls (a reduced bench; bench/accuracy.py runs everything): ours
# and the core's samplers of the same names on some of its schedulers.
CALL_SAMPLERS = ("euler", "dpmpp_2m", "ipndm", "uni_pc_bh2")
CALL_SCHEDULES = ("karras", "exponential", "simple", "beta57")
CORE_CALL_SCHEDULERS = ("normal", "karras", "exponential", "simple", "beta")
CALL_BUDGETS = (5, 8, 12, 16, 24)
DIST_STEPS = 16


def _load(name):
    from .networks import load_network
    return load_network(name)


def _start(net, n, seed):
    from .accuracy import txt2img_start
    return txt2img_start(net, n, seed)


def _sampling(net):
    from .accuracy import network_sampling
    return network_sampling(net)


def sample(net, name, steps, x, seed, schedule=None, eta=None):
    """`name` (its default eta: stochastic ones add noise) for `steps` steps
    of the model's grid schedule from x, noise on the seed's Brownian path."""
    sampling, proc = _sampling(net)
    sig = schedules.get_sigmas(schedule or GRID_SCHEDULE[net.name], steps,
                               model_sampling=sampling).double()
    spec = samplers.get_sampler(name)
    eta = spec.default_eta if eta is None else eta
    noise = samplers.BrownianNoise(x, float(sig[sig > 0].min()), float(sig[0]), seed=seed) \
        if eta > 0 else None
    with torch.no_grad():
        return spec.fn(net, x, sig, process=proc, eta=eta, noise=noise)


def run_grid(net, n_images, seed, steps=GRID_STEPS, names=GRID_SAMPLERS, tick=None):
    """{sampler: {steps: images}}, {sampler: {steps: seconds}}."""
    x = _start(net, n_images, seed)
    images, seconds = {}, {}
    for name, _ in names:
        images[name], seconds[name] = {}, {}
        for n in steps:
            t0 = time.perf_counter()
            images[name][n] = sample(net, name, n, x, seed).float()
            seconds[name][n] = time.perf_counter() - t0
            if tick:
                tick()
    return images, seconds


def to_grey(img):
    """[1, 28, 28] in [-1, 1] -> uint8 [28, 28] (the decode of these models)."""
    return ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def tile(images, cols):
    """[N, 1, 28, 28] -> one uint8 picture, `cols` digits per row, 2 px gaps."""
    import numpy as np
    n = images.shape[0]
    rows = math.ceil(n / cols)
    out = np.full((rows * 30 - 2, cols * 30 - 2), 0, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        out[r * 30:r * 30 + 28, c * 30:c * 30 + 28] = to_grey(images[k])
    return out


def plot_grid(images, names, steps, title, path, cols=4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n_img = next(iter(next(iter(images.values())).values())).shape[0]
    cols = min(cols, n_img)
    rows_per = math.ceil(n_img / cols)
    fig, axes = plt.subplots(len(names), len(steps),
                             figsize=(1.25 * cols * len(steps), 1.25 * rows_per * len(names) + 0.6),
                             squeeze=False)
    for i, (name, kind) in enumerate(names):
        for j, n in enumerate(steps):
            ax = axes[i][j]
            ax.imshow(tile(images[name][n], cols), cmap="gray", vmin=0, vmax=255,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"{n} steps", fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{name}\n({kind})", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # keeps the title above the column labels
    fig.savefig(path, dpi=80)
    plt.close(fig)


def convergence(images, steps):
    """{sampler: [RMSE of the n-step images to the sampler's own last-step
    images for each n but the last]}."""
    last = steps[-1]
    return {name: [float(((by[n] - by[last]) ** 2).mean().sqrt()) for n in steps[:-1]]
            for name, by in images.items()}


def plot_lines(series, xs, kinds, title, xlabel, ylabel, path, logx=True):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in series.items():
        pts = [(x, y) for x, y in zip(xs[name] if isinstance(xs, dict) else xs, ys)
               if y is not None and y > 0]
        if pts:
            ax.plot(*zip(*pts), STYLE.get(kinds.get(name, ""), "-"), marker="o",
                    markersize=3, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ------------------------------------------------------------ error vs calls

def calls_bench(net, batch, seed, reference_steps, budgets=CALL_BUDGETS, core=None,
                names=CALL_SAMPLERS, scheds=CALL_SCHEDULES, cache_dir=None, tick=None):
    """A reduced accuracy bench on the network -> (rows, note): ours and the
    core's samplers of the same names (on its schedulers) and diffusers,
    against RK4 with `reference_steps` steps (checked on 4 images against
    half the steps)."""
    from . import accuracy as A
    problem = A.trained_problem(net.name, batch=batch, seed=seed,
                                reference_steps=reference_steps,
                                check_steps=reference_steps // 2, check_batch=min(4, batch),
                                core=core, cache_dir=cache_dir)
    rows = []
    ours_scheds, _ = A.schedules_for(problem, scheds)
    combos = A.our_combos(problem, names, ours_scheds)
    if core is not None and (problem.process == "ve" or core.has_flow):
        combos += A.host_combos(core, problem, [n for n in names if n in core.samplers],
                                include_nodes=False, schedulers=CORE_CALL_SCHEDULERS)
    progress = (lambda k: tick()) if tick else None
    A.evaluate(combos, problem, budgets, rows, progress=progress)
    A.bench_diffusers(problem, budgets, rows, progress=progress)
    return rows, problem.notes[0] if problem.notes else ""


def plot_calls(rows, title, path):
    """Best RMSE per budget for each system, and ours per sampler (thin)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for system, label, style in (("ours", "Sampler Lab (best)", "-"),
                                 ("host", "ComfyUI core (best)", "--"),
                                 ("diffusers", "diffusers (best)", ":")):
        best = {}
        for r in rows:
            if r[0] == system:
                best[r[4]] = min(r[5], best.get(r[4], math.inf))
        if best:
            xs = sorted(best)
            ys, run = [], math.inf
            for x_ in xs:  # the best error with at most x calls
                run = min(run, best[x_])
                ys.append(run)
            ax.plot(xs, ys, style, marker="o", linewidth=2, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("model calls")
    ax.set_ylabel("RMSE vs reference")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def calls_table(rows, budgets):
    from .accuracy import best_per_system
    best = best_per_system(rows)
    systems = [("ours", "Sampler Lab"), ("host", "ComfyUI core"), ("diffusers", "diffusers")]
    lines = ["| calls | " + " | ".join(lab for _, lab in systems) + " |",
             "|---" * (len(systems) + 1) + "|"]
    for b in budgets:
        cells = []
        for s, _ in systems:
            hit = best.get((s, b))
            cells.append("-" if not hit else
                         f"{hit[2]:.2e} [{hit[4]:.1e}, {hit[5]:.1e}] ({hit[0]} / {hit[1]})")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------ distribution

def distribution(net, n, seed, steps=DIST_STEPS, names=GRID_SAMPLERS, tick=None):
    """Frechet distance in classifier features of n samples per sampler (its
    default noise) to the held-out digits, and the floor: n training digits
    against the same held-out digits -> ({sampler: fd}, floor, seconds)."""
    from .classifier import features, frechet_distance
    from .networks import mnist_digits
    held = features(mnist_digits("heldout"))
    gen = torch.Generator().manual_seed(seed)
    train = mnist_digits("train")
    floor = frechet_distance(features(train[torch.randperm(len(train), generator=gen)[:n]]),
                             held)
    x = _start(net, n, seed + 1)
    out, secs = {}, {}
    for name, _ in names:
        t0 = time.perf_counter()
        imgs = sample(net, name, steps, x, seed + 1)
        secs[name] = time.perf_counter() - t0
        out[name] = frechet_distance(features(imgs), held)
        if tick:
            tick()
    return out, floor, secs
