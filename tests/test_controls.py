"""Controls over the samplers (samplers/controls.py): restart, unsampling,
Karras churn, the noise window and detail. Oracles: the plain sampler where a
control is off (K = 0, s_churn = 0, amount = 0), k-diffusion's own churn, the
exact probability-flow ODE of Gaussian data, recorded model calls, and the
Gaussian data's moments."""
import math

import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.samplers import controls
from sampler_lab.samplers.noise import BrownianNoise

DETERMINISTIC = [n for n in H.PLAIN_NAMES if not samplers.get_sampler(n).stochastic]
UNSAMPLERS = [n for n in DETERMINISTIC if samplers.get_sampler(n).no_unsample is None]


def gaussian_problem(process, n, seed=0, shape=(8, 3, 8, 8), sigma_min=0.0292):
    data = H.gaussian(process)
    sig = H.karras(n, sigma_min=sigma_min, sigma_max=14.6) if process == "ve" \
        else H.flow_simple(n)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * \
        data.marginal_std(float(sig[0])).expand(shape[1:]).clone()
    if process == "ve":
        x = x + data.mean
    return data, x, sig


class Calls:
    """A model that records the sigma it is told, then defers to `model`."""

    def __init__(self, model):
        self.model, self.sigmas = model, []

    def __call__(self, x, sigma, **kw):
        self.sigmas.append(float(sigma.reshape(-1)[0]))
        return self.model(x, sigma, **kw)


# --- restart ---------------------------------------------------------------------

def test_parse_restart_forms():
    seg = [(10, 1, 0.1, 2.0)]
    assert controls.parse_restart("[[10, 1, 0.1, 2]]") == seg
    assert controls.parse_restart("[10, 1, 0.1, 2]") == seg
    assert controls.parse_restart([10, 1, 0.1, 2]) == seg
    assert controls.parse_restart("[3,2,0.06,0.30],[3,1,0.30,0.59]") == \
        [(3, 2, 0.06, 0.3), (3, 1, 0.3, 0.59)]
    assert controls.parse_restart(" default ") == "default"
    for off in (None, "", "none", " "):
        assert controls.parse_restart(off) is None


@pytest.mark.parametrize("value,match", [
    ("[[1, 1, 0.1, 2]]", r"N .*\[2, 1000\]"),
    ("[[4, -1, 0.1, 2]]", r"K .*\[0, 100\]"),
    ("[[4, 1, 2, 0.1]]", r"0 < t_min < t_max"),
    ("[[4, 1, 0, 2]]", r"0 < t_min < t_max"),
    ("[[4.5, 1, 0.1, 2]]", r"N must be an integer"),
    ("[[4, 1, 0.1]]", r"\[N, K, t_min, t_max\]"),
    ("__import__('os')", r"restart must be"),
    ("[[4, 1, NaN, 2]]", r"t_min must be a finite number"),
    (3.0, r"restart must be"),
])
def test_parse_restart_rejects_bad_segments(value, match):
    with pytest.raises(ValueError, match=match):
        controls.parse_restart(value)


@pytest.mark.parametrize("steps,expected", [
    (10, []), (19, []),
    (20, [(10, 1)]), (35, [(10, 1)]),
    (36, [(10, 2)]), (48, [(13, 2)]),
])
def test_default_rule_is_a1111s(steps, expected):
    """A1111: < 20 steps none; < 36 one restart of 9 steps (10 levels); else
    two of steps // 4 steps; between the sigmas nearest 0.1 and 2."""
    sig = H.karras(steps, sigma_min=0.0292, sigma_max=14.6).tolist()
    got = controls.restart_segments(sig, "default", samplers.VE)
    assert [(n, k) for _, n, k, _, _ in got] == expected
    for i, n, k, t_min, t_max in got:
        near = min((s for s in sig if s > 0), key=lambda s: abs(s - 0.1))
        assert t_min == near == sig[i]
        assert t_max == min(sig, key=lambda s: abs(s - 2.0))


