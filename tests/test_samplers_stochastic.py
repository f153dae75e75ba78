"""Stochastic sampling (eta = 1) draws from the right distribution.

Data: per-element Gaussian, per-channel mean and std, 4096 samples of
[2, 4, 4] (65536 values per channel). The oracle is the data distribution
itself; tolerances come from the sample size.

* Mean: for Gaussian data the denoiser is affine, every sampler is affine in
  x and the noise, and the noise has mean 0, so the output mean is the
  deterministic sampler applied to the mean trajectory x = alpha(sigma) * mean,
  which every consistent scheme follows exactly (its derivative is constant).
  So the mean must match to sampling error: 5 standard errors.
* Std: ancestral sampling has an O(1/steps) bias in distribution (weak order
  1; ~5% at 100 Euler steps here), far above the 0.3% standard error. The test
  removes it by Richardson extrapolation over N and 2N steps,
  s* = 2 s(2N) - s(N), and compares s* with the data std at 5 standard errors
  of that combination (independent runs: sqrt(5) x the single-run error).
  A sampler that adds VE-style noise in a flow model (instead of re-mixing
  as (1 - s) x0 + s n) is off by 30-80% and fails by a wide margin.
"""
import math

import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.bench import models

SHAPE = (4096, 2, 4, 4)
PER_CHANNEL = SHAPE[0] * SHAPE[2] * SHAPE[3]
SIGMA_MIN = 0.01
N0 = 50

# dpm_adaptive picks its own steps, so the N / 2N extrapolation does not apply.
# LCM's sampling assumes a consistency model (the denoiser returns a sample of
# the data, not its posterior mean): with an exact denoiser its output is
# shrunk on purpose, and test_lcm_follows_its_closed_form checks it exactly.
FIXED_STEP = [n for n in H.PLAIN_NAMES if n not in ("dpm_adaptive", "lcm")]


def refining_schedule(process, n):
    return (H.karras(n, SIGMA_MIN) if process == "ve"
            else H.flow_karras(n, sigma_min=SIGMA_MIN)).float()


def sample_stats(name, process, sigmas, seed, data):
    x = data.noisy(SHAPE, H.sigma_max(process), torch.Generator().manual_seed(seed), torch.float32)
    out = samplers.get_sampler(name).fn(data.denoiser, x, sigmas, process=process, eta=1.0,
                                        noise=samplers.GaussianNoise(x, 1000 + seed))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    out = out.double()
    return out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3))


@pytest.mark.parametrize("process", models.PROCESSES)
@pytest.mark.parametrize("name", FIXED_STEP)
def test_eta_one_samples_the_data_distribution(name, process):
    data = H.gaussian(process, channels=2)
    mean, std = data.mean.reshape(2), data.std.reshape(2)
    (m1, s1), (m2, s2) = [sample_stats(name, process, refining_schedule(process, n), k, data)
                          for k, n in enumerate((N0, 2 * N0))]
    se_mean = std / math.sqrt(PER_CHANNEL)
    se_std = std / math.sqrt(2 * PER_CHANNEL)
    extrapolated = 2 * s2 - s1
    report = (f"{name} ({process}, eta=1): mean {m2.tolist()} vs {mean.tolist()}; std at "
              f"{N0}/{2 * N0} steps {s1.tolist()} / {s2.tolist()}, extrapolated "
              f"{extrapolated.tolist()} vs {std.tolist()}")
    assert ((m2 - mean).abs() <= 5 * se_mean).all(), report
    assert ((extrapolated - std).abs() <= 5 * math.sqrt(5) * se_std).all(), report


