"""Shared pieces of the sampler tests: exact data models, schedules, noise
sources that can be replayed, and error measures. Nothing here computes an
expected value from the code under test."""
import math
import os

import torch

from sampler_lab import samplers

from sampler_lab.bench import models

# The tensors here are small: under pytest-xdist, one thread per worker beats
# workers fighting over the cores with torch's intra-op pool.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

# Per-channel statistics for [B, 3, H, W] latents: different means and spreads
# so a sampler that mixes channels or ignores the mean shows up.
MEAN = (0.5, -0.3, 0.1)
STD = (0.5, 1.0, 0.8)

VE_SIGMA_MAX = 80.0
SIGMA_MIN = 0.002

# Samplers whose stochastic form is the default (eta = 1 unless told).
# Samplers that run on a denoiser alone; the CFG++ ones also need the
# unconditional prediction (tests/test_cfg_pp.py).
PLAIN_NAMES = [n for n in samplers.SAMPLER_NAMES if not samplers.get_sampler(n).cfg_pp]

# Stochastic by default, as in the newest ComfyUI (its SDE, ancestral, DDPM,
# LCM, ER-SDE, SEEDS and SA-Solver samplers all add noise).
ANCESTRAL_DEFAULT = {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                     "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_sde_gpu",
                     "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
                     "dpmpp_3m_sde_gpu", "ddpm", "lcm", "res_multistep_ancestral", "er_sde",
                     "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece",
                     "euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp",
                     "res_multistep_ancestral_cfg_pp", "exp_heun_2_x0_sde"}
# deterministic by definition: eta > 0 is an error naming the sampler
NOISELESS = {"cfgpp_ud10_ab"}


def gaussian(process, channels=3, ndim=4):
    shape = (channels,) + (1,) * (ndim - 2)
    mean = torch.tensor(MEAN[:channels], dtype=torch.float64).reshape(shape)
    std = torch.tensor(STD[:channels], dtype=torch.float64).reshape(shape)
    return models.GaussianData(mean, std, process)


def karras(n, sigma_min=SIGMA_MIN, sigma_max=VE_SIGMA_MAX, rho=7.0, zero=True):
    """Karras et al. (2022) eq. 5: uniform in sigma^(1/rho), then 0."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    s = (hi + ramp * (lo - hi)) ** rho
    s[0], s[-1] = sigma_max, sigma_min  # exact ends, no pow round-off
    return torch.cat([s, s.new_zeros(1)]) if zero else s


def flow_shifted(n, shift=3.0, sigma_min=SIGMA_MIN, zero=True):
    """SD3-style schedule: t uniform on [t_min, 1], sigma = shift t / (1 + (shift - 1) t).
    The first sigma is exactly 1.0 (pure noise), the last before 0 is sigma_min."""
    t_min = sigma_min / (shift - (shift - 1) * sigma_min)
    t = torch.linspace(1.0, t_min, n, dtype=torch.float64)
    s = shift * t / (1 + (shift - 1) * t)
    s[0], s[-1] = 1.0, sigma_min
    return torch.cat([s, s.new_zeros(1)]) if zero else s


def flow_simple(n, shift=3.0, zero=True):
    """What flow models use in practice (ComfyUI's "simple" for SD3): t
    uniform over {1, 1 - 1/n, ..., 1/n}, shifted, then 0. The last sigma
    before 0 is ~shift / n, so no step is extreme in half-log-SNR."""
    t = torch.linspace(1.0, 1.0 / n, n, dtype=torch.float64)
    s = shift * t / (1 + (shift - 1) * t)
    s[0] = 1.0
    return torch.cat([s, s.new_zeros(1)]) if zero else s


def flow_karras(n, rho=7.0, shift=3.0, sigma_min=SIGMA_MIN, zero=True):
    """The shifted flow schedule with Karras' warp of t (uniform in t^(1/rho)):
    still exactly 1.0 first, but the steps near sigma_min also shrink with n.
    On the linear-t schedule the last steps stay O(1) in half-log-SNR until
    n ~ 1 / t_min (~1500 here), so an exponential integrator's asymptotic order
    is out of reach there; this grid refines everywhere."""
    t_min = sigma_min / (shift - (shift - 1) * sigma_min)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    t = (1.0 + ramp * (t_min ** (1 / rho) - 1.0)) ** rho
    s = shift * t / (1 + (shift - 1) * t)
    s[0], s[-1] = 1.0, sigma_min
    return torch.cat([s, s.new_zeros(1)]) if zero else s


def schedule(process, n, **kw):
    """The order-measuring schedule of each process (refines everywhere)."""
    return karras(n, **kw) if process == "ve" else flow_karras(n, **kw)


def sigma_max(process):
    return VE_SIGMA_MAX if process == "ve" else 1.0


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def observed_orders(errs, ratio=2.0):
    return [math.log(errs[k] / errs[k + 1]) / math.log(ratio) for k in range(len(errs) - 1)]


class ReplayNoise:
    """Unit Gaussian draws indexed by call count: the k-th call of any run
    returns the same tensor. Two samplers given fresh instances with the same
    seed therefore see identical noise as long as they draw in the same
    order. `.intervals` records the (sigma, sigma_next) of each call."""

    def __init__(self, like, seed=0):
        self.shape, self.dtype = tuple(like.shape), like.dtype
        self.seed = seed
        self.intervals = []

    def __call__(self, sigma, sigma_next):
        k = len(self.intervals)
        self.intervals.append((float(sigma), float(sigma_next)))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        return torch.randn(self.shape, generator=g, dtype=torch.float64).to(self.dtype)

    def fresh(self):
        return ReplayNoise(torch.empty(self.shape, dtype=self.dtype), self.seed)


class SnappedNoise:
    """Wraps a noise source that is a function of the interval (a Brownian
    path) and rounds both ends to 9 significant digits first, so two
    implementations that compute the same sigma with different round-off
    (e.g. exp(-log(sigma)) vs sigma) query the same interval."""

    def __init__(self, base):
        self.base = base
        self.intervals = []

    @staticmethod
    def _snap(s):
        s = float(s)
        return float(f"{s:.9g}")

    def __call__(self, sigma, sigma_next):
        a, b = self._snap(sigma), self._snap(sigma_next)
        self.intervals.append((a, b))
        return self.base(torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))


class Recorder:
    """A callback that keeps copies of everything it is given."""

    def __init__(self):
        self.steps = []

    def __call__(self, d):
        self.steps.append({k: (v.detach().clone() if torch.is_tensor(v) else v)
                           for k, v in d.items()})