def test_default_rule_on_flow_uses_the_same_noise_levels():
    sig = H.flow_simple(24).tolist()
    [(i, n, k, t_min, t_max)] = controls.restart_segments(sig, "default", samplers.FLOW)
    # noise level S = sigma / (1 - sigma): 0.1 and 2 are sigma 1/11 and 2/3
    assert t_min == min((s for s in sig[1:] if s > 0), key=lambda s: abs(s - 1 / 11))
    assert t_max == min(sig, key=lambda s: abs(s - 2 / 3))


@pytest.mark.parametrize("segments,match", [
    ([[4, 1, 0.5, 20.0]], r"t_max must be at most the schedule's first sigma"),
    ([[4, 1, 0.42, 0.44]], r"not below t_max"),
    ([[4, 1, 0.5, 3.0], [4, 1, 0.51, 2.0]], r"as segment 1's does"),
])
def test_segments_that_do_not_fit_the_schedule(segments, match):
    data, x, sig = gaussian_problem("ve", 10)
    with pytest.raises(ValueError, match=match):
        samplers.get_sampler("euler").fn(data, x, sig, restart=segments)


def test_restart_at_the_schedules_last_sigma():
    """A schedule that stops with noise left (KSampler Advanced's leftover
    noise) may restart from its last sigma and end there."""
    data, x, sig = gaussian_problem("ve", 6)
    part = sig[:-1]
    model = Calls(data)
    out = samplers.get_sampler("euler").fn(model, x, part, restart=[[3, 1, float(part[-1]), 1.0]])
    assert len(model.sigmas) == 5 + 2 and bool(torch.isfinite(out).all())
    assert samplers.get_sampler("euler").calls(part, restart=[[3, 1, float(part[-1]), 1.0]]) == 7


def test_restart_needs_a_deterministic_sampler():
    data, x, sig = gaussian_problem("ve", 10)
    with pytest.raises(ValueError, match=r"restart composes over a deterministic sampler"):
        samplers.get_sampler("euler_ancestral").fn(data, x, sig, restart=[[4, 1, 0.5, 3.0]])
    with pytest.raises(ValueError, match=r"restart composes over a deterministic sampler"):
        samplers.get_sampler("euler").fn(data, x, sig, restart=[[4, 1, 0.5, 3.0]], s_churn=1.0)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_restart_with_k_zero_is_the_plain_sampler(name):
    data, x, sig = gaussian_problem("ve", 8)
    spec = samplers.get_sampler(name)
    plain = spec.fn(data, x.clone(), sig)
    got = spec.fn(data, x.clone(), sig, restart=[[5, 0, 0.5, 3.0]])
    assert torch.equal(got, plain), name


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_restart_declared_calls_equal_actual_calls(name, process):
    data, x, sig = gaussian_problem(process, 12, shape=(2, 3, 4, 4))
    spec = samplers.get_sampler(name)
    segments = [[4, 2, float(sig[8]) * 1.01, float(sig[3])], [3, 1, float(sig[5]),
                                                              float(sig[2])]]
    model = Calls(data)
    rec = H.Recorder()
    spec.fn(model, x, sig, process=process, restart=segments, callback=rec)
    declared = spec.calls(sig, process=process, restart=segments)
    if declared is not None:
        assert declared == len(model.sigmas), name
    # the callback's step index runs on through the restarts: 12 + 2*3 + 2 steps
    if spec.calls_per_step is not None and name != "dpm_fast":
        assert [s["i"] for s in rec.steps] == list(range(12 + 2 * 3 + 1 * 2)), name


