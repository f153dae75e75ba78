"""Schedules on every model family and the KSampler's denoise semantics,
each against its definition computed here in float64 (the host's equations,
written out in this file). The hosts' own outputs are compared in
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
