"""Noise types (issue 23, item 3): moments and spectra against their
definitions, seeding, and a stochastic sampler keeping the data's scale with
each as fresh noise. Oracles: closed-form moments (uniform kurtosis 9/5,
Laplace 6, Student's t(5) 9), the power-law exponents that define pink / blue
/ brown / violet noise, white noise's flat spectrum as the reference for the
low-frequency-heavy types, and the exact Gaussian-data solution's spread."""
import math

import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.samplers import noise_types as nt

SPATIAL = ["pyramid-bilinear", "hires-pyramid-bilinear", "perlin", "pink", "blue", "brown",
           "violet"]
IID_KURTOSIS = {"gaussian": 3.0, "uniform": 1.8, "laplacian": 6.0, "studentt": 9.0}


def _draw(kind, seed=0, shape=(4, 4, 64, 64)):
    return nt.draw(kind, shape, torch.Generator().manual_seed(seed))


def _radial_power(z):
    """(log f, log P(f)) of the radially averaged power spectrum, f in
    [0.03, 0.5] cycles per pixel."""
    p = (torch.fft.fft2(z).abs() ** 2).mean(dim=(0, 1))
    h, w = p.shape
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2)
    edges = torch.logspace(math.log10(0.03), math.log10(0.5), 10)
    xs, ys = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (f >= lo) & (f < hi)
        xs.append(math.log(float(f[m].mean())))
        ys.append(math.log(float(p[m].mean())))
    return torch.tensor(xs), torch.tensor(ys)


def _slope(z):
    x, y = _radial_power(z)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


def _low_high(z):
    """Power below 1/16 cycles per pixel over power above 1/4."""
    p = (torch.fft.fft2(z).abs() ** 2).mean(dim=(0, 1))
    h, w = p.shape
    f = torch.sqrt(torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.fftfreq(w)[None, :] ** 2)
    low, high = (f > 0) & (f < 1 / 16), f > 0.25
    return float(p[low].mean() / p[high].mean())


@pytest.mark.parametrize("kind", [k for k in nt.NOISE_TYPES if k != "brownian"])
def test_zero_mean_unit_variance_per_channel(kind):
    if kind in IID_KURTOSIS:  # independent values: sample moments over 65536 per channel
        z = _draw(kind, shape=(16, 4, 64, 64)).transpose(0, 1).reshape(4, -1)
        k = IID_KURTOSIS[kind]
        assert float(z.mean(-1).abs().max()) < 5 / math.sqrt(z.shape[1])
        assert float((z.var(-1) - 1).abs().max()) < 5 * math.sqrt((k - 1) / z.shape[1]) + 0.02
    else:  # spatial fields: each (batch, channel) slice standardised
        per = _draw(kind).reshape(4, 4, -1)
        assert float(per.mean(-1).abs().max()) < 1e-9
        assert float((per.var(-1) - 1).abs().max()) < 1e-6


@pytest.mark.parametrize("kind,kurtosis", list(IID_KURTOSIS.items()))
def test_iid_types_have_their_distributions_kurtosis(kind, kurtosis):
    z = nt.draw(kind, (64, 4, 64, 64), torch.Generator().manual_seed(1))
    k = float(((z - z.mean()) ** 4).mean() / z.var() ** 2)
    # t(5)'s fourth moment converges slowly (its eighth is infinite)
    assert abs(k - kurtosis) < (1.5 if kind == "studentt" else 0.1), (kind, k)
    assert abs(_slope(z[:4])) < 0.1  # independent values: a flat spectrum


@pytest.mark.parametrize("kind,alpha", [("pink", 1.0), ("blue", -1.0), ("brown", 2.0),
                                        ("violet", -2.0)])
def test_power_law_spectra_have_their_slope(kind, alpha):
    assert abs(_slope(_draw(kind)) + alpha) < 0.15


@pytest.mark.parametrize("kind", ["pyramid-bilinear", "hires-pyramid-bilinear", "perlin"])
def test_pyramid_and_perlin_are_low_frequency_heavy(kind):
    white = _low_high(_draw("gaussian"))
    got = _low_high(_draw(kind))
    # hires-pyramid is the milder lift by definition (two octaves, discount 0.5)
    assert got > (1.5 if kind.startswith("hires") else 2.0) * white, (kind, got, white)