def test_restart_runs_the_pieces_it_should():
    """euler over [sig..t_min], then K Karras passes t_max -> t_min, then on:
    the sigmas the model sees are exactly those, and the jumps re-noise with
    the noise at the right scale."""
    data, x, sig = gaussian_problem("ve", 10)
    t_min_target, t_max = 0.5, 3.0
    model = Calls(data)
    samplers.get_sampler("euler").fn(model, x, sig, restart=[[4, 2, t_min_target, t_max]])
    s = sig.tolist()
    i = min(range(1, len(s)), key=lambda k: abs(s[k] - t_min_target) if s[k] > 0 else 1e9)
    levels = [(t_max ** (1 / 7) + (s[i] ** (1 / 7) - t_max ** (1 / 7)) * k / 3) ** 7
              for k in range(4)]
    expected = s[:i] + levels[:-1] * 2 + s[i:-1]
    assert model.sigmas == pytest.approx(expected, rel=1e-6)


def moments_run(name, process, n, segments=None, s_churn=0.0, seed=0, batch=128):
    """(per-channel std of the result / the data's, mean error / the data's
    std, relative error against the exact ODE solution) on Gaussian data:
    elements are independent, so a [batch, 3, 8, 8] run has 64 batch samples
    per channel."""
    data, x, sig = gaussian_problem(process, n, seed=seed, shape=(batch, 3, 8, 8))
    noise = BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=seed)
    out = samplers.get_sampler(name).fn(data, x, sig, process=process, restart=segments,
                                        s_churn=s_churn, noise=noise)
    exact = data.ode_solution(x, float(sig[0]), 0.0)
    per_channel = out.transpose(0, 1).reshape(3, -1)
    std = torch.tensor(H.STD, dtype=torch.float64)
    return (per_channel.std(dim=1) / std, (per_channel.mean(dim=1) -
                                           torch.tensor(H.MEAN, dtype=torch.float64)) / std,
            H.rel_err(out, exact))


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_restart_keeps_the_gaussian_moments(process):
    """Restart (A1111's default segment) over Heun at eta 0 on Gaussian data:
    the result's std stays within 15% of the data's at 20 steps and 5% at 40
    (the sampling error of the std here is ~1%), and the mean within 5% of a
    std. (Its path is
    a new one after each restart, so the error against the ODE solution from
    the same start is of the order of the data's std by design.)"""
    for n, band in ((20, 0.15), (40, 0.05)):
        std, mean, _ = moments_run("heun", process, n, "default")
        assert float((std - 1).abs().max()) < band, (n, std)
        assert float(mean.abs().max()) < 0.05, (n, mean)


def test_restart_noise_is_fresh_per_restart():
    """Two restarts from the same t_min get independent noise (a Brownian
    path read twice over [t_min, t_max] would repeat itself)."""
    data, x, sig = gaussian_problem("ve", 10, shape=(2, 3, 8, 8))
    draws = []
    noise = BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=3)
    real_fork = noise.fork

    def fork(key):
        src = real_fork(key)

        def draw(a, b):
            z = src(a, b)
            draws.append(z.clone())
            return z
        return draw
    noise.fork = fork
    samplers.get_sampler("euler").fn(data, x, sig, restart=[[3, 2, 0.5, 3.0]], noise=noise)
    assert len(draws) == 2
    a, b = draws[0].flatten(), draws[1].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.2
    assert 0.8 < float(a.std()) < 1.2


# --- unsampling ----------------------------------------------------------------------

def _round_trip(name, process, n):
    data = H.gaussian(process)
    x0 = data.sample((4, 3, 8, 8), generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)
    sig = H.karras(n, sigma_min=0.0292, sigma_max=14.6) if process == "ve" else \
        H.flow_simple(n)[1:]  # the host cannot store a flow latent at sigma 1
    up = sig.flip(0).clone()
    up[0] = 1e-4  # as the core's FlipSigmas
    spec = samplers.get_sampler(name)
    x_t = spec.fn(data, x0, up, process=process, eta=0.0)
    unsample_err = H.rel_err(x_t, data.ode_solution(x0, 1e-4, float(up[-1])))
    back = spec.fn(data, x_t, sig, process=process, eta=0.0)
    return unsample_err, H.rel_err(back, x0)


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", UNSAMPLERS)
def test_unsample_then_resample_returns_the_latent(name, process):
    """The round trip's error falls with the steps and is small at 40."""
    errs = [_round_trip(name, process, n) for n in (10, 40)]
    (u10, r10), (u40, r40) = errs
    assert u40 < u10 and r40 < r10, (name, errs)
    assert u40 < 0.1 and r40 < 0.15, (name, errs)


