"""CFG++ (Chung et al. 2024, arXiv:2406.08070) in the engine: the step's
data prediction is the guided one, its noise estimate the unconditional one,
the multistep history unconditional. The unconditional prediction reaches
the engine through one channel, `uncond` (nodes/host.py fills it from the
host's post-CFG hook); the comparison with the core's CFG++ samplers runs in
tests/host/test_sampler_parity.py."""
import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.bench import models

# the core's *_cfg_pp forms of a base sampler (cfgpp_ud10_ab has no base: tests/test_core2026_samplers.py)
CFG_PP = [n for n in samplers.SAMPLER_NAMES
          if samplers.get_sampler(n).cfg_pp and n.endswith("_cfg_pp")]


class Guided:
    """A guided model over two exact Gaussian denoisers: D_g = D_u + w (D_c - D_u);
    `uncond` returns D_u of the last call."""

    def __init__(self, process, w):
        self.cond = models.GaussianData(0.3, 0.5, process).denoiser
        self.uncond_model = models.GaussianData(-0.2, 0.7, process).denoiser
        self.w, self.last = w, None

    def __call__(self, x, sigma, **kw):
        c, u = self.cond(x, sigma), self.uncond_model(x, sigma)
        self.last = u
        return u + self.w * (c - u)

    def uncond(self):
        return self.last


def test_every_core_cfg_pp_name_is_here():
    assert set(CFG_PP) == {"euler_cfg_pp", "euler_ancestral_cfg_pp", "dpmpp_2m_cfg_pp",
                           "dpmpp_2s_ancestral_cfg_pp", "res_multistep_cfg_pp",
                           "res_multistep_ancestral_cfg_pp", "gradient_estimation_cfg_pp"}


@pytest.mark.parametrize("name", CFG_PP)
def test_without_the_unconditional_prediction_it_says_so(name):
    model = Guided("ve", 1.5)
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64) * 14.6
    with pytest.raises(ValueError, match="CFG\\+\\+.*uncond"):
        samplers.get_sampler(name).fn(model, x, H.karras(6, 0.03, 14.6))
    with pytest.raises(ValueError, match="uncond must return"):
        samplers.get_sampler(name).fn(model, x, H.karras(6, 0.03, 14.6), uncond=lambda: 3.0)


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name", CFG_PP)
def test_without_guidance_it_is_the_base_sampler(name, process):
    """At w = 0 the guided and unconditional predictions agree and CFG++ is
    its base sampler, noise included (euler's base is the same Euler step in
    the data frame; in flow's lambda it starts, like the core's, at
    percent_to_sigma(1e-4), 1e-4 below sigma 1 by default)."""
    model = Guided(process, 0.0)
    s0 = H.sigma_max(process)
    x = H.gaussian(process).noisy((2, 3, 4, 4), s0, torch.Generator().manual_seed(1),
                                  torch.float64)
    sig = H.schedule(process, 9)
    base = name.replace("_cfg_pp", "")
    a = samplers.get_sampler(name).fn(model, x, sig, process=process, uncond=model.uncond,
                                      noise=H.ReplayNoise(x, 2))
    b = samplers.get_sampler(base).fn(model, x, sig, process=process, noise=H.ReplayNoise(x, 2))
    tol = 3e-4 if process == "flow" and name.startswith("euler") else 1e-12
    assert H.rel_err(a, b) < tol


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_one_euler_step_is_the_papers_update(process):
    """Chung et al. 2024, eq. 6 (DDIM form): x' = alpha' x0_g + sigma' eps_u with
    eps_u = (x - alpha D_u) / sigma, written out here from the definition."""
    model = Guided(process, 1.7)
    s0, s1 = (14.6, 3.0) if process == "ve" else (0.9, 0.6)
    alpha = (lambda s: 1.0) if process == "ve" else (lambda s: 1.0 - s)
    x = H.gaussian(process).noisy((2, 3, 4, 4), s0, torch.Generator().manual_seed(3),
                                  torch.float64)
    seen = {}

    def cb(d):
        if d["i"] == 1:
            seen["x"] = d["x"]
    sig = torch.tensor([s0, s1, 0.0], dtype=torch.float64)
    samplers.get_sampler("euler_cfg_pp").fn(model, x, sig, process=process,
                                            uncond=model.uncond, callback=cb)
    sb = torch.full((2,), s0, dtype=torch.float64)
    u = model.uncond_model(x, sb)
    g = u + 1.7 * (model.cond(x, sb) - u)
    want = alpha(s1) * g + s1 * (x - alpha(s0) * u) / s0
    assert H.rel_err(seen["x"], want) < 1e-12
