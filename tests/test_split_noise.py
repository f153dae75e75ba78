"""A split stochastic run equals one run in the engine (issue 22, item 6):
one Brownian path over a fixed absolute sigma range (the model's, as the
nodes build it), asked by each piece for the same intervals, gives each
piece exactly the unsplit run's increments. Oracle: the unsplit run."""
import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.samplers import BrownianNoise

SINGLE_STEP = ["euler_ancestral", "dpmpp_sde", "lcm", "ddpm", "dpm_2_ancestral",
               "dpmpp_2s_ancestral", "seeds_2", "seeds_3"]


def _pieces(name, process, split, eta=None, seed=5):
    data = H.gaussian(process)
    sig = H.karras(20) if process == "ve" else H.flow_shifted(20)
    # The model's range, wider than the schedule: a piece never sets it.
    lo, hi = float(sig[-2]) * 0.5, float(sig[0])
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x * (float(sig[0]) if process == "ve" else 1.0)
    fn = samplers.get_sampler(name).fn
    kw = {} if eta is None else {"eta": eta}
    whole = fn(data.denoiser, x, sig, process=process, noise=BrownianNoise(x, lo, hi, seed), **kw)
    x_mid = x
    for a, b in zip([0] + split, split + [len(sig) - 1]):
        x_mid = fn(data.denoiser, x_mid, sig[a:b + 1], process=process,
                   noise=BrownianNoise(x, lo, hi, seed), **kw)
    return whole, x_mid


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", SINGLE_STEP)
def test_single_step_split_equals_one_run(name, process):
    whole, split = _pieces(name, process, [7, 13])
    other, _ = _pieces(name, process, [7, 13], seed=6)
    assert H.rel_err(other, whole) > 0.05  # the noise shows in the result
    assert H.rel_err(split, whole) < 1e-12


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "dpmpp_3m_sde", "er_sde", "sa_solver"])
def test_multistep_split_keeps_the_noise(name, process):
    """A multistep history restarts at the split; the noise is the unsplit
    run's: far closer than another seed, with its spread."""
    whole, split = _pieces(name, process, [10])
    other, _ = _pieces(name, process, [10], seed=6)
    det_whole, det_split = _pieces(name, process, [10], eta=0.0)
    gap, seed_gap = H.rel_err(split, whole), H.rel_err(other, whole)
    print(f"SPLIT {name} {process}: {gap:.2e} (eta 0: {H.rel_err(det_split, det_whole):.2e}, "
          f"another seed {seed_gap:.2e})")
    assert gap < 0.1 * seed_gap
    ratio = float(split.std() / whole.std())
    print(f"  std ratio {ratio:.4f}")
    assert abs(ratio - 1.0) < 0.05