@pytest.mark.parametrize("name", sorted(n for n in H.PLAIN_NAMES
                                        if samplers.get_sampler(n).no_unsample))
def test_samplers_that_cannot_unsample_say_so(name):
    data = H.gaussian("ve")
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=rf"{name}' cannot unsample"):
        samplers.get_sampler(name).fn(data, x, torch.tensor([1e-4, 0.5, 2.0]), eta=0.0)


def test_unsample_errors():
    data = H.gaussian("ve")
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    up = torch.tensor([1e-4, 0.5, 2.0])
    with pytest.raises(ValueError, match=r"needs eta \(noise strength\) = 0"):
        samplers.get_sampler("euler_ancestral").fn(data, x, up)
    with pytest.raises(ValueError, match=r"must start at a sigma > 0"):
        samplers.get_sampler("euler").fn(data, x, torch.tensor([0.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match=r"strictly decreasing .* or strictly increasing"):
        samplers.get_sampler("euler").fn(data, x, torch.tensor([1e-4, 0.5, 0.2]))
    with pytest.raises(ValueError, match=r"restart needs decreasing sigmas"):
        samplers.get_sampler("euler").fn(data, x, up, restart=[[3, 1, 0.5, 1.0]])
    with pytest.raises(ValueError, match=r"er_sde cannot unsample up to pure noise"):
        samplers.get_sampler("er_sde").fn(H.gaussian("flow"), x, torch.tensor([1e-4, 0.5, 1.0]),
                                          process="flow", eta=0.0)


# --- churn ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,host", [("euler", "sample_euler"), ("heun", "sample_heun"),
                                       ("dpm_2", "sample_dpm_2")])
@pytest.mark.parametrize("s_tmin,s_tmax", [(0.0, math.inf), (0.3, 5.0)])
def test_churn_matches_k_diffusion(kdiff, name, host, s_tmin, s_tmax):
    """k-diffusion's churn (Karras et al. 2022, Alg. 2) draws torch.randn_like
    before each churned step; ours, given torch's default source, draws the
    same numbers in the same order."""
    data, x, sig = gaussian_problem("ve", 10)
    kw = dict(s_churn=3.0, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=1.003)
    torch.manual_seed(7)
    rec_t = H.Recorder()
    theirs = getattr(kdiff, host)(data, x.clone(), sig, callback=rec_t, disable=True, **kw)
    torch.manual_seed(7)
    rec_o = H.Recorder()
    ours = samplers.get_sampler(name).fn(data, x.clone(), sig, callback=rec_o, **kw)
    assert H.rel_err(ours, theirs) < 1e-9
    assert [float(s["sigma_hat"]) for s in rec_o.steps] == \
        pytest.approx([float(s["sigma_hat"]) for s in rec_t.steps], rel=1e-12)
    assert [float(s["sigma"]) for s in rec_o.steps] == pytest.approx(sig[:-1].tolist())


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
def test_churn_zero_is_the_plain_sampler(name):
    data, x, sig = gaussian_problem("flow", 10)
    spec = samplers.get_sampler(name)
    plain = spec.fn(data, x.clone(), sig, process="flow")
    assert torch.equal(spec.fn(data, x.clone(), sig, process="flow", s_churn=0.0,
                               s_tmin=0.1, s_tmax=0.5), plain)


