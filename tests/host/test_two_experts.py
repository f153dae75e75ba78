"""Two experts (model_low, boundary, cfg_low) in a real ComfyUI: two exact
Gaussian eps models with different means, each recording the sigmas it is
called at. The switch point is checked by counting calls per model, the
single run (history kept across the switch) against the engine's own run
over a sigma-chosen pair of exact denoisers, and against two chained runs,
which restart the history and differ."""
import math

import numpy as np
import pytest
import torch

from conftest import OLDER_HOSTS_ONLY
from hostlib import GaussianEps, comfy, cond, sd3_model  # noqa: F401  (fixtures)
from test_workflows import host_nodes  # noqa: F401

HIGH, LOW, STD = (0.3, -0.4, 0.5)


class Recording(GaussianEps):
    """GaussianEps that records the sigma of each call."""

    def __init__(self, ms, mean):
        super().__init__(ms, mean=mean, std=STD)
        self.seen = []

    def forward(self, x, t, context=None, **kwargs):
        self.seen.extend(float(s) for s in self.ms.sigma(t).reshape(-1)[:1])
        return super().forward(x, t, context, **kwargs)


def _model(comfy, mean):
    config = comfy.supported_models.SD15({"disable_unet_model_creation": True})
    base = comfy.model_base.BaseModel(config, comfy.model_base.ModelType.EPS, device="cpu")
    base.diffusion_model = Recording(base.model_sampling, mean)
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"),
                                            offload_device=torch.device("cpu"))


@pytest.fixture
def experts(comfy):
    if getattr(comfy.samplers, "CFGGuider", None) is None:
        pytest.skip("this host samples without CFGGuider (two experts need it)")
    return _model(comfy, HIGH), _model(comfy, LOW)


def _advanced(host_nodes, model, cond, sampler, steps, latent=None, start=0, end=10000,
              add_noise="enable", leftover="disable", seed=3, cfg=1.0, scheduler="karras",
              **extra):
    pos, neg = cond
    latent = latent or {"samples": torch.zeros(1, 4, 8, 8)}
    with torch.inference_mode():
        out = host_nodes["SamplerLabKSamplerAdvanced"]().sample(
            model, add_noise, seed, steps, cfg, sampler, scheduler, pos, neg, latent, start, end,
            leftover, **extra)
    return out["result"][0], out["ui"]["sampler_lab_sigmas"]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "heun"])
def test_the_switch_is_where_sigma_crosses_the_boundary(host_nodes, experts, cond, sampler):
    high, low = experts
    boundary = 2.0
    _, sigmas = _advanced(host_nodes, high, cond, sampler, 10, model_low=low,
                          boundary=boundary, boundary_unit="sigma")
    seen_high, seen_low = high.model.diffusion_model.seen, low.model.diffusion_model.seen
    assert seen_high and seen_low
    assert min(seen_high) >= boundary * (1 - 1e-6) and max(seen_low) < boundary
    grid = [s for s in sigmas[:-1]]
    if sampler != "heun":  # one call per grid sigma: count them
        assert len(seen_high) == sum(s >= boundary for s in grid)
        assert len(seen_low) == sum(s < boundary for s in grid)
    else:  # heun's second stage at the next sigma belongs to that sigma's expert
        want_high = sum(s >= boundary for s in grid) + sum(
            n >= boundary for n in sigmas[1:-1])
        assert len(seen_high) == want_high


def test_boundary_as_a_timestep_is_the_models_own(host_nodes, experts, cond, comfy):
    """875 on an eps model is the sigma the model's table puts at timestep
    875 (the host's own sigma(t))."""
    high, low = experts
    from sampler_lab.nodes import host
    ms = high.get_model_object("model_sampling") if hasattr(high, "get_model_object") \
        else high.model.model_sampling
    sigma_b = host.expert_boundary(ms, 875.0, "timestep")
    assert math.isclose(sigma_b, float(ms.sigma(torch.tensor(875.0))), rel_tol=1e-4)
    _advanced(host_nodes, high, cond, "euler", 12, model_low=low, boundary=875.0)
    assert min(high.model.diffusion_model.seen) >= sigma_b * (1 - 1e-5)
    assert max(low.model.diffusion_model.seen) < sigma_b


