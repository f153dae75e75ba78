"""Noise sources for stochastic steps.

A source is called as ``noise(sigma, sigma_next)`` and returns unit-variance
noise shaped like the latent for that sigma interval (k-diffusion's
``noise_sampler`` contract).

`GaussianNoise` draws fresh noise per call. `BrownianNoise` indexes one
Brownian path by sigma, so that the same seed visits the same path whatever the
step count: an SDE solved with 20 or 40 steps sees consistent noise and the
results converge as steps grow (the property ancestral sampling with per-step
noise lacks). The path is torchsde's Brownian interval (Li et al. 2020), with
the settings ComfyUI's Brownian sampler uses, so that a seed gives the same
numbers in both.

Spans below the tree's resolution (its times are rounded to 1e-6, and a
query narrower than that recursed without end or came back as zero: denoise
1e-4) are served by a finer tree over the same range (times rounded to
1e-12 of the range), and an interval narrower still by a normal draw keyed
by the interval's ends: every span gives unit-variance noise, reproducibly.

A source may offer `fork(key)`: an independent source for noise that a run
adds over intervals its own path has covered already (churn, restart jumps;
core.Run.draw_at). Sources that draw fresh noise per call need none.
"""
import math
import struct
import warnings

import numpy as np
import torch

__all__ = ["GaussianNoise", "BrownianNoise", "default_noise"]


def default_noise(x):
    """Fresh noise from torch's global generator, like k-diffusion's default."""
    def draw(sigma, sigma_next):
        return torch.randn_like(x)
    return draw


class GaussianNoise:
    """Independent N(0, 1) per call from a private seeded generator."""

    def __init__(self, x, seed=0):
        self.shape, self.dtype, self.device = x.shape, x.dtype, x.device
        self.generator = torch.Generator(device=x.device).manual_seed(int(seed))

    def __call__(self, sigma, sigma_next):
        return torch.randn(self.shape, generator=self.generator, dtype=self.dtype,
                           device=self.device)