def test_churn_on_flow_stays_in_the_process():
    """On flow the raised noise level is re-mixed: sigma_hat < 1 and the
    model never sees a sigma outside (0, 1)."""
    data, x, sig = gaussian_problem("flow", 10)
    model = Calls(data)
    samplers.get_sampler("euler").fn(model, x, sig, process="flow", s_churn=40.0)
    assert all(0.0 < s < 1.0 or s == 1.0 for s in model.sigmas)
    assert max(model.sigmas[1:]) < 1.0


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_churn_keeps_the_gaussian_moments(process):
    """EDM churn (Heun, s_churn 10 over all steps) on Gaussian data: the
    result's std comes closer to the data's as steps grow (10, 20, 40), within
    5% at 40, and the mean within 5% of a std."""
    dev = []
    for n in (10, 20, 40):
        std, mean, _ = moments_run("heun", process, n, s_churn=10.0)
        dev.append(float((std - 1).abs().max()))
        assert float(mean.abs().max()) < 0.05, (n, mean)
    assert dev[2] < 0.05 and dev[2] < dev[1] < dev[0], dev


@pytest.mark.parametrize("kwargs,match", [
    ({"s_churn": -1.0}, r"s_churn must be a finite number in \[0.0"),
    ({"s_churn": float("nan")}, r"s_churn must be a finite number"),
    ({"s_churn": 1.0, "s_tmin": 2.0, "s_tmax": 1.0}, r"s_tmin \(2.0\) must not exceed s_tmax"),
    ({"s_churn": 1.0, "s_tmin": -1.0}, r"s_tmin must be"),
])
def test_churn_bad_input(kwargs, match):
    data, x, sig = gaussian_problem("ve", 4)
    with pytest.raises(ValueError, match=match):
        samplers.get_sampler("euler").fn(data, x, sig, **kwargs)


def test_churn_only_where_offered():
    data, x, sig = gaussian_problem("ve", 4)
    with pytest.raises(ValueError, match=r"s_churn applies to euler, heun, dpm_2"):
        samplers.get_sampler("dpmpp_2m").fn(data, x, sig, s_churn=1.0)
    with pytest.raises(ValueError, match=r"needs eta \(noise strength\) = 0"):
        samplers.get_sampler("euler").fn(data, x, sig, s_churn=1.0, eta=0.5)


def test_churn_noise_on_a_brownian_path_is_fresh_per_step():
    """The churn draws come from a fork of the run's Brownian path over
    [0, sigma_max], one stretch per step: the last step (to sigma 0) gets
    real noise, and steps do not repeat each other."""
    data, x, sig = gaussian_problem("ve", 6, shape=(2, 3, 16, 16))
    noise = BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=5)
    fork = noise.fork(0)
    z_last = fork(torch.tensor(float(sig[-2])), torch.tensor(0.0))
    assert 0.8 < float(z_last.std()) < 1.2
    z_0 = fork(torch.tensor(float(sig[0])), torch.tensor(float(sig[1])))
    assert abs(float(torch.corrcoef(torch.stack([z_0.flatten(), z_last.flatten()]))[0, 1])) < 0.1
    a = samplers.get_sampler("euler").fn(data, x, sig, s_churn=2.0,
                                         noise=BrownianNoise(x, float(sig[-2]), float(sig[0]), 5))
    b = samplers.get_sampler("euler").fn(data, x, sig, s_churn=2.0,
                                         noise=BrownianNoise(x, float(sig[-2]), float(sig[0]), 5))
    assert torch.equal(a, b)  # reproducible from the seed


# --- noise window ------------------------------------------------------------------

def test_noise_window_bad_input():
    data, x, sig = gaussian_problem("ve", 4)
    with pytest.raises(ValueError,
                       match=r"noise_window must be \(start, end\) with 0 <= start <= end"):
        samplers.get_sampler("euler_ancestral").fn(data, x, sig, noise_window=(0.8, 0.2))