def _eps_denoiser(ms, mean):
    """The host's denoised estimate of GaussianEps written out in float64:
    the host hands the eps model x / sqrt(1 + s^2) and the timestep nearest
    to s (so the model sees its table's sigma s_q), and returns x - s eps."""
    def denoise(x, sigma):
        s = float(sigma.reshape(-1)[0])
        sq = float(ms.sigma(ms.timestep(torch.tensor([s], dtype=torch.float32))))
        xv = x / math.sqrt(1.0 + s * s) * math.sqrt(1.0 + sq * sq)
        d = mean + STD ** 2 / (STD ** 2 + sq * sq) * (xv - mean)
        return x - s * (xv - d) / sq
    return denoise


def _engine_run(name, sigmas, x, ms):
    """Our sampler over an ExpertSwitch of the two models' denoisers, in
    float64: what one run with the history kept computes."""
    from sampler_lab import samplers
    from sampler_lab.samplers.experts import ExpertSwitch
    switch = ExpertSwitch(_eps_denoiser(ms, HIGH), _eps_denoiser(ms, LOW), 2.0)
    sig = torch.tensor(sigmas, dtype=torch.float64)
    return samplers.get_sampler(name).fn(switch, x.double(), sig, process="ve"), switch


@pytest.mark.parametrize("name", ["dpmpp_2m", "res_multistep", "ipndm"])
def test_a_multistep_history_is_carried_across_the_switch(host_nodes, experts, cond, comfy,
                                                          name):
    high, low = experts
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    out, sigmas = _advanced(host_nodes, high, cond, name, 10, latent=latent, model_low=low,
                            boundary=2.0, boundary_unit="sigma")
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    # from sigma_max the host starts eps models at noise * sqrt(1 + sigma^2)
    x0 = noise * math.sqrt(1.0 + sigmas[0] ** 2)
    want, switch = _engine_run(name, sigmas, x0, high.model.model_sampling)
    want = high.model.latent_format.process_out(want)  # the host hands latents out so
    got = out["samples"].double()
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) < 2e-5 * scale, float((got - want).abs().max())
    assert switch.calls["high"] == len(high.model.diffusion_model.seen)
    # two chained runs (the usual KSampler (Advanced) pair) restart the history
    k = sum(s >= 2.0 for s in sigmas[:-1])
    part, _ = _advanced(host_nodes, high, cond, name, 10, latent=latent, end=k,
                        leftover="enable")
    chained, _ = _advanced(host_nodes, low, cond, name, 10, latent=part, start=k,
                           add_noise="disable")
    gap = float((chained["samples"].double() - want).abs().max())
    assert gap > 50 * float((got - want).abs().max()) and gap > 1e-4 * scale, gap


def test_cfg_low_guides_the_low_expert_only(host_nodes, experts, cond):
    high, low = experts
    a, _ = _advanced(host_nodes, high, cond, "euler", 8, cfg=1.0, model_low=low, boundary=2.0,
                     boundary_unit="sigma", cfg_low=-1.0)
    b, _ = _advanced(host_nodes, high, cond, "euler", 8, cfg=1.0, model_low=low, boundary=2.0,
                     boundary_unit="sigma", cfg_low=1.0)
    assert torch.equal(a["samples"], b["samples"])  # -1 is the same cfg


def test_the_sampler_path_is_the_same_run(host_nodes, experts, cond, comfy):
    """Our Sampler with model_low inside the host's CFGGuider (what
    SamplerCustomAdvanced runs) gives the KSampler (Advanced)'s latent."""
    high, low = experts
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    ref, sigmas = _advanced(host_nodes, high, cond, "dpmpp_2m", 8, latent=latent, model_low=low,
                            boundary=2.0, boundary_unit="sigma")
    sampler = host_nodes["SamplerLabSampler"]().get_sampler(
        "dpmpp_2m", model_low=low, boundary=2.0, boundary_unit="sigma")[0]
    guider = comfy.samplers.CFGGuider(high)
    guider.set_conds(*cond)
    guider.set_cfg(1.0)
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    with torch.inference_mode():
        out = guider.sample(noise, latent["samples"], sampler, torch.tensor(sigmas), seed=3)
    assert torch.allclose(out.float(), ref["samples"], rtol=0, atol=1e-6)