@pytest.mark.parametrize("process", models.PROCESSES)
def test_dpm_adaptive_eta_one_samples_the_data_distribution(process):
    """The adaptive solver picks its own steps, so there is no N / 2N pair to
    extrapolate. None is needed: for Gaussian data an ancestral step is exact
    in distribution when its deterministic part solves the ODE exactly (the
    ODE carries p_sigma to p_sigma_down, and adding N(0, sigma_up^2) gives
    p_sigma_next), so the bias is the third-order solver's error, which tight
    tolerances push under the sampling error: 5 standard errors for both."""
    data = H.gaussian(process, channels=2)
    x = data.noisy(SHAPE, H.sigma_max(process), torch.Generator().manual_seed(5), torch.float32)
    info = {}
    out = samplers.get_sampler("dpm_adaptive").fn(
        data.denoiser, x, refining_schedule(process, 10), process=process, eta=1.0,
        rtol=0.005, atol=0.001, info=info, noise=samplers.GaussianNoise(x, 6)).double()
    mean, std = data.mean.reshape(2), data.std.reshape(2)
    m, s = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3))
    report = f"dpm_adaptive ({process}, eta=1): mean {m.tolist()}, std ratio {(s / std).tolist()}, {info}"
    assert ((m - mean).abs() <= 5 * std / math.sqrt(PER_CHANNEL)).all(), report
    assert ((s - std).abs() <= 5 * std / math.sqrt(2 * PER_CHANNEL)).all(), report


@pytest.mark.parametrize("name", FIXED_STEP)
def test_flow_linear_schedule_is_not_burnt(name):
    """The schedule SD3-style models use (ComfyUI's "simple": t uniform down to
    1/n, shift 3). Its steps do not refine evenly, so no extrapolation: at 100
    steps the std must be within 10% of the data's (a sound sampler's
    discretisation bias is under 7% here; VE-style noise gives +30% to +80%)
    and the mean within 5 standard errors."""
    data = H.gaussian("flow", channels=2)
    m, s = sample_stats(name, "flow", H.flow_simple(100).float(), 7, data)
    mean, std = data.mean.reshape(2), data.std.reshape(2)
    report = f"{name} (flow, linear t, 100 steps, eta=1): mean {m.tolist()}, std ratio {(s / std).tolist()}"
    assert ((m - mean).abs() <= 5 * std / math.sqrt(PER_CHANNEL)).all(), report
    assert ((s / std - 1).abs() <= 0.10).all(), report


@pytest.mark.parametrize("process", models.PROCESSES)
def test_lcm_follows_its_closed_form(process):
    """LCM (Luo et al. 2023, Alg. 1): x_next = alpha' D(x) + sigma' z. With the
    exact denoiser of Gaussian data D = m + k (x - alpha m), k = alpha c /
    (alpha^2 c + sigma^2), so mean and variance follow a closed recursion:
    mean_D = m + k (mean_x - alpha m), var_D = k^2 var_x, then
    mean_x' = alpha' mean_D, var_x' = alpha'^2 var_D + sigma'^2."""
    data = H.gaussian(process, channels=2)
    sig = refining_schedule(process, 12).double()
    x = data.noisy(SHAPE, float(sig[0]), torch.Generator().manual_seed(11), torch.float32)
    out = samplers.get_sampler("lcm").fn(data.denoiser, x, sig.float(), process=process,
                                         noise=samplers.GaussianNoise(x, 12)).double()
    m, c = data.mean.reshape(2).double(), data.std.reshape(2).double() ** 2
    alpha = (lambda s: 1.0) if process == "ve" else (lambda s: 1.0 - s)
    s0 = float(sig[0])
    mean_x, var_x = alpha(s0) * m, alpha(s0) ** 2 * c + s0 ** 2
    for s, s_next in zip(sig[:-1].tolist(), sig[1:].tolist()):
        k = alpha(s) * c / (alpha(s) ** 2 * c + s * s)
        mean_d, var_d = m + k * (mean_x - alpha(s) * m), k * k * var_x
        mean_x, var_x = alpha(s_next) * mean_d, alpha(s_next) ** 2 * var_d + s_next ** 2
    std = var_x.sqrt()
    got_m, got_s = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3))
    report = f"lcm ({process}): mean {got_m.tolist()} vs {mean_x.tolist()}, std {got_s.tolist()} vs {std.tolist()}"
    assert ((got_m - mean_x).abs() <= 5 * std / math.sqrt(PER_CHANNEL)).all(), report
    assert ((got_s - std).abs() <= 5 * std / math.sqrt(2 * PER_CHANNEL)).all(), report
    # and the shrinkage is real: well below the data's std
    assert (got_s < 0.97 * data.std.reshape(2)).all(), report


