"""Sampler Lab Optimize Schedule inside a real ComfyUI: the search runs
through the host's sampling pipeline on an exact Gaussian model, its schedule
beats the host's own schedulers for the same sampler, and the result is
cached on disk."""
import json
import os

import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)


def _latent(batch=2):
    return {"samples": torch.zeros(batch, 4, 8, 8)}


@pytest.fixture
def cache_in_tmp(comfy, tmp_path, monkeypatch):
    import folder_paths
    if hasattr(folder_paths, "get_user_directory"):
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    monkeypatch.setattr(folder_paths, "user_directory", str(tmp_path), raising=False)
    return tmp_path / "sampler_lab" / "schedules"


def _run(comfy, model, pos, neg, **kw):
    args = dict(sampler_name="dpmpp_2m", steps=6, cfg=1.0, calibration_seed=3,
                budget_calls=400)
    args.update(kw)
    with torch.inference_mode():
        return comfy.lab.LabOptimizeSchedule().optimize(model, pos, neg, _latent(), **args)


def _core_error(comfy, model, pos, neg, sigmas, seed=11):
    """The core SamplerCustom with the core dpmpp_2m on `sigmas`: RMSE of the
    result against the closed-form solution of the Gaussian's ODE."""
    latent = {"samples": torch.zeros(4, 4, 8, 8)}
    sampler = comfy.samplers.sampler_object("dpmpp_2m")
    with torch.inference_mode():
        out = comfy.nodes_custom_sampler.SamplerCustom().sample(
            model, True, seed, 1.0, pos, neg, sampler, sigmas, latent)[0]["samples"]
        noise = comfy.sample.prepare_noise(latent["samples"], seed)
        # The start as the host makes it (at its sigma_max an eps model's noise is
        # scaled by sqrt(1 + sigma^2), not sigma).
        x_start = model.model.model_sampling.noise_scaling(
            sigmas[0], noise, latent["samples"], max_denoise=True)
    # GaussianEps: data N(0.1, 0.5^2). The ODE carries x - mean by the factor
    # sqrt(std^2 + s^2) / sqrt(std^2 + sigma_max^2) down to s = sigma_min, the
    # lowest level a discrete model knows (below it the host feeds it
    # timestep 0), and the denoiser there multiplies by std^2 / (std^2 + s^2):
    # the best answer this model can give.
    s_max, mean, std = float(sigmas[0]), 0.1, 0.5
    s_min = float(model.model.model_sampling.sigma_min)
    gain = std ** 2 / ((std ** 2 + s_min ** 2) * (std ** 2 + s_max ** 2)) ** 0.5
    exact = mean + gain * (x_start - mean)
    exact = model.model.process_latent_out(exact)  # the node returns the VAE's scale
    return float(((out.double() - exact.double()) ** 2).mean().sqrt())


def test_optimized_schedule_beats_the_hosts_schedulers_and_is_cached(
        comfy, sd15_model, cond, cache_in_tmp):
    pos, neg = cond
    result = _run(comfy, sd15_model, pos, neg)
    sigmas = result["result"][0]
    assert result["ui"]["sampler_lab_sigmas"] == sigmas.tolist()
    assert len(sigmas) == 7 and float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    ms = sd15_model.model.model_sampling
    assert abs(float(sigmas[0]) - float(ms.sigma_max)) < 1e-4
    assert float(sigmas[-2]) >= float(ms.sigma_min) * (1 - 1e-6)
    # The oracle: the core's own sampler on the closed-form Gaussian, noise the
    # search never saw, vs every scheduler of the core at the same steps.
    ours = _core_error(comfy, sd15_model, pos, neg, sigmas)
    theirs = {}
    for name in ("normal", "karras", "exponential", "sgm_uniform", "simple"):
        core_sigmas = comfy.samplers.calculate_sigmas_scheduler(sd15_model.model, name, 6) \
            if hasattr(comfy.samplers, "calculate_sigmas_scheduler") else \
            comfy.samplers.calculate_sigmas(ms, name, 6)
        theirs[name] = _core_error(comfy, sd15_model, pos, neg, core_sigmas.float())
    print(f"\noptimized dpmpp_2m, 6 steps: RMSE {ours:.3e}; core schedulers: "
          + ", ".join(f"{k} {v:.3e}" for k, v in theirs.items()))
    assert ours < min(theirs.values()), (ours, theirs)

    files = list(cache_in_tmp.glob("*.json"))
    assert len(files) == 1
    entry = json.loads(files[0].read_text())
    assert entry["sigmas"] == sigmas.tolist() and entry["calls"] <= 400
    # A second run reads the cache: same sigmas, no model call.
    calls = sd15_model.model.diffusion_model.calls
    again = _run(comfy, sd15_model, pos, neg)
    assert torch.equal(again["result"][0], sigmas)
    assert sd15_model.model.diffusion_model.calls == calls
    assert again["ui"]["sampler_lab_summary"][0].startswith("cached")
    # Other settings are another key; a damaged cache file is searched again.
    _run(comfy, sd15_model, pos, neg, calibration_seed=4)
    assert len(list(cache_in_tmp.glob("*.json"))) == 2
    files[0].write_text("{not json")
    fresh = _run(comfy, sd15_model, pos, neg)
    assert torch.equal(fresh["result"][0], sigmas)
    assert sd15_model.model.diffusion_model.calls > calls