def test_bad_experts_are_named(host_nodes, experts, cond, sd3_model):
    high, low = experts
    with pytest.raises(ValueError, match="boundary.*range"):
        _advanced(host_nodes, high, cond, "euler", 4, model_low=low, boundary=50.0,
                  boundary_unit="sigma")
    with pytest.raises(ValueError, match="boundary.*range"):
        _advanced(host_nodes, high, cond, "euler", 4, model_low=low, boundary=999.9)
    with pytest.raises(ValueError, match="model_low is a flow model"):
        _advanced(host_nodes, high, cond, "euler", 4, model_low=sd3_model, boundary=500.0)
    with pytest.raises(ValueError, match="cfg_low"):
        _advanced(host_nodes, high, cond, "euler", 4, model_low=low, cfg_low=-0.5)


def test_without_model_low_nothing_changes(host_nodes, experts, cond):
    high, _ = experts
    a, _ = _advanced(host_nodes, high, cond, "dpmpp_2m", 6)
    b, _ = _advanced(host_nodes, high, cond, "dpmpp_2m", 6, boundary=100.0, cfg_low=3.0)
    assert torch.equal(a["samples"], b["samples"])


def test_engine_switch_and_step():
    from sampler_lab.samplers.experts import ExpertSwitch, boundary_sigma, switch_step
    sw = ExpertSwitch(lambda x, s: x + 1, lambda x, s: x - 1, 0.5)
    assert float(sw(torch.zeros(1), torch.tensor([0.5]))) == 1.0
    assert float(sw(torch.zeros(1), torch.tensor([0.49]))) == -1.0
    assert sw.calls == {"high": 1, "low": 1}
    assert switch_step([1.0, 0.8, 0.4, 0.1, 0.0], 0.5) == 2
    assert switch_step([1.0, 0.8, 0.0], 0.1) == 2
    assert math.isclose(boundary_sigma(875, "timestep", 0.001, 1.0, lambda s: s * 1000.0), 0.875,
                        rel_tol=1e-12)
    with pytest.raises(ValueError, match="boundary_unit"):
        boundary_sigma(1.0, "percent", 0.1, 10.0)
    np.testing.assert_allclose(boundary_sigma(3.0, "sigma", 0.1, 10.0), 3.0)


def test_a_host_without_cfgguider_says_so(comfy, host_nodes, cond):
    if getattr(comfy.samplers, "CFGGuider", None) is not None:
        pytest.skip(f"{OLDER_HOSTS_ONLY} this host has CFGGuider")
    high, low = _model(comfy, HIGH), _model(comfy, LOW)
    with pytest.raises(ValueError, match="model_low .*CFGGuider"):
        _advanced(host_nodes, high, cond, "euler", 4, model_low=low, boundary=2.0,
                  boundary_unit="sigma")


def test_the_preview_route_carries_the_boundary(comfy):
    """GET /sampler_lab/sigmas with boundary (and boundary_unit) answers the
    boundary's sigma and the step where model_low takes over, for the
    preview to mark."""
    from sampler_lab.nodes import routes
    from sampler_lab.schedules import get_sigmas
    from sampler_lab.schedules.sampling import FlowSampling
    body = routes.sigmas_answer({"scheduler": "simple", "steps": "8", "family": "flow",
                                 "shift": "5", "boundary": "875"})
    assert math.isclose(body["boundary_sigma"], 0.875, rel_tol=1e-9)
    sig = get_sigmas("simple", 8, model_sampling=FlowSampling(shift=5.0)).tolist()
    assert body["sigmas"] == sig
    k = body["switch_step"]
    assert all(s >= 0.875 for s in sig[:k]) and sig[k] < 0.875
    sd = routes.sigmas_answer({"scheduler": "karras", "steps": "10", "boundary": "2.0",
                               "boundary_unit": "sigma"})
    assert sd["boundary_sigma"] == 2.0 and sd["sigmas"][sd["switch_step"]] < 2.0
    with pytest.raises(ValueError, match="boundary"):
        routes.sigmas_answer({"scheduler": "karras", "steps": "10", "boundary": "99",
                              "boundary_unit": "sigma"})