class BrownianNoise:
    """Normalised Brownian increments (W(t1) - W(t0)) / sqrt(|t1 - t0|) on a
    path over [sigma_min, sigma_max].

    seed: an int (one path for the whole batch) or a list with one int per
    batch item (each item its own path, so batch composition never changes an
    item's noise). cpu=True builds the tree on the CPU, the choice that makes
    results identical across devices.
    """

    def __init__(self, x, sigma_min, sigma_max, seed=0, cpu=True, fine_span=None):
        import torchsde  # only stochastic sampling needs it

        t0, t1 = float(sigma_min), float(sigma_max)
        if not (t0 < t1):
            raise ValueError(
                f"BrownianNoise needs sigma_min < sigma_max, got {t0} and {t1}")
        if isinstance(seed, (list, tuple)):
            if len(seed) != x.shape[0]:
                raise ValueError(
                    f"BrownianNoise: {len(seed)} seeds for a batch of {x.shape[0]}")
            seeds, w0, self.batched = [int(s) for s in seed], torch.zeros_like(x[0]), True
        else:
            seeds, w0, self.batched = [int(seed)], torch.zeros_like(x), False
        self.cpu = cpu
        self.seeds, self.t1 = seeds, t1
        self.shape = tuple(x.shape)
        self.out_dtype, self.out_device = x.dtype, x.device
        device = torch.device("cpu") if cpu else x.device
        w0 = w0.to(device)
        t0_t = torch.tensor(t0, dtype=torch.float32, device=device)
        t1_t = torch.tensor(t1, dtype=torch.float32, device=device)
        self.trees = [torchsde.BrownianTree(t0_t, w0, t1_t, entropy=s) for s in seeds]
        self.device = device
        self.t0 = t0
        self._w0 = w0
        self._fine = None
        if fine_span is not None:  # e.g. 1e-6: the host's tree down to where it fails
            self.FINE_SPAN = float(fine_span)

    # Below this span (in sigma) the host-compatible tree's 1e-6 rounding is
    # no longer negligible (+-1% of the variance at 1e-4) or fails outright.
    FINE_SPAN = 1e-4
    # Below this fraction of the range the fine tree's 1e-12 rounding is not.
    KEYED_SPAN = 1e-9

    def _fine_trees(self):
        """Trees over u = (sigma - t0) / (t1 - t0) in [0, 1], resolved to
        1e-12, seeded apart from the main trees."""
        if self._fine is None:
            import torchsde
            zero = torch.tensor(0.0, dtype=torch.float64, device=self.device)
            one = torch.tensor(1.0, dtype=torch.float64, device=self.device)
            self._fine = [torchsde.BrownianTree(zero, self._w0.double(), one, tol=1e-12,
                                                entropy=_derived(s, 1)) for s in self.seeds]
        return self._fine

    def _keyed(self, a, b):
        """Unit normal noise for an interval below every tree's resolution,
        keyed by the seed and the interval's exact ends."""
        out = []
        for s in self.seeds:
            key = int.from_bytes(struct.pack("<dd", a, b), "little")
            g = torch.Generator().manual_seed(_derived(s, 2, key) % 2 ** 63)
            out.append(torch.randn(tuple(self._w0.shape), generator=g, dtype=torch.float64))
        return torch.stack(out)

    def _small(self, a, b):
        """Normalised increment over a short interval a < b (floats)."""
        span = self.t1 - self.t0
        ua = min(max((a - self.t0) / span, 0.0), 1.0)
        ub = min(max((b - self.t0) / span, 0.0), 1.0)
        ra, rb = round(ua, 12), round(ub, 12)
        if rb - ra < self.KEYED_SPAN:
            return self._keyed(a, b)
        w = torch.stack([tree(ra, rb) for tree in self._fine_trees()])
        # normalised by the span the tree resolved, so the variance is exactly 1
        return w / math.sqrt(rb - ra)

    def fork(self, key):
        """An independent Brownian path for `key` (an int >= 0) over
        [0, sigma_max], seeded from this one's seed(s): reproducible, and
        defined down to sigma = 0 (a churned last step's interval)."""
        derived = [(s * 1_000_003 + 7_919 * (int(key) + 1)) % 2 ** 63 for s in self.seeds]
        like = torch.zeros(self.shape, dtype=self.out_dtype, device=self.out_device)
        return BrownianNoise(like, 0.0, self.t1, derived if self.batched else derived[0],
                             cpu=self.cpu)

    def _as_time(self, t):
        if torch.is_tensor(t):
            return t.detach().to(self.device, torch.float32)
        return torch.tensor(float(t), dtype=torch.float32, device=self.device)

    def __call__(self, sigma, sigma_next):
        a, b = self._as_time(sigma), self._as_time(sigma_next)
        sign = 1.0
        if b < a:  # the tree answers for increasing intervals only
            a, b, sign = b, a, -1.0
        fa, fb = float(sigma), float(sigma_next)
        fa, fb = min(fa, fb), max(fa, fb)
        if not fb - fa >= self.FINE_SPAN:
            if not fb > fa:  # an empty interval: no increment (its weight is 0 too)
                return self._out(torch.zeros((len(self.seeds),) + tuple(self._w0.shape)
                                             if self.batched else tuple(self._w0.shape),
                                             dtype=torch.float64))
            w = self._small(fa, fb) * sign
            return self._out(w if self.batched else w[0])
        with warnings.catch_warnings():
            # The tree rounds its ends to its 1e-6 tolerance, so a query at
            # the float32 end can sit a rounding error outside; it is served
            # from the end all the same, and the warning says nothing useful.
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            w = torch.stack([tree(a, b) for tree in self.trees])
        if not self.batched:
            w = w[0]
        return self._out(w * (sign / (b - a).sqrt()))

    def _out(self, w):
        w = w.to(self.out_dtype)
        if w.device != self.out_device and self.out_device.type == "cuda":
            # From pinned memory the copy is queued without waiting for the
            # device: no synchronisation per draw.
            return w.pin_memory().to(self.out_device, non_blocking=True)
        return w.to(self.out_device)


def _derived(seed, *keys):
    """A 63-bit entropy for (seed, keys), independent of seed's own stream."""
    words = [int(seed) % 2 ** 64] + [int(k) % 2 ** 128 for k in keys]
    state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)
    return int(state[0]) & (2 ** 63 - 1)
