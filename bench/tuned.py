"""The tuned sampler (tuning/) beside the newest ComfyUI core's best, on the
trained networks, measured only on seeds the tuner never saw.

    COMFYUI_DIR=<newest ComfyUI> python -m sampler_lab.bench.tuned
        [--nets digits-eps,digits-flow] [--calib 16] [--held 32] [--fd 250]
        [--max-evals 2000] [--out DIR] [--readme]

Per network:
  calibration   `tuning.tune` on seed set A (unit noises of seed 1000, --calib
                images) at each budget of TUNED_BUDGETS, at most --max-evals
                single-image model evaluations each, its reference included;
                the wall time is measured on this machine's threads.
  held-out      seed set B (seed 0, --held images), the start the core's
                KSampler gives (sqrt(1 + sigma_max^2) n for eps, n for flow),
                against a converged reference (RK4 in log sigma, --ref-steps
                steps, then the denoise at sigma_min, as bench/accuracy.py).
  the core      every sampler name of the core (deterministic forms, CFG++
                left out) x its schedulers at CORE_BUDGETS, through its own
                functions (bench/hosts.py; the newest core where COMFYUI_DIR
                names it), screened on 4 images, the best 4 per budget on the
                whole held-out batch (bench/accuracy.evaluate).
  the ratio     for each tuned budget c, the fewest core calls whose best
                error is at most the tuned sampler's held-out error, over c
                (the goal: >= 2 for c = 4..12, >= 1.5 at 16); and for each core
                budget c, the tuned calls that reach the core's best error.
  calibration   the tuned sampler's error on its own calibration seeds against
   vs held-out  their converged reference, beside the held-out error.
  Frechet       --fd samples (seed set C, seed 2000) of the tuned sampler and
   distance     of the core's best combination at the same calls, in the
                digit classifier's features against the held-out digits
                (bench/classifier.py).

A network is a row of NETWORKS: name -> builder (see `Net`); the class-
conditional network is one more row.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from .. import tuning
from . import accuracy as A

TUNED_BUDGETS = (2, 3, 4, 5, 6, 8, 10, 12, 16)
GOAL_BUDGETS = (4, 5, 6, 8, 10, 12, 16)
CORE_BUDGETS = (4, 5, 6, 8, 10, 12, 16, 20, 24, 32)
OUT_DEFAULT = Path(__file__).resolve().parent / "out" / "tuned"
README_START = "<!-- tuned:start (written by python -m sampler_lab.bench.tuned --readme) -->"
README_END = "<!-- tuned:end -->"
CALIB_SEED, HELD_SEED, FD_SEED = 1000, 0, 2000
PICTURE_CALLS = 6


class Net(NamedTuple):
    """A benchmark network: `denoiser(split, n)` -> the k-diffusion denoiser
    for the first n images of a split ("calib", "held", "fd"; a conditional
    network closes over each split's labels and its CFG); `noise(split, n)`
    -> unit noises; process (a samplers Process with the model's maps),
    sampling (schedules.ModelSampling), start_scale, sigma range; `digest`
    names the weights in cache keys; `heldout_images` -> the data the
    Frechet distance compares with."""
    name: str
    denoiser: Callable
    noise: Callable
    process: object
    sampling: object
    start_scale: float
    sigma_min: float
    sigma_max: float
    digest: str
    heldout_images: Callable


SEEDS = {"calib": CALIB_SEED, "held": HELD_SEED, "fd": FD_SEED}


def unconditional(name):
    """An unconditional trained network of bench/networks.py."""
    def build():
        from .networks import load_network
        net = load_network(name)
        sampling, proc = A.network_sampling(net)

        def noise(split, n):
            return torch.randn(n, *net.shape, generator=torch.Generator().manual_seed(
                SEEDS[split]), dtype=torch.float64).float()
        scale = math.sqrt(1 + net.sigma_max ** 2) if net.process == "ve" else 1.0
        return Net(name, lambda split, n: net, noise, proc, sampling, scale, net.sigma_min,
                   net.sigma_max, A._weights_digest(net), lambda: net.heldout())
    return build


COND_CFG = 3.0  # the guidance scale the conditional network is benchmarked at


def conditional(name, cfg=COND_CFG):
    """The class-conditional network (digits-cond) sampled with CFG `cfg`:
    the calibration split asks for the digits of CALIBRATION_CLASSES (0-4),
    the held-out and Frechet splits for HELDOUT_CLASSES (5-9) only, each
    image i of a split the class classes[i % 5]; the Frechet distance
    compares with the held-out digits of those classes. A call is one
    guided prediction (two network evaluations, as a host's CFG batch)."""
    def build():
        from .networks import CALIBRATION_CLASSES, HELDOUT_CLASSES, class_labels, load_network
        base = unconditional(name)()
        net = load_network(name)
        classes = {"calib": CALIBRATION_CLASSES, "held": HELDOUT_CLASSES,
                   "fd": HELDOUT_CLASSES}

        def denoiser(split, n):
            # prefix: callers run the first k images of a split on their own
            return net.guided(class_labels(n, classes[split]), cfg, prefix=True)

        def heldout_images():
            keep = torch.isin(net.heldout_labels(), torch.tensor(HELDOUT_CLASSES))
            return net.heldout()[keep]
        return base._replace(denoiser=denoiser, heldout_images=heldout_images)
    return build


# name -> builder
NETWORKS = {"digits-eps": unconditional("digits-eps"),
            "digits-flow": unconditional("digits-flow"),
            "digits-cond": conditional("digits-cond")}


# ----------------------------------------------------------------- references

def reference(model, x, sigma_max, sigma_min, steps):
    """RK4 in log sigma from sigma_max to sigma_min, then the denoise there
    (TrainedDenoiser.reference_solution for any denoiser)."""
    from .models import rk4_log_sigma

    def f(x_, t):
        s = torch.full((x_.shape[0],), math.exp(t), dtype=torch.float64)
        return x_ - model(x_, s).double()
    with torch.no_grad():
        xd = rk4_log_sigma(f, x.double(), sigma_max, sigma_min, steps)
        return model(xd, torch.full((x.shape[0],), sigma_min, dtype=torch.float64)).double()


def cached(path, make):
    path = Path(path)
    if path.is_file():
        return torch.load(path)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return value


def held_problem(net, n, ref_steps, cache_dir, core=None):
    """The held-out batch as a bench/accuracy Problem (for the core's rows)."""
    x = net.noise("held", n).double() * net.start_scale
    model = net.denoiser("held", n)
    ref = cached(Path(cache_dir) / f"{net.name}-{net.digest}-held{HELD_SEED}-n{n}-rk4_{ref_steps}.pt",
                 lambda: reference(model, x, net.sigma_max, net.sigma_min, ref_steps))
    core_ms = None
    if core is not None:
        core_ms = core.model_sampling(net.process.name, getattr(net.sampling, "shift", 3.0))
    return A.Problem(net.process.name, model, x, ref, sampling=net.sampling, proc=net.process,
                     core_ms=core_ms, sigma_min=net.sigma_min, sigma_max=net.sigma_max,
                     is_trained=True)


# ----------------------------------------------------------------- rows

def core_rows(core, problem, budgets, cache_file, screen=4, top=4, names=None, progress=None):
    """The core's best combinations per budget (bench/accuracy rows), cached
    in `cache_file` by the core, the batch and the budgets."""
    key = {"core": core.label, "budgets": list(budgets), "n": int(problem.x.shape[0]),
           "screen": screen, "top": top, "names": list(names or [])}
    path = Path(cache_file)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return [tuple(r) for r in saved["rows"]]
    rows = []
    A.bench_host(core, problem, budgets, rows, names=names, screen=screen, top=top,
                 progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "rows": rows}))
    return rows


def best_core(rows, budget):
    """(error, calls, sampler, schedule) of the core's best within `budget`."""
    hits = [r for r in rows if r[0] == "host" and r[4] <= budget]
    if not hits:
        return None
    r = min(hits, key=lambda r: (r[5], r[4]))
    return r[5], r[4], r[1], r[2]


def core_calls_for(rows, target):
    ok = [r[4] for r in rows if r[0] == "host" and A.reaches(r[5], target)]
    return min(ok) if ok else None


def tune_one(net, n_calib, calls, max_evals, seed=0):
    noise = net.noise("calib", n_calib)
    t0 = time.perf_counter()
    ts = tuning.tune(net.denoiser("calib", n_calib), noise, net.process, calls,
                     model_sampling=net.sampling, sigma_min=net.sigma_min,
                     sigma_max=net.sigma_max, start_scale=net.start_scale,
                     max_evals=max_evals, seed=seed, key=f"bench {net.name}")
    return ts, time.perf_counter() - t0


def run_tuned(ts, model, x):
    with torch.no_grad():
        return ts.sampler_function()(model, x, ts.sigmas_tensor()).double()


def tuned_rows(net, budgets, problem, n_calib, max_evals, calib_ref=None, progress=None):
    """Per budget: the tuned sampler, its held-out metrics, its calibration
    RMSE against `calib_ref` (converged), its cost."""
    out = {}
    x_cal = net.noise("calib", n_calib).double() * net.start_scale
    for c in budgets:
        ts, secs = tune_one(net, n_calib, c, max_evals)
        held = A.metrics(run_tuned(ts, problem.model, problem.x), problem.ref)
        cal = None
        if calib_ref is not None:
            cal = A.metrics(run_tuned(ts, net.denoiser("calib", n_calib), x_cal), calib_ref)
        out[c] = {"table": ts.to_dict(), "held": held, "calib": cal, "seconds": secs,
                  "evals": ts.cost["evals"], "base": ts.base, "errors": ts.errors}
        if progress:
            progress(1)
    return out


def frechet(net, ts_by_calls, rows, core, budgets, n):
    """FD to the held-out digits of n samples: tuned vs the core's best
    combination at the same calls -> {c: (fd_tuned, fd_core, core combo)}."""
    from .classifier import features, frechet_distance
    held = features(net.heldout_images())
    x = net.noise("fd", n).double() * net.start_scale
    model = net.denoiser("fd", n)
    ms = core.model_sampling(net.process.name, getattr(net.sampling, "shift", 3.0))
    out = {}
    for c in budgets:
        b = best_core(rows, c)
        if b is None or c not in ts_by_calls:
            continue
        _, calls, name, sched = b
        combos = [cb for cb in A.host_combos(core, A.Problem(
            net.process.name, model, x, x, sampling=net.sampling, proc=net.process, core_ms=ms,
            sigma_min=net.sigma_min, sigma_max=net.sigma_max, is_trained=True), [name])
            if cb.sched == sched]
        n_steps, _ = A.fit_steps(combos[0], c, net.process.name, {})
        with torch.no_grad():
            core_imgs = combos[0].run(model, x, n_steps)
        ts = tuning.TunedSampler.from_dict(ts_by_calls[c])
        tuned_imgs = run_tuned(ts, model, x)
        out[c] = (frechet_distance(features(tuned_imgs), held),
                  frechet_distance(features(core_imgs.double()), held), f"{name} / {sched}")
    return out


# ----------------------------------------------------------------- tables

def ratio_lines(name, rows, tuned, fd=None):
    """The markdown table for one network."""
    lines = [f"**{name}** (held-out seeds; RMSE against the converged reference)", "",
             "| calls c | tuned RMSE [median, p90] | start (its sampler / schedule) | "
             "core's best at c | core calls for the tuned RMSE | ratio | tuned calls for the "
             "core's RMSE at c | ratio | calibration RMSE | held / calib | FD tuned | FD core |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in GOAL_BUDGETS:
        if c not in tuned:
            continue
        t = tuned[c]
        err, med, p90 = t["held"]
        core_c = best_core(rows, c)
        need = core_calls_for(rows, err)
        most = max((r[4] for r in rows if r[0] == "host"), default=0)
        ratio = f"{need / c:.2f}" if need else f"> {most / c:.2f}"
        rev = "-"
        rev_ratio = "-"
        if core_c is not None:
            hits = [k for k in sorted(tuned) if A.reaches(tuned[k]["held"][0], core_c[0])]
            if hits:
                rev, rev_ratio = str(hits[0]), f"{c / hits[0]:.2f}"
            else:
                rev, rev_ratio = f"> {c}", "< 1"
        cal = t["calib"][0] if t["calib"] else None
        fd_t = fd_c = "-"
        if fd and c in fd:
            fd_t, fd_c = f"{fd[c][0]:.2f}", f"{fd[c][1]:.2f} ({fd[c][2]})"
        base = t["base"]
        lines.append(
            f"| {c} | {err:.2e} [{med:.1e}, {p90:.1e}] | {base['sampler']} / {base['schedule']} "
            f"| " + (f"{core_c[0]:.2e} ({core_c[2]} / {core_c[3]})" if core_c else "-") +
            f" | {need or '-'} | {ratio} | {rev} | {rev_ratio} | "
            + (f"{cal:.2e}" if cal else "-") + " | " + (f"{err / cal:.2f}" if cal else "-") +
            f" | {fd_t} | {fd_c} |")
    costs = [tuned[c] for c in GOAL_BUDGETS if c in tuned]
    if costs:
        lines += ["", f"Calibration cost: {min(t['evals'] for t in costs)}-"
                      f"{max(t['evals'] for t in costs)} single-image model evaluations, "
                      f"{min(t['seconds'] for t in costs):.1f}-{max(t['seconds'] for t in costs):.1f}"
                      f" s each on {torch.get_num_threads()} thread(s) of this machine."]
    return lines + [""]


def goal_summary(name, rows, tuned):
    ratios = {}
    for c in GOAL_BUDGETS:
        if c in tuned:
            need = core_calls_for(rows, tuned[c]["held"][0])
            ratios[c] = need / c if need else None
    met = all(r is not None and r >= (2.0 if c <= 12 else 1.5) for c, r in ratios.items())
    parts = ", ".join(f"{c}: {r:.2f}" if r else f"{c}: -" for c, r in ratios.items())
    return f"{name}: core calls / tuned calls for the same held-out error by tuned budget " \
           f"({parts}); goal (>= 2 for 4-12 calls, >= 1.5 at 16) {'met' if met else 'not met'}."


# ----------------------------------------------------------------- picture

def picture(net, ts, rows, core, problem, path, n=8, calls=PICTURE_CALLS):
    """The same held-out seeds at `calls` calls: the core's best, the tuned
    sampler, the reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .trained_report import tile
    x = problem.x[:n]
    b = best_core(rows, calls)
    panels = []
    if b is not None and core is not None:
        combos = [cb for cb in A.host_combos(core, problem, [b[2]]) if cb.sched == b[3]]
        steps, _ = A.fit_steps(combos[0], calls, problem.process, {})
        with torch.no_grad():
            panels.append((f"core's best: {b[2]} / {b[3]} ({b[1]} calls)",
                           combos[0].run(problem.model, x, steps)))
    panels.append((f"tuned ({ts.calls} calls, from {ts.base['sampler']} / "
                   f"{ts.base['schedule']})", run_tuned(ts, problem.model, x)))
    panels.append(("reference", problem.ref[:n]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(1.3 * n, 1.6 * len(panels)), squeeze=False)
    for ax, (title, imgs) in zip(axes[:, 0], panels):
        ax.imshow(tile(imgs.float(), n), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------- report

REPORT_BUDGETS = (4, 6, 8)


def report_section(out, nets, core, batch, seed, reference_steps, n_calib=16, max_evals=2000,
                   tick=None):
    """Markdown for the HTML report (bench/engine_report.py): per network the
    tuned sampler at REPORT_BUDGETS calls beside the core's best on the
    report's own held-out batch (the reference its error-vs-calls section
    computed, so no new reference solve), and the picture at 6 calls. The
    core's rows are cached in out/cache. The full benchmark's table is
    added when bench/out/tuned/table.md exists."""
    from .networks import load_network
    out = Path(out)
    md = ["## Tuned sampler (fitted to the model in hand)", "",
          f"`tuning.tune` calibrated on {n_calib} seeds the report never measures on (at most "
          f"{max_evals} single-image model evaluations, its own reference solve included), "
          f"measured on the report's {batch} held-out images against the converged reference "
          "of the error-vs-calls section, beside the best of every core sampler x scheduler at "
          f"the same calls (screened on 2 images). Its start is the auto pick's best sampler "
          "and schedule (see the README's *Tuned sampler* section for the method and the full "
          "benchmark).", "",
          "| network | calls | tuned RMSE | its start | core's best RMSE | core's best | "
          "tuned / core | calibration |", "|---|---|---|---|---|---|---|---|"]
    pics = []
    for name in nets:
        net = load_network(name)
        problem = A.trained_problem(name, batch=batch, seed=seed, reference_steps=reference_steps,
                                    check_steps=reference_steps // 2,
                                    check_batch=min(4, batch), core=core,
                                    cache_dir=out / "cache")
        wrapped = NETWORKS[name]()
        rows = []
        if core is not None and (problem.process == "ve" or core.has_flow):
            rows = core_rows(core, problem, REPORT_BUDGETS,
                             out / "cache" / f"tuned-core-{name}-n{batch}-s{seed}.json",
                             screen=2, top=2)
        for c in REPORT_BUDGETS:
            ts, secs = tune_one(wrapped, n_calib, c, max_evals)
            err = A.metrics(run_tuned(ts, problem.model, problem.x), problem.ref)[0]
            b = best_core(rows, c)
            md.append(f"| {name} | {c} | {err:.2e} | {ts.base['sampler']} / {ts.base['schedule']}"
                      f" | " + (f"{b[0]:.2e} | {b[2]} / {b[3]} | {err / b[0]:.2f}" if b else
                                "- | - | -") +
                      f" | {ts.cost['evals']} evals, {secs:.1f} s |")
            if c == PICTURE_CALLS:
                path = out / f"tuned-{name}.png"
                picture(wrapped, ts, rows, core, problem, path)
                pics.append(f"![{name}: the same held-out seeds at {c} calls]({path.name})")
            if tick:
                tick()
        del net
    md += [""] + [p + "\n" for p in pics]
    full = OUT_DEFAULT / "table.md"
    if full.is_file():
        md += ["### The full benchmark (`python -m sampler_lab.bench.tuned`)", "",
               full.read_text(), ""]
    return md


# ----------------------------------------------------------------- main

def bench_net(name, core, args, log=print):
    net = NETWORKS[name]()
    out = Path(args.out)
    cache = out / "cache"
    t0 = time.time()
    problem = held_problem(net, args.held, args.ref_steps, cache, core)
    x_cal = net.noise("calib", args.calib).double() * net.start_scale
    calib_ref = cached(
        cache / f"{net.name}-{net.digest}-calib{CALIB_SEED}-n{args.calib}-rk4_{args.ref_steps}.pt",
        lambda: reference(net.denoiser("calib", args.calib), x_cal, net.sigma_max,
                          net.sigma_min, args.ref_steps))
    log(f"{name}: references ready ({time.time() - t0:.0f} s)")
    rows = core_rows(core, problem, CORE_BUDGETS, cache / f"core-{name}-n{args.held}.json")
    log(f"{name}: core rows ready ({time.time() - t0:.0f} s)")
    tuned = tuned_rows(net, TUNED_BUDGETS, problem, args.calib, args.max_evals, calib_ref)
    log(f"{name}: tuned rows ready ({time.time() - t0:.0f} s)")
    fd = {}
    if args.fd:
        fd = frechet(net, {c: t["table"] for c, t in tuned.items()}, rows, core, GOAL_BUDGETS,
                     args.fd)
        log(f"{name}: Frechet distances ready ({time.time() - t0:.0f} s)")
    if PICTURE_CALLS in tuned:
        picture(net, tuning.TunedSampler.from_dict(tuned[PICTURE_CALLS]["table"]), rows, core,
                problem, out / f"tuned-{name}.png")
    return {"rows": rows, "tuned": {str(c): t for c, t in tuned.items()},
            "fd": {str(c): v for c, v in fd.items()}}


def load_results(path):
    data = json.loads(Path(path).read_text())
    for res in data["nets"].values():
        res["rows"] = [tuple(r) for r in res["rows"]]
        res["tuned"] = {int(c): t for c, t in res["tuned"].items()}
        res["fd"] = {int(c): tuple(v) for c, v in res["fd"].items()}
    return data


def markdown(data):
    lines = [f"Core: {data['core']}. Calibration: {data['calib']} seeds (set A), at most "
             f"{data['max_evals']} single-image model evaluations per budget, the reference "
             f"solve included; measured on {data['held']} held-out seeds (set B) against RK4 "
             f"with {data['ref_steps']} steps; Frechet distance on {data['fd_n']} samples "
             f"(set C).", ""]
    for name, res in data["nets"].items():
        lines += ratio_lines(name, res["rows"], res["tuned"], res["fd"])
    lines += [goal_summary(name, res["rows"], res["tuned"]) for name, res in data["nets"].items()]
    return "\n".join(lines)


def write_readme(text, readme):
    readme = Path(readme)
    body = readme.read_text()
    block = f"{README_START}\n{text}\n{README_END}"
    if README_START in body and README_END in body:
        a = body.index(README_START)
        b = body.index(README_END) + len(README_END)
        body = body[:a] + block + body[b:]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(body)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nets", default=",".join(NETWORKS))
    p.add_argument("--calib", type=int, default=16)
    p.add_argument("--held", type=int, default=32)
    p.add_argument("--fd", type=int, default=250, help="samples for the Frechet distance (0: none)")
    p.add_argument("--max-evals", type=int, default=2000)
    p.add_argument("--ref-steps", type=int, default=1024)
    p.add_argument("--out", default=str(OUT_DEFAULT))
    p.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from .hosts import load_core
    core = load_core()
    if core is None:
        print("no ComfyUI host found (set COMFYUI_DIR)", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {"core": core.label.split(" (")[0], "calib": args.calib, "held": args.held,
            "max_evals": args.max_evals, "ref_steps": args.ref_steps, "fd_n": args.fd,
            "nets": {}}
    for name in args.nets.split(","):
        data["nets"][name] = bench_net(name, core, args)
        (out / "results.json").write_text(json.dumps(data))
    text = markdown(load_results(out / "results.json"))
    print(text)
    (out / "table.md").write_text(text)
    if args.readme:
        write_readme(text, Path(__file__).resolve().parent.parent / "README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