# --- detail ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["euler", "dpmpp_2m", "heun", "uni_pc", "dpmpp_sde"])
def test_detail_amount_zero_is_the_plain_sampler(name):
    data, x, sig = gaussian_problem("ve", 8)
    spec = samplers.get_sampler(name)
    plain = spec.fn(data, x.clone(), sig, noise=H.ReplayNoise(x, 1))
    got = spec.fn(data, x.clone(), sig, noise=H.ReplayNoise(x, 1), detail={"amount": 0.0})
    assert torch.equal(got, plain)


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_detail_model_sees_exactly_the_scaled_sigma(process):
    """Euler calls the model once per grid sigma: at step k of n the progress
    is k / (n - 1), and the model is told sigma * (1 - amount w(p)) with w the
    smooth bump (closed form here), while the sampler integrates at sigma."""
    data, x, sig = gaussian_problem(process, 11)
    d = dict(amount=0.3, start=0.1, end=0.7, bias=0.25, exponent=2.0)
    model = Calls(data)
    spec = samplers.get_sampler("euler")
    spec.fn(model, x, sig, process=process, detail=d)
    n = len(sig) - 1
    mid = 0.1 + 0.25 * 0.6
    for k, told in enumerate(model.sigmas):
        p = k / (n - 1)
        if p < 0.1 or p > 0.7:
            w = 0.0
        elif p <= mid:
            w = (0.5 - 0.5 * math.cos(math.pi * (p - 0.1) / (mid - 0.1))) ** 2
        else:
            w = (0.5 - 0.5 * math.cos(math.pi * (0.7 - p) / (0.7 - mid))) ** 2
        assert told == pytest.approx(float(sig[k]) * (1 - 0.3 * w), rel=1e-6), k
    # the sampler's own integration is unchanged: with the model told the
    # truth in between, the steps use the grid sigmas (one step differs)
    assert any(told != pytest.approx(float(s)) for told, s in zip(model.sigmas, sig))


def test_detail_changes_the_result_in_the_expected_direction():
    """Telling the model less noise than there is leaves more of it in:
    amount > 0 raises the result's std, amount < 0 lowers it (the detail
    daemon's effect on images, here on Gaussian data)."""
    data, x, sig = gaussian_problem("ve", 20, shape=(256, 3, 1, 1))
    spec = samplers.get_sampler("dpmpp_2m")
    std = {a: float(spec.fn(data, x, sig, detail={"amount": a}).std())
           for a in (-0.2, 0.0, 0.2)}
    assert std[-0.2] < std[0.0] < std[0.2]


def test_detail_works_through_restart_and_unsampling():
    data, x, sig = gaussian_problem("ve", 10)
    model = Calls(data)
    samplers.get_sampler("euler").fn(model, x, sig, restart=[[3, 1, 0.5, 3.0]],
                                     detail={"amount": 0.2})
    assert all(math.isfinite(s) and s > 0 for s in model.sigmas)
    up = sig.flip(0).clone()
    up[0] = 1e-4
    out = samplers.get_sampler("euler").fn(data, x, up, detail={"amount": 0.2})
    assert bool(torch.isfinite(out).all())


def test_detail_stays_within_the_flow_process():
    data, x, sig = gaussian_problem("flow", 10)
    model = Calls(data)
    samplers.get_sampler("euler").fn(model, x, sig, process="flow",
                                     detail={"amount": -1.0, "start": 0.0, "end": 1.0})
    assert max(model.sigmas) <= 1.0


@pytest.mark.parametrize("detail,match", [
    ({"amount": 1.0}, r"detail amount must be a number in \[-1.0, 0.9\]"),
    ({"amount": 0.1, "start": 0.9, "end": 0.1}, r"detail start \(0.9\) must not be after"),
    ({"amount": 0.1, "bias": 2.0}, r"detail bias must be"),
    ({"amount": float("nan")}, r"detail amount must be"),
    ({"amout": 0.1}, r"detail has no field amout"),
    (0.5, r"detail must be None, a dict"),
])
def test_detail_bad_input(detail, match):
    data, x, sig = gaussian_problem("ve", 4)
    with pytest.raises(ValueError, match=match):
        samplers.get_sampler("euler").fn(data, x, sig, detail=detail)
