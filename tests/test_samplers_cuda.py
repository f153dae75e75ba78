"""On CUDA (skipped without a GPU): every sampler runs on the device, in half
precision and on a 5-D video latent, agrees with its CPU run, and makes no
host-device synchronisation per step (only a fixed few per call: reading the
schedule once, checking the input once). dpm_adaptive is the exception by
design: its step-size control reads one error norm per step."""
import warnings

import pytest
import torch

import helpers as H

from sampler_lab import samplers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

NAMES = H.PLAIN_NAMES


def _sigmas(process, n):
    if process == "ve":
        ramp = torch.linspace(0, 1, n)
        s = (14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7
    else:
        t = torch.linspace(1, 1 / n, n)
        s = 3 * t / (1 + 2 * t)
        s[0] = 1.0
    return torch.cat([s, s.new_zeros(1)])


def _gaussian_denoiser(process, mean=0.2, std=0.6):
    """Exact denoiser of N(mean, std^2) data in tensor ops only, so that the
    model itself never synchronises (the bench models compute in float64 and
    may; here the sampler is under test)."""
    def model(x, sigma):
        s = sigma.float().reshape(-1, *([1] * (x.ndim - 1)))
        a = 1.0 - s if process == "flow" else torch.ones_like(s)
        xf = x.float()
        return (mean + a * std ** 2 / (a * a * std ** 2 + s * s) * (xf - a * mean)).to(x.dtype)
    return model


def _run(name, process, x, sig, noise_seed=0):
    noise = samplers.BrownianNoise(x, float(sig[-2]), float(sig[0]), seed=noise_seed)
    return samplers.get_sampler(name).fn(_gaussian_denoiser(process), x, sig, process=process,
                                         noise=noise)


def _count_syncs(fn):
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu_and_syncs_do_not_grow_with_steps(name, process):
    gen = torch.Generator().manual_seed(0)
    x_cpu = torch.randn(2, 4, 3, 8, 8, generator=gen)  # 5-D: a video latent
    sig = _sigmas(process, 12)
    x_cpu = x_cpu * (float(sig[0]) if process == "ve" else 1.0)
    out_cpu = _run(name, process, x_cpu, sig)
    x = x_cpu.cuda()
    out = _run(name, process, x, sig.cuda())
    assert out.is_cuda and out.shape == x.shape
    err = float((out.cpu() - out_cpu).norm() / out_cpu.norm())
    assert err < 1e-4, f"{name} {process}: CUDA vs CPU relative difference {err:.2e}"
    if name == "dpm_adaptive":
        return
    sig10, sig30 = _sigmas(process, 10).cuda(), _sigmas(process, 30).cuda()
    # The first counted call in a process may meet a lazy CUDA set-up (one
    # more sync); the property is that the count does not grow with steps.
    few = _count_syncs(lambda: _run(name, process, x, sig10))
    many = _count_syncs(lambda: _run(name, process, x, sig30))
    assert many <= few, f"{name} {process}: {few} syncs at 10 steps, {many} at 30"
    assert few <= 8, f"{name} {process}: {few} syncs in one call"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", NAMES)
def test_cuda_half_precision(name, dtype):
    x = torch.randn(2, 4, 16, 16, device="cuda").to(dtype)
    sig = _sigmas("flow", 10).cuda()
    out = _run(name, "flow", x, sig)
    assert out.dtype == dtype and out.is_cuda
    assert torch.isfinite(out.float()).all()