def test_pyramid_is_heavier_at_low_frequencies_than_hires_pyramid():
    assert _low_high(_draw("pyramid-bilinear")) > 2 * _low_high(_draw("hires-pyramid-bilinear"))


@pytest.mark.parametrize("kind", [k for k in nt.NOISE_TYPES if k != "brownian"])
def test_seeded_and_reproducible(kind):
    assert torch.equal(_draw(kind, 5), _draw(kind, 5))
    assert not torch.equal(_draw(kind, 5), _draw(kind, 6))


def test_spatial_types_refuse_a_latent_without_height_and_width():
    with pytest.raises(ValueError, match="spatial"):
        nt.draw("perlin", (2, 16), torch.Generator().manual_seed(0))


def test_slerp_ends_bit_for_bit_and_unit_variance_between():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 32, 32, generator=g), torch.randn(3, 4, 32, 32, generator=g)
    assert nt.slerp(a, b, 0.0) is a and nt.slerp(a, b, 1.0) is b
    for t in (0.25, 0.5, 0.75):
        m = nt.slerp(a, b, t)
        assert abs(float(m.var()) - 1.0) < 0.03
        # on the great circle: the angle to a is t times the angle between a and b
        cos = lambda u, v: float((u.flatten() * v.flatten()).sum() / u.norm() / v.norm())
        omega = math.acos(cos(a[0], b[0]))
        assert abs(math.acos(cos(m[0], a[0])) - t * omega) < 1e-4
    with pytest.raises(ValueError, match="variation_strength"):
        nt.slerp(a, b, 1.2)


def test_mixed_fresh_noise_keeps_unit_variance():
    x = torch.zeros(4, 4, 32, 32)
    first, second = nt.TypedNoise(x, "gaussian", 1), nt.TypedNoise(x, "gaussian", 2)
    mixed = nt.MixedNoise(first, second, 0.5)
    z = torch.cat([mixed(1.0, 0.5) for _ in range(8)])
    assert abs(float(z.var()) - 1.0) < 0.03


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("kind", ["gaussian", "uniform", "laplacian", "studentt"] + SPATIAL)
@pytest.mark.parametrize("name", ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde"])
def test_stochastic_samplers_keep_the_data_scale_with_each_type(name, kind, process):
    """Gaussian data, exact denoiser, 20 karras / shifted-flow steps, eta 1:
    the output's per-channel std over the data's is what the Brownian path
    gives, within 5% (8% for the low-frequency-heavy fields, whose 16x16
    latents hold fewer independent values; the engine's data-scale band is
    that of its own noise, tests/test_samplers_std_band.py)."""
    data = H.gaussian(process)
    sig = H.karras(20) if process == "ve" else H.flow_shifted(20)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 3, 16, 16, generator=g, dtype=torch.float64)
    x = x * (float(sig[0]) if process == "ve" else 1.0)
    fn = samplers.get_sampler(name).fn
    std = torch.tensor(H.STD).reshape(1, 3, 1)

    def spread(noise):
        out = fn(data.denoiser, x, sig, process=process, noise=noise)
        return float((out.reshape(8, 3, -1).std(dim=(0, 2)) / std.flatten()).mean())
    ref = spread(samplers.BrownianNoise(x, float(sig[-2]), float(sig[0]), 4))
    got = spread(nt.TypedNoise(x, kind, 4))
    print(f"SCALE {name} {process} {kind}: {got:.3f} (brownian {ref:.3f})")
    low = kind in ("pyramid-bilinear", "perlin", "brown")
    assert abs(got / ref - 1.0) < (0.08 if low else 0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["gaussian", "studentt", "perlin", "pink"])
def test_same_numbers_on_every_device(kind):
    """Drawn on the CPU and moved: a CUDA latent gets the CPU latent's noise."""
    cpu = nt.TypedNoise(torch.zeros(2, 4, 16, 16), kind, 9)
    gpu = nt.TypedNoise(torch.zeros(2, 4, 16, 16, device="cuda"), kind, 9)
    for _ in range(3):
        assert torch.equal(cpu(1.0, 0.5), gpu(1.0, 0.5).cpu())
    assert torch.equal(nt.initial_noise(kind, (2, 4, 16, 16), 9),
                       nt.initial_noise(kind, (2, 4, 16, 16), 9))
