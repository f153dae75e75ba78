"""Schedules on every model family, the KSampler's denoise semantics, and the
newer schedules (bong_tangent, beta57, optimal_steps, sd_turbo, ltxv), each
against its definition computed here in float64 (the host's and the authors'
equations, written out in this file). The hosts' own outputs are compared in
tests/host/test_schedule_parity.py."""
import math

import numpy as np
import pytest
import torch

from sampler_lab import schedules
from sampler_lab.schedules import (DiscreteSampling, FlowSampling, FluxSampling,
                                   MappedSampling, ksampler_sigmas)
from sampler_lab.schedules.preview import family_sampling, sigmas_for_query

RTOL = 1e-6  # float32 results: a few ulps


def close(ours, expected, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=0)


def f32(x):
    return np.float32(x).astype(np.float64)


def with_zero(values):
    return np.append(np.asarray(values, dtype=np.float64), 0.0)


def sd3_sigma(shift, t):
    """SD3's shifted flow time (Esser et al. 2024, eq. 23) of t in [0, 1]."""
    return shift * t / (1 + (shift - 1) * t)


def flux_sigma(mu, t):
    """Flux's exponential time shift with exponent 1."""
    return math.exp(mu) / (math.exp(mu) + 1 / t - 1)


def sd_table():
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000) ** 2
    ac = np.cumprod(1.0 - betas)
    return np.sqrt((1.0 - ac) / ac)


# --------------------------------------------------------------------------
# The model samplings' maps


@pytest.mark.parametrize("shift,multiplier", [(1.0, 1000.0), (3.0, 1000.0), (6.0, 1000.0),
                                              (1.73, 1.0)])
def test_flow_sampling_maps_and_table(shift, multiplier):
    ms = FlowSampling(shift=shift, multiplier=multiplier)
    k = np.arange(1, 1001)
    close(ms.sigmas, sd3_sigma(shift, k / 1000), rtol=2.5e-7)  # float32 as the host keeps it
    assert ms.sigma_min == ms.sigmas[0] and ms.sigma_max == ms.sigmas[-1] == 1.0
    sigma = np.array([0.01, 0.3, 0.9])
    close(ms.timestep(sigma), sigma * multiplier, rtol=1e-15)  # unshifted
    close(ms.sigma(sigma * multiplier), sd3_sigma(shift, sigma), rtol=1e-15)


@pytest.mark.parametrize("mu", [0.5, 1.15, 3.0])
def test_flux_sampling_maps_and_table(mu):
    ms = FluxSampling(shift=mu)
    t = np.arange(1, 10001) / 10000
    close(ms.sigmas, [flux_sigma(mu, x) for x in t], rtol=4e-7)
    assert ms.sigma_max == 1.0 and len(ms.sigmas) == 10000
    close(ms.timestep([0.2, 0.7]), [0.2, 0.7], rtol=0)
    close(ms.sigma([0.2, 0.7]), [flux_sigma(mu, 0.2), flux_sigma(mu, 0.7)], rtol=1e-15)


def test_discrete_sampling_maps():
    table = sd_table()
    ms = DiscreteSampling(table)
    assert ms.timestep(table[417] * 1.0001) == 417
    t = 417.25
    close(ms.sigma(t), math.exp(0.75 * math.log(table[417]) + 0.25 * math.log(table[418])),
          rtol=1e-6)
    close(ms.sigma([-5.0, 2000.0]), [table[0], table[-1]], rtol=1e-6)  # clamped