# --- Brownian noise: convergence as steps grow, and seeding -------------------

# Every stochastic sampler but LCM (whose steps are not a discretisation of
# one SDE: it re-noises completely, so refining the steps does not converge).
BROWNIAN = [n for n in H.PLAIN_NAMES
            if samplers.get_sampler(n).stochastic and n not in ("lcm", "dpm_adaptive")]
SMALL = (4, 2, 4, 4)


def brownian_run(name, process, n, seed, x):
    sig = refining_schedule(process, n).double()
    noise = samplers.BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=seed)
    data = H.gaussian(process, channels=2)
    return samplers.get_sampler(name).fn(data.denoiser, x, sig, process=process, eta=1.0, noise=noise)


# The deterministic-by-default samplers at eta 1 too (issue 22: Brownian
# noise converges with steps for every stochastic sampler; the sigma-frame
# multistep ones step through their data predictions under noise).
ETA_TAKERS = [n for n in H.PLAIN_NAMES if n not in BROWNIAN and n not in ("lcm", "dpm_adaptive")]


@pytest.mark.parametrize("process", models.PROCESSES)
@pytest.mark.parametrize("name", BROWNIAN + ETA_TAKERS)
def test_brownian_noise_converges_as_steps_grow(name, process):
    """With one Brownian path the sampler solves one SDE realisation, so
    refining the steps converges (strongly): x(2N) is closer to x(4N) than
    x(N) is to x(2N)."""
    data = H.gaussian(process, channels=2)
    x = data.noisy(SMALL, H.sigma_max(process), torch.Generator().manual_seed(3), torch.float64)
    outs = [brownian_run(name, process, n, 42, x) for n in (20, 40, 80)]
    d1 = H.rel_err(outs[0], outs[1])
    d2 = H.rel_err(outs[1], outs[2])
    assert all(torch.isfinite(o).all() for o in outs)
    assert d2 < d1, f"{name} ({process}): |x20 - x40| = {d1:.3g}, |x40 - x80| = {d2:.3g}"


@pytest.mark.parametrize("process", models.PROCESSES)
@pytest.mark.parametrize("name", BROWNIAN)
def test_brownian_seed_determines_the_result(name, process):
    data = H.gaussian(process, channels=2)
    x = data.noisy(SMALL, H.sigma_max(process), torch.Generator().manual_seed(4), torch.float64)
    a = brownian_run(name, process, 12, 7, x)
    b = brownian_run(name, process, 12, 7, x)
    c = brownian_run(name, process, 12, 8, x)
    assert torch.equal(a, b), f"{name}: same seed, different results"
    assert H.rel_err(a, c) > 1e-3, f"{name}: different seeds, same result"


@pytest.mark.parametrize("name", H.PLAIN_NAMES)
def test_every_sampler_uses_the_given_noise(name):
    """eta > 0 makes every sampler stochastic through the `noise` callable
    alone: same noise source, same result; another source, another result."""
    data = H.gaussian("ve", channels=2)
    x = data.noisy(SMALL, 14.6, torch.Generator().manual_seed(8), torch.float64)
    sig = H.karras(8, 0.03, 14.6)
    spec = samplers.get_sampler(name)
    run = lambda seed: spec.fn(data.denoiser, x, sig, eta=1.0, noise=H.ReplayNoise(x, seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)
    assert H.rel_err(a, c) > 1e-3
