"""samplers.noise_fractions (what the widget draws) against the fresh noise
each sampler really adds. With the denoiser D = 0 (all data at the origin)
and a step's deterministic part fixed, the noise in x at the next grid point
is what the step drew:

* samplers that draw once per step: x_next = a x + b z, and b / sigma_next is
  the fresh fraction; b is read off exactly by handing them z = 0 and z = 1;
* samplers that draw at every stage (dpmpp_sde, SEEDS): the spread of x_next
  over 20000 independent draws, a statistical check (2% band).
"""
import pytest
import torch

import helpers as H

from sampler_lab.samplers import SAMPLERS, noise_fractions

# Their noise follows a grid of their own (uniform in lambda / adaptive), not
# the schedule's steps.
OWN_GRID = {"dpm_fast", "dpm_adaptive"}
STAGE_NOISE = {n for n, s in SAMPLERS.items() if getattr(s.method(), "stage_noise", None)}
CASES = [("ve", [14.6, 6.0, 0]), ("ve", [2.0, 1.5, 0]), ("flow", [0.9, 0.5, 0]),
         ("flow", [1.0, 0.7, 0])]


def _x1(name, process, sigmas, eta, noise, x0):
    seen = {}

    def model(x, sigma, **kw):
        return torch.zeros_like(x)

    def callback(d):
        if d["i"] == 1:
            seen["x"] = d["x"].clone()

    SAMPLERS[name].fn(model, x0, torch.tensor(sigmas, dtype=torch.float64), process=process,
                      eta=eta, callback=callback, noise=noise, noise_window=(0.0, 1.0))
    return seen["x"]


def _want(name, process, sigmas, eta):
    want = noise_fractions(name, torch.tensor(sigmas, dtype=torch.float64), process=process,
                           eta=eta, noise_window=(0.0, 1.0))
    assert len(want) == 2 and want[1] == 0.0
    return want[0]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("process,sigmas", CASES)
@pytest.mark.parametrize("name", [n for n in H.PLAIN_NAMES if n not in OWN_GRID | STAGE_NOISE])
def test_fraction_is_the_fresh_noise_the_sampler_adds(name, process, sigmas, eta):
    x0 = torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64)
    b = float((_x1(name, process, sigmas, eta, lambda s, t: torch.full_like(x0, 1.0), x0)
               - _x1(name, process, sigmas, eta, lambda s, t: torch.zeros_like(x0), x0))
              .flatten()[0])
    assert b / sigmas[1] == pytest.approx(_want(name, process, sigmas, eta), abs=1e-9)


@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("process,sigmas", CASES)
@pytest.mark.parametrize("name", sorted(STAGE_NOISE))
def test_fraction_of_samplers_with_stage_noise(name, process, sigmas, eta):
    x0 = torch.full((20000,), 0.3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x1 = _x1(name, process, sigmas, eta, lambda s, t: torch.randn(x0.shape, generator=gen,
                                                                   dtype=x0.dtype), x0)
    assert float(x1.std()) / sigmas[1] == pytest.approx(_want(name, process, sigmas, eta),
                                                         rel=0.02, abs=0.01)


def test_window_turns_the_noise_off_outside_it():
    sig = torch.tensor([14.6, 6.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    full = noise_fractions("sa_solver", sig, noise_window=(0.0, 1.0))
    default = noise_fractions("sa_solver", sig)  # 20%-80% of the SD 1.x process
    assert all(f > 0 for f in full[:-1])
    assert default[0] == 0.0 and default[1] > 0.0  # sigma 6 is above the 20% point


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="unknown sampler"):
        noise_fractions("nope", torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="eta"):
        noise_fractions("euler", torch.tensor([1.0, 0.0]), eta=-1)
    with pytest.raises(ValueError, match="decreasing"):
        noise_fractions("euler", torch.tensor([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="noise_window"):
        noise_fractions("euler", torch.tensor([1.0, 0.0]), noise_window=(0.8, 0.2))
