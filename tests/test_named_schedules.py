"""Model and distillation schedules against their published numbers and
independent formulas: the Wan2.2-Lightning and FLUX.2-dev-Turbo lists as
their authors posted them, trailing / LCM / TCD timesteps from diffusers'
own schedulers, Ideogram 4's logit-normal quantiles through scipy's normal
quantile, FLUX.2's shift from Black Forest Labs' published constants."""
import math

import numpy as np
import pytest
import torch

from sampler_lab.schedules import get_sigmas


def test_wan22_lightning_4_is_the_published_list():
    # ModelTC/LightX2V-Wan2.2-Lightning issue #3: timesteps / 1000
    published = [1000.0, 937.5001, 833.3333, 625.0, 0.0]
    got = get_sigmas("lightning_wan22_4", 4).double().numpy() * 1000.0
    assert np.allclose(got, published, rtol=0, atol=2e-4), got


def test_wan22_lightning_8_is_the_published_list():
    published = [1000.0, 972.2224, 937.5001, 892.8571, 833.3333, 750.0001, 625.0, 416.6667, 0.0]
    got = get_sigmas("lightning_wan22_8", 8).double().numpy() * 1000.0
    assert np.allclose(got, published, rtol=0, atol=2e-4), got


def test_flux2_dev_turbo_8_is_the_published_list():
    published = [1.0, 0.6509, 0.4374, 0.2932, 0.1893, 0.1108, 0.0495, 0.00031, 0.0]
    got = get_sigmas("flux2_dev_turbo_8", 8)
    assert got.tolist() == torch.tensor(published, dtype=torch.float32).tolist()


@pytest.mark.parametrize("name,n", [("lightning_wan22_4", 4), ("lightning_wan22_8", 8),
                                    ("flux2_dev_turbo_8", 8)])
def test_a_fixed_list_says_its_step_count(name, n):
    with pytest.raises(ValueError, match=f"{n}-step.*steps to {n}"):
        get_sigmas(name, 20)


def _sd1_sigmas():
    """SD 1.x's discrete sigmas from its published betas (scaled linear
    0.00085 .. 0.012 over 1000 steps), independent of our tables."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    ac = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - ac) / ac)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
@pytest.mark.parametrize("name,kind", [("trailing", "euler_trailing"), ("lcm", "lcm"),
                                       ("lcm", "tcd")])
def test_distilled_timesteps_are_diffusers(name, kind, steps):
    diffusers = pytest.importorskip("diffusers")
    kw = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
              num_train_timesteps=1000)
    if kind == "euler_trailing":
        sch = diffusers.EulerDiscreteScheduler(timestep_spacing="trailing", **kw)
    elif kind == "lcm":
        sch = diffusers.LCMScheduler(**kw)
    else:
        sch = diffusers.TCDScheduler(**kw)
    sch.set_timesteps(steps)
    ts = [int(round(float(t))) for t in sch.timesteps]
    want = list(_sd1_sigmas()[ts]) + [0.0]
    got = get_sigmas(name, steps).double().numpy()
    assert np.allclose(got, want, rtol=1e-5, atol=0), (ts, got, want)


def test_flux2_from_the_published_constants():
    # BFL flux2 sampling: mu linear in tokens at 10 and 200 steps, interpolated in steps
    steps, tokens = 20, 1024 * 1024 // 256
    m200 = 0.00016927 * tokens + 0.45666666
    m10 = 8.73809524e-05 * tokens + 1.89833333
    mu = m10 + (m200 - m10) * (steps - 10) / 190.0
    got = get_sigmas("flux2", steps, width=1024, height=1024).double().numpy()
    t = np.linspace(1.0, 0.0, steps + 1)
    assert got[0] == 1.0 and got[-1] == 0.0
    # at t = 1/2 the shift leaves sigmoid(mu)
    assert math.isclose(got[steps // 2], 1.0 / (1.0 + math.exp(-mu)), rel_tol=1e-6)
    want = np.exp(mu) / (np.exp(mu) + 1.0 / t[1:-1] - 1.0)
    assert np.allclose(got[1:-1], want, rtol=1e-6)
    # larger images above 4300 tokens use the 200-step line alone
    big = get_sigmas("flux2", 8, width=2048, height=2048).double().numpy()
    mu_big = 0.00016927 * 16384 + 0.45666666
    assert math.isclose(big[4], 1.0 / (1.0 + math.exp(-mu_big)), rel_tol=1e-6)


@pytest.mark.parametrize("w,h,mu,std,steps", [(1024, 1024, 0.0, 1.75, 20),
                                              (1664, 928, 0.5, 1.75, 12),
                                              (512, 512, 0.0, 1.5, 48)])
def test_ideogram4_is_logit_normal_quantiles(w, h, mu, std, steps):
    stats = pytest.importorskip("scipy.stats")
    mean = mu + 0.5 * math.log(w * h / 512.0 ** 2)
    u = 1.0 - np.arange(steps + 1) / steps
    with np.errstate(divide="ignore"):
        s = 1.0 / (1.0 + np.exp(-(mean + std * stats.norm.ppf(u))))
    lo, hi = 1.0 / (1.0 + math.exp(7.5)), 1.0 / (1.0 + math.exp(-9.0))
    want = np.clip(s, lo, hi)
    want[-1] = 0.0
    got = get_sigmas("ideogram4", steps, width=w, height=h, mu=mu, std=std).double().numpy()
    assert np.allclose(got, want, rtol=2e-6, atol=0), np.abs(got - want).max()
    if steps % 2 == 0:  # the median quantile sits at sigmoid(mean)
        assert math.isclose(got[steps // 2], 1.0 / (1.0 + math.exp(-mean)), rel_tol=1e-6)


def test_resolution_inputs_are_checked():
    with pytest.raises(ValueError, match="width"):
        get_sigmas("flux2", 8, width=0, height=1024)
    with pytest.raises(ValueError, match="std"):
        get_sigmas("ideogram4", 8, std=0.0)


MANUAL_SIGMAS_TEXTS = ["1, 0.5", "1.0, 0.757, 0.522, 0.0", "[1.0, 0.75, 0.5, 0.25, 0.0]",
                       "14.615, 6.475; 3.861; 0", "0.999\n0.866\n0.634\n0.342\n0",
                       "(1.0, 0.9375, 0.8333, 0.625, 0.0)", "  1.0 ,0.5 ,  0.25  "]


@pytest.mark.parametrize("text", MANUAL_SIGMAS_TEXTS)
def test_custom_sigmas_read_manual_sigmas_text(text):
    """The core's ManualSigmas keeps every number of its text (a regex over
    it); ours reads the same numbers from these forms (and appends the 0 our
    Custom Sigmas always has)."""
    import re
    from sampler_lab.schedules import parse_sigmas
    core = [float(v) for v in re.findall(r"[-+]?(?:\d*\.*\d+)", text)]
    want = core if core[-1] == 0.0 else core + [0.0]
    assert parse_sigmas(text) == want


def test_custom_sigmas_name_a_bad_token():
    from sampler_lab.schedules import parse_sigmas
    with pytest.raises(ValueError, match="item 2 'x'"):
        parse_sigmas("1.0, x, 0")