def test_model_sampling_inputs_are_checked():
    with pytest.raises(ValueError, match="flow shift must be a finite number > 0"):
        FlowSampling(shift=0.0)
    with pytest.raises(ValueError, match="flow multiplier"):
        FlowSampling(shift=3.0, multiplier=float("nan"))
    with pytest.raises(ValueError, match="model_sigmas must be increasing"):
        DiscreteSampling([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="to_timestep and to_sigma"):
        MappedSampling(sd_table())
    with pytest.raises(ValueError, match="model_sampling or model_sigmas, not both"):
        schedules.get_sigmas("normal", 5, model_sampling=FlowSampling(), model_sigmas=sd_table())
    with pytest.raises(ValueError, match="model_sampling must be a schedules.ModelSampling"):
        schedules.get_sigmas("normal", 5, model_sampling="flow")


# --------------------------------------------------------------------------
# Schedules through the maps


@pytest.mark.parametrize("shift", [1.0, 3.0, 6.0])
@pytest.mark.parametrize("steps", [1, 2, 8, 50, 1000])
def test_normal_and_sgm_uniform_on_flow(shift, steps):
    # Timesteps from sigma_max * 1000 to sigma_min * 1000 (unshifted), back
    # through the shift.
    lo = f32(sd3_sigma(shift, 1 / 1000))
    ms = FlowSampling(shift=shift)
    t = np.linspace(1000.0, lo * 1000.0, steps)
    close(schedules.get_sigmas("normal", steps, model_sampling=ms),
          with_zero(sd3_sigma(shift, t / 1000)))
    t = np.linspace(1000.0, lo * 1000.0, steps + 1)[:-1]
    close(schedules.get_sigmas("sgm_uniform", steps, model_sampling=ms),
          with_zero(sd3_sigma(shift, t / 1000)))


def test_normal_on_flow_ends_where_the_host_ends():
    # Measured in ComfyUI 0.3.64 on an SD3-type checkpoint (shift 3, 8 steps):
    # the last sigma before 0 is 0.008929, not sigma_min = 0.002994.
    out = schedules.get_sigmas("normal", 8, model_sampling=FlowSampling(shift=3.0))
    assert out[-2].item() == pytest.approx(0.008929, abs=5e-7)
    assert FlowSampling(shift=3.0).sigma_min == pytest.approx(0.002994, abs=5e-7)


@pytest.mark.parametrize("mu", [0.5, 1.15])
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_normal_on_flux(mu, steps):
    lo = f32(flux_sigma(mu, 1 / 10000))
    t = np.linspace(1.0, lo, steps)
    close(schedules.get_sigmas("normal", steps, model_sampling=FluxSampling(shift=mu)),
          with_zero([flux_sigma(mu, x) for x in t]))


def test_normal_counts_a_sigma_near_zero_as_the_final_zero():
    # A flow model whose smallest sigma maps back to <= 1e-5: steps + 1
    # timesteps, the last sigma is that one and no 0 is appended (as the host).
    shift = 0.05
    ms = FlowSampling(shift=shift)
    t = np.linspace(ms.sigma_max * 1000.0, ms.sigma_min * 1000.0, 6)
    expected = sd3_sigma(shift, t / 1000)
    assert expected[-1] <= 1e-5
    out = schedules.get_sigmas("normal", 5, model_sampling=ms)
    assert out.shape == (6,) and out[-1].item() > 0.0
    close(out, expected)


def test_table_schedules_read_the_flow_table():
    ms = FlowSampling(shift=3.0)
    table = ms.sigmas
    steps = 8
    idx = [999 - int(k * 1000 / steps) for k in range(steps)]
    close(schedules.get_sigmas("simple", steps, model_sampling=ms), with_zero(table[idx]))
    close(schedules.get_sigmas("ddim_uniform", steps, model_sampling=ms),
          with_zero(table[list(range(1, 1000, 125))[::-1]]))


def test_mapped_sampling_uses_its_maps():
    # EDM-style maps t = log(sigma) / 4: evenly spaced timesteps are evenly
    # spaced log sigmas, so `normal` is the exponential schedule.
    lo, hi = 0.002, 120.0
    table = np.exp(np.linspace(math.log(lo), math.log(hi), 1000))
    ms = MappedSampling(table, to_timestep=lambda s: 0.25 * np.log(s),
                        to_sigma=lambda t: np.exp(4.0 * t))
    close(schedules.get_sigmas("normal", 12, model_sampling=ms),
          with_zero(np.exp(np.linspace(math.log(table[-1]), math.log(table[0]), 12))), rtol=2e-6)


# --------------------------------------------------------------------------
# The KSampler's semantics: denoise, the dropped penultimate sigma, repeats


def test_denoise_keeps_the_tail_of_a_longer_schedule():
    ms = FlowSampling(shift=3.0)
    for name, steps, denoise in [("normal", 10, 0.5), ("karras", 7, 0.3), ("beta", 4, 0.6)]:
        total = int(steps / denoise)
        full = schedules.get_sigmas(name, total, model_sampling=ms)
        got = ksampler_sigmas(name, steps, denoise, model_sampling=ms)
        assert torch.equal(got, full[-(steps + 1):]), name
    assert ksampler_sigmas("normal", 5, 0.0).numel() == 0
    assert ksampler_sigmas("normal", 5, -1.0).numel() == 0
    assert torch.equal(ksampler_sigmas("normal", 5, 0.99995), schedules.get_sigmas("normal", 5))
    # ddim_uniform's extra steps stay at full denoise, as in the host
    assert ksampler_sigmas("ddim_uniform", 7, 1.0).shape == (9,)


def test_discard_penultimate():
    full = schedules.get_sigmas("karras", 9)
    got = ksampler_sigmas("karras", 8, 1.0, discard_penultimate=True)
    assert torch.equal(got, torch.cat([full[:-2], full[-1:]]))
    full = schedules.get_sigmas("normal", int(6 / 0.5) + 1)
    got = ksampler_sigmas("normal", 6, 0.5, discard_penultimate=True)
    assert torch.equal(got, torch.cat([full[:-2], full[-1:]])[-7:])


def test_simple_past_the_table_with_denoise():
    # The host's 3000 sigmas repeat each entry three times; the last 1501 of
    # them cover the lowest 500 entries, each kept once.
    table = schedules.sd1_sigmas().double().numpy()
    got = ksampler_sigmas("simple", 1500, 0.5)
    n = 1000
    raw = [table[n - 1 - int(k * (n / 3000))] for k in range(3000)] + [0.0]
    tail = raw[-1501:]
    expected = [tail[0]] + [b for a, b in zip(tail, tail[1:]) if b != a]
    close(got, expected)
    assert len(expected) == 501


def test_table_lookups_drop_the_tables_own_repeats():
    # A clamped table (Stable Cascade's clamps its ends) repeats entries; a
    # look-up that lands on two equal entries keeps one (a zero-length step).
    table = np.concatenate([[0.01] * 50, np.exp(np.linspace(math.log(0.011), math.log(99.0),
                                                            900)), [100.0] * 50])
    for name in ("simple", "ddim_uniform", "beta"):
        out = schedules.get_sigmas(name, 100, model_sigmas=table)
        assert bool((out[1:] < out[:-1]).all()) and out[-1] == 0.0, name
    out = schedules.get_sigmas("simple", 100, model_sigmas=table).double().numpy()
    raw = [table[999 - int(k * 10)] for k in range(100)]
    close(out, with_zero([raw[0]] + [b for a, b in zip(raw, raw[1:]) if b != a]))
    # Other schedules still refuse repeats: a silent shorter run is not theirs.
    with pytest.raises(ValueError, match="repeated sigmas"):
        schedules.get_sigmas("normal", 5, sigma_min=1.0, sigma_max=1.001)


def test_denoise_errors():
    with pytest.raises(ValueError, match="denoise must be a finite number"):
        ksampler_sigmas("karras", 5, float("nan"))
    with pytest.raises(ValueError, match=r"steps / denoise must be at most 100000"):
        ksampler_sigmas("karras", 10000, 0.01)


# --------------------------------------------------------------------------
# bong_tangent (RES4LYF, ClownsharkBatwing)


def bong_reference(steps, pivot_1=0.6, pivot_2=0.6, slope_1=0.2, slope_2=0.2, middle=0.5):
    """RES4LYF's definition: M = steps + 2 points, split at
    int(M (p1 + p2) / 2), each stage the arctan step
    ((2/pi) atan(-s (x - p)) + 1) / 2 rescaled onto [stage end, stage start],
    slopes divided by M / 40; stage 1 loses its last point."""
    m = steps + 2
    split = int((m * pivot_1 + m * pivot_2) / 2)

    def stage(n, slope, pivot, start, end):
        f = [((2 / math.pi) * math.atan(-slope * (x - pivot)) + 1) / 2 for x in range(n)]
        return [(v - f[-1]) / (f[0] - f[-1]) * (start - end) + end for v in f]
    one = stage(split, slope_1 / (m / 40), int(m * pivot_1), 1.0, middle)
    two = stage(m - split, slope_2 / (m / 40), int(m * pivot_2) - split, middle, 0.0)
    return np.array(one[:-1] + two)


@pytest.mark.parametrize("steps", [2, 3, 8, 20, 30, 100])
def test_bong_tangent_on_flow_is_res4lyfs(steps):
    ours = schedules.get_sigmas("bong_tangent", steps, model_sampling=FlowSampling(shift=3.0))
    close(ours, bong_reference(steps))
    assert ours.shape == (steps + 1,) and ours[0] == 1.0 and ours[-1] == 0.0


def test_bong_tangent_parameters_and_scale():
    params = dict(pivot_1=0.4, pivot_2=0.7, slope_1=0.5, slope_2=0.1, middle=0.3)
    ours = schedules.get_sigmas("bong_tangent", 25, sigma_max=14.6, **params)
    close(ours, 14.6 * bong_reference(25, **params), rtol=2e-6)
    with pytest.raises(ValueError, match=r"bong_tangent: middle must be a number in \(0, 1\)"):
        schedules.get_sigmas("bong_tangent", 10, middle=1.0)
    with pytest.raises(ValueError, match=r"bong_tangent: slope_1 must be a number in \(0, 100\]"):
        schedules.get_sigmas("bong_tangent", 10, slope_1=0.0)
    with pytest.raises(ValueError, match=r"bong_tangent: pivot_2 must be a number in \[0, 1\]"):
        schedules.get_sigmas("bong_tangent", 10, pivot_2=1.5)
    with pytest.raises(ValueError, match="leaves a stage of 1 point"):
        schedules.get_sigmas("bong_tangent", 1)
    with pytest.raises(ValueError, match="leaves a stage of"):
        schedules.get_sigmas("bong_tangent", 10, pivot_1=1.0, pivot_2=1.0)


# --------------------------------------------------------------------------
# optimal_steps (Pei et al. 2025, arXiv:2503.21774): the published tables

OSS = {
    "FLUX": [0.9968, 0.9886, 0.9819, 0.975, 0.966, 0.9471, 0.9158, 0.8287, 0.5512, 0.2808,
             0.001],
    "Wan": [1.0, 0.997, 0.995, 0.993, 0.991, 0.989, 0.987, 0.985, 0.98, 0.975, 0.973, 0.968,
            0.96, 0.946, 0.927, 0.902, 0.864, 0.776, 0.539, 0.208, 0.001],
    "Chroma": [0.992, 0.99, 0.988, 0.985, 0.982, 0.978, 0.973, 0.968, 0.961, 0.953, 0.943,
               0.931, 0.917, 0.9, 0.881, 0.858, 0.832, 0.802, 0.769, 0.731, 0.69, 0.646,
               0.599, 0.55, 0.501, 0.451, 0.402, 0.355, 0.311, 0.27, 0.232, 0.199, 0.169,
               0.143, 0.12, 0.101, 0.084, 0.07, 0.058, 0.048, 0.001],
}


@pytest.mark.parametrize("model_type", list(OSS))
def test_optimal_steps_published(model_type):
    table = np.array(OSS[model_type])
    steps = len(table) - 1
    expected = table.copy()
    expected[-1] = 0.0
    close(schedules.get_sigmas("optimal_steps", steps, model_type=model_type), expected)


@pytest.mark.parametrize("model_type", list(OSS))
@pytest.mark.parametrize("steps", [1, 3, 7, 16, 64])
def test_optimal_steps_interpolated(model_type, steps):
    table = np.array(OSS[model_type])
    pos = np.linspace(0, 1, len(table))
    expected = np.exp(np.interp(np.linspace(0, 1, steps + 1), pos, np.log(table)))
    expected[-1] = 0.0
    close(schedules.get_sigmas("optimal_steps", steps, model_type=model_type), expected)
    assert schedules.get_schedule("optimal_steps").params["model_type"].default == "FLUX"


def test_optimal_steps_model_type_checked():
    with pytest.raises(ValueError, match="optimal_steps: model_type must be one of 'FLUX', "
                                         "'Wan', 'Chroma'"):
        schedules.get_sigmas("optimal_steps", 10, model_type="SD3")


# --------------------------------------------------------------------------
# sd_turbo (the host's SDTurboScheduler)


@pytest.mark.parametrize("steps", [1, 2, 4, 10])
def test_sd_turbo_every_hundredth_timestep(steps):
    table = schedules.sd1_sigmas().double().numpy()
    timesteps = [999 - 100 * k for k in range(steps)]
    close(schedules.get_sigmas("sd_turbo", steps), with_zero(table[timesteps]))
    ms = FlowSampling(shift=3.0)
    close(schedules.get_sigmas("sd_turbo", steps, model_sampling=ms),
          with_zero(sd3_sigma(3.0, np.array(timesteps) / 1000)))


@pytest.mark.parametrize("steps,denoise,first", [(1, 0.5, 499), (2, 0.5, 499), (4, 0.3, None),
                                                 (3, 0.3, 299), (2, 0.75, 699),
                                                 (5, 0.99, 899), (10, 0.99, None)])
def test_sd_turbo_denoise_starts_down_the_grid(steps, denoise, first):
    # start = 10 - int(10 denoise) grid points in: denoise 0.5 starts at 499.
    table = schedules.sd1_sigmas().double().numpy()
    start = 10 - int(10 * denoise)
    if first is None:
        assert start + steps > 10
        with pytest.raises(ValueError, match=rf"sd_turbo: steps must be at most {10 - start} "
                                             rf".* from denoise {denoise:g} on"):
            ksampler_sigmas("sd_turbo", steps, denoise)
        return
    assert 999 - 100 * start == first
    close(ksampler_sigmas("sd_turbo", steps, denoise),
          with_zero(table[[first - 100 * k for k in range(steps)]]))


# --------------------------------------------------------------------------
# ltxv (the host's LTXVScheduler; Lightricks LTX-Video)


def ltxv_reference(steps, max_shift=2.05, base_shift=0.95, stretch=True, terminal=0.1,
                   tokens=4096):
    mu = base_shift + (max_shift - base_shift) * (tokens - 1024) / (4096 - 1024)
    s = np.linspace(1.0, 0.0, steps + 1)[:-1]
    z = np.exp(mu) / (np.exp(mu) + 1 / s - 1)
    if stretch:
        z = 1 - (1 - z) * (1 - terminal) / (1 - z[-1])
    return with_zero(z)


@pytest.mark.parametrize("steps", [2, 5, 20, 100])
@pytest.mark.parametrize("kw", [{}, {"stretch": False}, {"terminal": 0.3, "tokens": 1024},
                                {"max_shift": 3.0, "base_shift": 0.5, "tokens": 20000}])
def test_ltxv_formula(steps, kw):
    params = dict(kw)
    if "stretch" in params:
        params["stretch"] = "true" if params["stretch"] else "false"
    ours = schedules.get_sigmas("ltxv", steps, **params)
    close(ours, ltxv_reference(steps, **kw))
    assert ours[0] == 1.0
    if kw.get("stretch", True):
        assert ours[-2].item() == pytest.approx(kw.get("terminal", 0.1), rel=1e-6)


def test_ltxv_one_step_and_errors():
    close(schedules.get_sigmas("ltxv", 1), [1.0, 0.0])  # no range to stretch
    with pytest.raises(ValueError, match=r"ltxv: terminal must be a number in \(0, 0.99\]"):
        schedules.get_sigmas("ltxv", 10, terminal=0.0)
    with pytest.raises(ValueError, match="ltxv: stretch must be one of 'true', 'false'"):
        schedules.get_sigmas("ltxv", 10, stretch=True)
    with pytest.raises(ValueError, match=r"ltxv: tokens must be an integer in \[1, "):
        schedules.get_sigmas("ltxv", 10, tokens=0)


# --------------------------------------------------------------------------
# The preview reads the same model samplings as the node


@pytest.mark.parametrize("family,shift", [("flow", None), ("flow", "6"), ("flux", None),
                                          ("flux", "0.5"), ("sd15", None), ("sdxl", None)])
@pytest.mark.parametrize("scheduler", ["normal", "sgm_uniform", "simple", "beta", "karras"])
def test_preview_family_is_the_model_sampling(family, shift, scheduler):
    query = {"scheduler": scheduler, "steps": "9", "family": family, "denoise": "0.7"}
    if shift is not None:
        query["shift"] = shift
    ms = family_sampling(family, None if shift is None else float(shift))
    expected = ksampler_sigmas(scheduler, 9, 0.7, model_sampling=ms).tolist()
    assert sigmas_for_query(query) == expected
    if family == "flow":
        assert ms.shift == (3.0 if shift is None else float(shift))
        assert isinstance(ms, FlowSampling) and ms.multiplier == 1000.0
    if family == "flux":
        assert isinstance(ms, FluxSampling) and ms.shift == (1.15 if shift is None else 0.5)