def test_validation_names_the_input(comfy):
    node = comfy.lab.LabOptimizeSchedule
    assert node.VALIDATE_INPUTS(sampler_name="dpmpp_2m", steps=8, budget_calls=400) is True
    msg = node.VALIDATE_INPUTS(sampler_name="dpmpp_2m", steps=8, budget_calls=20)
    assert "budget_calls = 20 is too small" in msg and "at least" in msg
    assert "cannot be tuned" in node.VALIDATE_INPUTS(sampler_name="dpm_adaptive", steps=8,
                                                     budget_calls=400)
    decl = node.INPUT_TYPES()["required"]
    assert "dpm_fast" not in decl["sampler_name"][0]
    assert "seed" not in decl  # no randomize-after-run control from the frontend
    assert all("tooltip" in spec[1] for spec in decl.values())


def test_flow_model_gets_a_flow_schedule(comfy, cache_in_tmp, sd3_model):
    model = sd3_model  # the fixture skips on hosts without flow models
    c = torch.zeros(1, 1, 4096)
    pos, neg = [[c, {"pooled_output": torch.zeros(1, 2048)}]], [[c, {"pooled_output": torch.zeros(1, 2048)}]]
    with torch.inference_mode():
        result = comfy.lab.LabOptimizeSchedule().optimize(
            model, pos, neg, {"samples": torch.zeros(2, 16, 8, 8)}, sampler_name="euler",
            steps=5, cfg=1.0, calibration_seed=0, budget_calls=300)
    sigmas = result["result"][0]
    assert abs(float(sigmas[0]) - 1.0) < 1e-6 and float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all()) and len(sigmas) == 6
    summary = result["ui"]["sampler_lab_summary"][0]
    assert "calls" in summary and "->" in summary


@pytest.mark.parametrize("family", ["eps", "flow"])
def test_reference_stops_at_a_discrete_models_sigma_min(comfy, cache_in_tmp, monkeypatch,
                                                       request, family):
    """A discrete (VE) model is fed timestep 0 below its sigma_min, so the
    search's reference must stop there; a flow model is continuous to 0.
    (Was a live bug: the node compared the process object with "ve".)"""
    from sampler_lab.nodes import optimize as node_module
    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop after the call's arguments are seen")
    monkeypatch.setattr(node_module, "optimize", spy)
    model = request.getfixturevalue("sd15_model" if family == "eps" else "sd3_model")
    dim, extra = (768, {}) if family == "eps" else (4096, {"pooled_output": torch.zeros(1, 2048)})
    c = torch.zeros(1, 1, dim)
    channels = 4 if family == "eps" else 16
    with pytest.raises(RuntimeError, match="call's arguments"), torch.inference_mode():
        node_module.LabOptimizeSchedule().optimize(
            model, [[c, dict(extra)]], [[c.clone(), dict(extra)]],
            {"samples": torch.zeros(1, channels, 8, 8)}, sampler_name="euler", steps=5,
            cfg=1.0, calibration_seed=0, budget_calls=300)
    ms = model.model.model_sampling
    if family == "eps":
        assert seen["reference_floor"] == pytest.approx(float(ms.sigma_min), rel=1e-6)
    else:
        assert seen["reference_floor"] is None
