"""What the controls do to samples, measured on Gaussian data (exact
denoiser, closed-form probability-flow ODE):

    python -m sampler_lab.bench.controls [--seeds N]

* restart (A1111's default segment) and Karras churn (s_churn 10) beside the
  plain sampler: the result's std per channel over the data's (1 = right
  spread; the mean of |ratio - 1| and the worst channel), its mean error in
  data stds, and the relative error against the exact ODE solution from the
  same start (restart and churn leave the ODE's path by design, so that error
  says how far; the spread says whether the distribution is right);
* unsampling: the round trip (unsample with the flipped schedule from 1e-4,
  then sample back) per deterministic sampler and step count;
* on the trained digit networks (bench/networks.py; `--samples N`, 0 skips):
  restart and churn beside plain heun, judged by the Frechet distance of N
  samples to the held-out digits in the digit classifier's features
  (bench/classifier.py) -- the place where restart is meant to help, since a
  trained denoiser has errors for its noise to contract -- and the model
  calls spent.

Data: per-channel N(mean, std^2) with means (0.5, -0.3, 0.1) and stds
(0.5, 1, 0.8) on [B, 3, 8, 8] latents (elements independent). VE: Karras
sigmas 14.6 -> 0.0292 (SD 1.x) then 0; flow: the shifted (3) uniform-t
schedule, sigma 1 -> 0. Noise: a seeded Brownian path.
"""
import argparse

import torch

from .. import samplers, schedules
from ..samplers.noise import BrownianNoise
from .models import GaussianData

MEAN, STD = (0.5, -0.3, 0.1), (0.5, 1.0, 0.8)


def data_of(process):
    shape = (3, 1, 1)
    return GaussianData(torch.tensor(MEAN, dtype=torch.float64).reshape(shape),
                        torch.tensor(STD, dtype=torch.float64).reshape(shape), process)


def schedule(process, n):
    if process == "ve":
        lo, hi, rho = 0.0292, 14.6, 7.0
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        s = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
        s[0], s[-1] = hi, lo
    else:
        t = torch.linspace(1.0, 1.0 / n, n, dtype=torch.float64)
        s = 3.0 * t / (1 + 2.0 * t)
        s[0] = 1.0
    return torch.cat([s, s.new_zeros(1)])


def run(name, process, n, seed, batch=128, **controls):
    data = data_of(process)
    sig = schedule(process, n)
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, 8, 8)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * \
        data.marginal_std(float(sig[0])).expand(shape[1:])
    if process == "ve":
        x = x + data.mean
    noise = BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=seed)
    out = samplers.get_sampler(name).fn(data, x, sig, process=process, noise=noise, **controls)
    exact = data.ode_solution(x, float(sig[0]), 0.0)
    per = out.transpose(0, 1).reshape(3, -1)
    std = torch.tensor(STD, dtype=torch.float64)
    ratio = per.std(dim=1) / std
    mean_err = ((per.mean(dim=1) - torch.tensor(MEAN, dtype=torch.float64)) / std).abs()
    ode = float((out - exact).norm() / exact.norm())
    return ratio, mean_err, ode


def moments_table(seeds):
    variants = [("plain", {}), ("restart", {"restart": "default"}),
                ("churn 10", {"s_churn": 10.0})]
    print("| process | sampler | control | steps | std ratio, mean abs dev | worst channel "
          "| mean error (stds) | rel. error vs exact ODE |")
    print("|---|---|---|---|---|---|---|---|")
    for process in ("ve", "flow"):
        for name in ("euler", "heun", "dpm_2"):
            for label, controls in variants:
                for n in (10, 20, 40):
                    rows = [run(name, process, n, seed, **controls) for seed in range(seeds)]
                    ratio = torch.stack([r[0] for r in rows]).mean(0)
                    mean_err = float(torch.stack([r[1] for r in rows]).mean(0).max())
                    ode = sum(r[2] for r in rows) / len(rows)
                    dev = (ratio - 1).abs()
                    print(f"| {process} | {name} | {label} | {n} | {float(dev.mean()):.3f} | "
                          f"{float(ratio[int(dev.argmax())]):.3f} | {mean_err:.3f} | {ode:.4f} |")


def round_trip(name, process, n):
    data = data_of(process)
    x0 = data.sample((4, 3, 8, 8), generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    sig = schedule(process, n)
    if process == "flow":
        sig = sig[1:]  # the host cannot store a flow latent at sigma 1
    up = sig.flip(0).clone()
    up[0] = 1e-4
    spec = samplers.get_sampler(name)
    x_t = spec.fn(data, x0, up, process=process, eta=0.0)
    back = spec.fn(data, x_t, sig, process=process, eta=0.0)
    return float((back - x0).norm() / x0.norm())


def unsample_table():
    names = [n for n in samplers.SAMPLER_NAMES
             if not samplers.get_sampler(n).stochastic and not samplers.get_sampler(n).cfg_pp]
    print("| sampler | VE 10 | VE 20 | VE 40 | flow 10 | flow 20 | flow 40 |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        spec = samplers.get_sampler(name)
        if spec.no_unsample:
            print(f"| {name} | cannot unsample: {spec.no_unsample} |||||| ")
            continue
        cells = [f"{round_trip(name, p, n):.4f}" for p in ("ve", "flow") for n in (10, 20, 40)]
        print(f"| {name} | " + " | ".join(cells) + " |")


TRAINED_VARIANTS = (("plain", {}), ("restart", {"restart": "default"}),
                    ("churn 10", {"s_churn": 10.0}))


def trained_table(samples, steps=(10, 20, 40), name="heun", seed=0):
    """Markdown rows: FD to the held-out digits per network, control and steps."""
    from . import trained_report as T
    from .classifier import features, frechet_distance
    from .networks import mnist_digits
    held = features(mnist_digits("heldout"))
    train = mnist_digits("train")
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:samples]
    floor = frechet_distance(features(train[pick]), held)
    lines = [f"Frechet distance of {samples} samples to the 500 held-out digits (classifier "
             f"features; {samples} training digits score {floor:.2f}), {name}, seed {seed}:", "",
             "| network | control | steps | model calls | FD |", "|---|---|---|---|---|"]
    spec = samplers.get_sampler(name)
    for net_name in T.NETS:
        net = T._load(net_name)
        sampling, proc = T._sampling(net)
        x = T._start(net, samples, seed + 1)
        for n in steps:
            sig = schedules.get_sigmas(T.GRID_SCHEDULE[net_name], n,
                                         model_sampling=sampling).double()
            noise = BrownianNoise(x, float(sig[sig > 0].min()), float(sig[0]), seed=seed + 1)
            for label, controls in TRAINED_VARIANTS:
                calls = spec.calls(sig, process=proc, restart=controls.get("restart"))
                with torch.no_grad():
                    out = spec.fn(net, x, sig, process=proc, noise=noise, **controls)
                fd = frechet_distance(features(out), held)
                lines.append(f"| {net_name} ({T.GRID_SCHEDULE[net_name]}) | {label} | {n} | "
                             f"{calls} | {fd:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=300,
                        help="samples per cell on the trained networks (0 skips them)")
    args = parser.parse_args(argv)
    if args.samples == 1 or args.samples < 0:
        parser.error("--samples must be 0 (skip) or at least 2")
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    moments_table(args.seeds)
    print()
    unsample_table()
    if args.samples:
        print()
        print(trained_table(args.samples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
