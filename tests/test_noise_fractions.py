"""samplers.noise_fractions (what the widget draws) against the fresh noise
each sampler really adds: with the denoiser D = 0 (all data at the origin)
a step is x_next = a x + b z, and b / sigma_next is the fresh fraction; b is
read off by running the sampler with the noise source returning 0 and then 1."""
import pytest
import torch

from sampler_lab.samplers import SAMPLERS, noise_fractions

# Their noise follows a grid of their own (uniform in lambda / adaptive), not
# the schedule's steps.
OWN_GRID = {"dpm_fast", "dpm_adaptive"}
CASES = [("ve", [14.6, 6.0, 0]), ("ve", [2.0, 1.5, 0]), ("flow", [0.9, 0.5, 0]),
         ("flow", [1.0, 0.7, 0])]


def _x1(name, process, sigmas, eta, z):
    seen = {}

    def model(x, sigma, **kw):
        return torch.zeros_like(x)

    def callback(d):
        if d["i"] == 1:
            seen["x"] = d["x"].clone()

    x0 = torch.full((1, 1, 2, 2), 0.3, dtype=torch.float64)
    SAMPLERS[name].fn(model, x0, torch.tensor(sigmas, dtype=torch.float64), process=process,
                      eta=eta, callback=callback, noise=lambda s, t: torch.full_like(x0, z))
    return seen["x"]


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("process,sigmas", CASES)
@pytest.mark.parametrize("name", [n for n in SAMPLERS if n not in OWN_GRID])
def test_fraction_is_the_fresh_noise_the_sampler_adds(name, process, sigmas, eta):
    b = float((_x1(name, process, sigmas, eta, 1.0) - _x1(name, process, sigmas, eta, 0.0))
              .flatten()[0])
    want = noise_fractions(name, torch.tensor(sigmas, dtype=torch.float64), process=process, eta=eta)
    assert len(want) == 2 and want[1] == 0.0
    assert b / sigmas[1] == pytest.approx(want[0], abs=1e-9)


def test_bad_input_names_it():
    with pytest.raises(ValueError, match="unknown sampler"):
        noise_fractions("nope", torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="eta"):
        noise_fractions("euler", torch.tensor([1.0, 0.0]), eta=-1)
    with pytest.raises(ValueError, match="decreasing"):
        noise_fractions("euler", torch.tensor([1.0, 2.0, 0.0]))
