"""Declared model calls equal actual model calls, for every sampler, step
count, noise strength and process (SamplerSpec.calls is what the node, the
benchmark's budgets and the schedule optimizer rely on). The count is the
model's own, with a noise source that draws (so stochastic paths run)."""
import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.bench import models

CASES = [("ve", H.karras(1, 0.03, 14.6)), ("ve", H.karras(2, 0.03, 14.6)),
         ("ve", H.karras(5, 0.03, 14.6)), ("ve", H.karras(12, 0.03, 14.6)),
         ("ve", H.karras(7, 0.03, 14.6, zero=False)),
         ("flow", H.flow_shifted(1)), ("flow", H.flow_shifted(6)), ("flow", H.flow_shifted(12)),
         ("flow", H.flow_karras(9, zero=False))]


def _run(name, process, sigmas, eta, counter, uncond=None):
    data = H.gaussian(process)
    x = data.noisy((2, 3, 4, 4), float(sigmas[0]), torch.Generator().manual_seed(0),
                   torch.float64)
    info = {}
    extra = {"info": info} if name == "dpm_adaptive" else {}
    if uncond is not None:
        extra["uncond"] = uncond
    samplers.get_sampler(name).fn(counter, x, sigmas, process=process, eta=eta,
                                  noise=H.ReplayNoise(x, 1), **extra)
    return info


@pytest.mark.parametrize("eta", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("process,sigmas", CASES, ids=lambda c: str(len(c)) if
                         torch.is_tensor(c) else c)
@pytest.mark.parametrize("name", samplers.SAMPLER_NAMES)
def test_declared_calls_are_spent(name, process, sigmas, eta):
    spec = samplers.get_sampler(name)
    if name in H.NOISELESS and eta:
        pytest.skip(f"{name} refuses noise (tests/test_core2026_samplers.py)")
    data = H.gaussian(process)
    counter = models.CallCounter(data.denoiser)
    uncond = None
    if spec.cfg_pp:  # the unguided model is its own unconditional prediction
        last = {}

        def model(x, s, **kw):
            last["u"] = counter(x, s, **kw)
            return last["u"]
        uncond, runner = (lambda: last["u"]), model
    else:
        runner = counter
    info = _run(name, process, sigmas, eta, runner, uncond)
    declared = spec.calls(sigmas, eta=eta, process=process)
    if spec.calls_per_step is None:  # dpm_adaptive: the run reports what it spent
        assert declared is None and info["nfe"] in (counter.calls, counter.calls - 1)
    else:
        assert declared == counter.calls, (name, process, len(sigmas) - 1, eta)


def test_dpm_fast_spends_n_calls_for_n_steps():
    """The issue's case: 20 steps cost 20 calls (the host's budget), 40 cost 40."""
    for n in (20, 40):
        counter = models.CallCounter(H.gaussian("ve").denoiser)
        x = torch.randn(2, 3, 4, 4, dtype=torch.float64) * 14.6
        samplers.get_sampler("dpm_fast").fn(counter, x, H.karras(n, 0.03, 14.6))
        assert counter.calls == n
