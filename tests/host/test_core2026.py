"""API prompts saved by a 2026 ComfyUI and by other packs run on our
KSampler after changing only class_type, in a real ComfyUI (the newest
installed one where COMFYUI_DIR names it, else the March-2024 host).

The 2026 core's names are read from its source (comfy/samplers.py,
KSAMPLER_NAMES + ["ddim", "uni_pc", "uni_pc_bh2"], and SCHEDULER_HANDLERS of
2026: 45 samplers, 9 schedulers); this machine's core is older, so they are
written here."""
import json

import numpy as np
import pytest
import torch

from hostlib import comfy, cond, sd15_model, sd3_model  # noqa: F401  (fixtures)
from test_workflows import (_error_inputs, _errors_of, _ksampler_prompt, host_nodes,  # noqa: F401
                            validate)

CORE_2026_SAMPLERS = [
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "exp_heun_2_x0", "exp_heun_2_x0_sde", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast",
    "dpm_adaptive", "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde",
    "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm",
    "lcm", "ipndm", "ipndm_v", "deis", "cfgpp_ud10_ab", "res_multistep", "res_multistep_cfg_pp",
    "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation",
    "gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece",
    "ddim", "uni_pc", "uni_pc_bh2",
]
CORE_2026_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta",
                        "normal", "linear_quadratic", "kl_optimal"]


def _core_prompt(**inputs):
    """The prompt a 2026 core KSampler saves: the core's inputs only."""
    prompt = _ksampler_prompt(**inputs)
    prompt["4"]["class_type"] = "KSampler"
    for ours_only in ("noise_strength", "s_noise"):
        del prompt["4"]["inputs"][ours_only]
    return prompt


def _retyped(prompt):
    out = json.loads(json.dumps(prompt))
    out["4"]["class_type"] = "SamplerLabKSampler"
    return out


def _run(host_nodes, model, cond, prompt, latent=None, **override):
    pos, neg = cond
    args = {k: v for k, v in prompt["4"]["inputs"].items()
            if k not in ("model", "positive", "negative", "latent_image")}
    args.update(override)
    latent = latent or {"samples": torch.zeros(1, 4, 8, 8)}
    with torch.inference_mode():
        return host_nodes["SamplerLabKSampler"]().sample(model, positive=pos, negative=neg,
                                                         latent_image=latent, **args)


def test_the_2026_lists_are_45_and_9():
    assert len(CORE_2026_SAMPLERS) == 45 and len(set(CORE_2026_SAMPLERS)) == 45
    assert len(CORE_2026_SCHEDULERS) == 9


def test_every_2026_core_prompt_runs_on_ours(comfy, host_nodes, sd15_model, cond):
    """45 sampler names x 9 schedulers: the retyped prompt validates in the
    host and runs (4 steps, cfg 1.5 so CFG++ names get a real CFG) to a
    finite latent of the data's scale."""
    failures = []
    for name in CORE_2026_SAMPLERS:
        for scheduler in CORE_2026_SCHEDULERS:
            prompt = _retyped(_core_prompt(sampler_name=name, scheduler=scheduler, steps=4,
                                           cfg=1.5))
            errors = _errors_of(validate(comfy, prompt), "4")
            if errors:
                failures.append((name, scheduler, errors))
                continue
            out = _run(host_nodes, sd15_model, cond, prompt)
            samples = out["result"][0]["samples"]
            if not (torch.isfinite(samples).all() and samples.abs().max() < 50):
                failures.append((name, scheduler, float(samples.abs().max())))
    assert not failures, failures[:10]


def _host_node(module, cls):
    import importlib
    try:
        return getattr(importlib.import_module(f"comfy_extras.{module}"), cls)
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"this host has no {cls} ({exc})")


def _node_sigmas(node, *args):
    fn = getattr(node, "execute", None) or getattr(node(), node.FUNCTION)
    out = fn(*args)
    return (out.result if hasattr(out, "result") else out)[0].double().numpy()


def _ours(out):
    return np.asarray(out["ui"]["sampler_lab_sigmas"], dtype=np.float64)


def _ulps(a, b):
    return np.abs(a.astype(np.float32).view(np.int32).astype(np.int64)
                  - b.astype(np.float32).view(np.int32).astype(np.int64))


@pytest.mark.parametrize("alias,steps", [("AYS SD1", 10), ("AYS SDXL", 7), ("AYS SVD", 12),
                                         ("GITS[coeff=1.2]", 10), ("GITS[coeff=0.85]", 6),
                                         ("OSS FLUX", 12), ("OSS Wan", 8), ("OSS Chroma", 10),
                                         ("LTXV[default]", 20)])
def test_impact_pack_strings_are_the_host_nodes_impact_calls(comfy, host_nodes, sd15_model,
                                                             cond, alias, steps):
    """Impact Pack's calculate_sigmas maps these strings to the host's own
    scheduler nodes (AYS -> AlignYourStepsScheduler(type), GITS[coeff=c] ->
    GITSScheduler(c), OSS -> OptimalStepsScheduler(type), LTXV[default] ->
    LTXVScheduler(20, 2.05, 0.95, True, 0.1)); our KSampler gives those
    nodes' sigmas for the same string."""
    prompt = _retyped(_core_prompt(scheduler=alias, steps=steps))
    assert not _errors_of(validate(comfy, prompt), "4")
    if alias.startswith("AYS"):
        core = _node_sigmas(_host_node("nodes_align_your_steps", "AlignYourStepsScheduler"),
                            alias[4:], steps, 1.0)
    elif alias.startswith("GITS"):
        core = _node_sigmas(_host_node("nodes_gits", "GITSScheduler"),
                            float(alias[11:-1]), steps, 1.0)
    elif alias.startswith("OSS"):
        core = _node_sigmas(_host_node("nodes_optimalsteps", "OptimalStepsScheduler"),
                            alias[4:], steps, 1.0)
    else:
        core = _node_sigmas(_host_node("nodes_lt", "LTXVScheduler"), 20, 2.05, 0.95, True, 0.1)
    ours = _ours(_run(host_nodes, sd15_model, cond, prompt))
    assert ours.shape == core.shape and np.all(_ulps(ours, core) <= 16), (ours, core)


def test_swarmui_turbo_is_the_sd_turbo_node(comfy, host_nodes, sd15_model, cond):
    prompt = _retyped(_core_prompt(scheduler="turbo", steps=4))
    assert not _errors_of(validate(comfy, prompt), "4")
    node = comfy.nodes_custom_sampler.SDTurboScheduler
    fn = getattr(node, "execute", None) or getattr(node(), node.FUNCTION)
    out = fn(sd15_model, 4, 1.0)
    core = (out.result if hasattr(out, "result") else out)[0].double().numpy()
    ours = _ours(_run(host_nodes, sd15_model, cond, prompt))
    assert ours.shape == core.shape and np.all(_ulps(ours, core) <= 4)


def test_an_unknown_scheduler_string_is_one_error_naming_it(comfy, host_nodes):
    """An unknown string (or a GITS coefficient outside GITS's range) is one
    validation error on `scheduler` naming the value. Where the host checks
    the combo itself (newer hosts: our VALIDATE_INPUTS takes only `restart`,
    so that every bad value is one error), the message is the host's; the
    node's own resolution, run on hosts that leave the check to us, lists
    our names and the aliases."""
    from sampler_lab.nodes import host as lab_host
    from sampler_lab.nodes.widgets import resolve_scheduler
    for bad in ("AYS SD9", "GITS[coeff=3.0]"):
        result = validate(comfy, _retyped(_core_prompt(scheduler=bad)))
        inputs = _error_inputs(result, "4")
        # the March-2024 host reports our VALIDATE_INPUTS once per argument
        assert inputs == ["scheduler"] if lab_host.HOST_CHECKS_OPTIONAL_INPUTS \
            else "scheduler" in inputs, result
        errors = " | ".join(_errors_of(result, "4"))
        assert bad in errors, errors
        with pytest.raises(ValueError) as exc:
            resolve_scheduler(bad)
        if bad.startswith("AYS"):
            listing = str(exc.value)
            assert "karras" in listing and "AYS SDXL" in listing and \
                "GITS[coeff=1.2]" in listing and "turbo" in listing, listing
            if not lab_host.HOST_CHECKS_OPTIONAL_INPUTS:
                assert "karras" in errors and "turbo" in errors, errors
        else:
            assert "0.8" in str(exc.value) and "1.5" in str(exc.value), exc.value


def test_the_combo_list_stays_clean(comfy, host_nodes):
    listed = list(comfy.lab.NODE_CLASS_MAPPINGS["SamplerLabKSampler"].INPUT_TYPES()[
        "required"]["scheduler"][0])
    assert "AYS SDXL" not in listed and "turbo" not in listed and "flux2" in listed


def test_flux2_and_ideogram4_read_the_latents_size(comfy, host_nodes, sd3_model, cond):
    """Width and height come from the latent: pixels = latent size x 8 for
    4/16-channel latents, x 16 for FLUX.2's 128-channel ones (as SwarmUI's
    flux2 does)."""
    from sampler_lab.schedules import get_sigmas
    pos, neg = cond
    for channels, ratio in ((16, 8), (128, 16)):
        latent = {"samples": torch.zeros(1, channels, 12, 20)}
        for name in ("flux2", "ideogram4"):
            prompt = _retyped(_core_prompt(scheduler=name, steps=6, cfg=1.0))
            if channels == 128:
                got = host_nodes["SamplerLabScheduler"]().get_sigmas(
                    sd3_model, name, 6, latent=latent)["ui"]["sampler_lab_sigmas"]
            else:
                got = _ours(_run(host_nodes, sd3_model, (pos, neg), prompt, latent=latent))
            want = get_sigmas(name, 6, width=20 * ratio, height=12 * ratio).double().numpy()
            assert np.allclose(got, want, rtol=0, atol=0), (name, channels)


def test_noise_scale_multiplies_the_fresh_noise(comfy, host_nodes, sd15_model, cond):
    """A model_sampling with noise_scale c (the newer cores' ModelNoiseScale)
    gives the image of s_noise = c without it; absent, nothing changes; a bad
    value is an error naming it."""
    prompt = _retyped(_core_prompt(sampler_name="euler_ancestral", steps=5))
    base = _run(host_nodes, sd15_model, cond, prompt, s_noise=1.7)["result"][0]["samples"]
    plain = _run(host_nodes, sd15_model, cond, prompt)["result"][0]["samples"]
    patched = sd15_model.clone()
    ms = patched.get_model_object("model_sampling") if hasattr(patched, "get_model_object") \
        else patched.model.model_sampling
    try:
        ms.noise_scale = 1.7
        scaled = _run(host_nodes, patched, cond, prompt)["result"][0]["samples"]
        assert torch.equal(scaled, base) and not torch.equal(scaled, plain)
        ms.noise_scale = float("nan")
        with pytest.raises(ValueError, match="noise_scale"):
            _run(host_nodes, patched, cond, prompt)
    finally:
        del ms.noise_scale
    assert torch.equal(_run(host_nodes, sd15_model, cond, prompt)["result"][0]["samples"], plain)


def test_the_new_widgets_are_advanced(comfy):
    """Issue 20's light node: every widget added for issue 23 is advanced."""
    want = {"SamplerLabKSamplerAdvanced": ("model_low", "boundary", "boundary_unit", "cfg_low"),
            "SamplerLabSampler": ("seeds_2_solver_type", "exp_heun_2_x0_solver_type",
                                  "exp_heun_2_x0_sde_solver_type", "model_low", "boundary",
                                  "boundary_unit", "cfg_low"),
            "SamplerLabScheduler": ("flux2_width", "flux2_height", "ideogram4_width",
                                    "ideogram4_height", "ideogram4_mu", "ideogram4_std")}
    for node, names in want.items():
        optional = comfy.lab.NODE_CLASS_MAPPINGS[node].INPUT_TYPES()["optional"]
        for name in names:
            assert optional[name][1].get("advanced") is True, (node, name)
    shipped = comfy.lab.NODE_CLASS_MAPPINGS["SamplerLabScheduler"].INPUT_TYPES()["optional"]
    assert not shipped["karras_rho"][1].get("advanced")


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_exp_heun_phi_1_is_the_host_seeds_2_at_r_1(comfy, kind):
    """The 2026 core's exp_heun_2_x0 is its seeds_2 at r = 1; this host's own
    seeds_2 (phi_1 weights only, r a parameter) at r = 1, eta = 0 is the
    phi_1 form of ours, to float64 rounding."""
    import corekit
    from sampler_lab import samplers
    from sampler_lab.nodes import host
    from sampler_lab.schedules import get_sigmas
    import comfy.k_diffusion.sampling as kds
    fn = getattr(kds, "sample_seeds_2", None)
    ms = corekit.model_sampling(comfy, kind)
    if fn is None or ms is None or not corekit.host_takes(fn, "r"):
        pytest.skip("this host has no seeds_2 with r (or no flow models)")
    data = corekit.gaussian(kind)
    process = host.model_process(ms)
    sig = get_sigmas("karras", 10, sigma_min=0.03, sigma_max=14.6) if kind == "eps" else \
        get_sigmas("simple", 10, model_sampling=host.sampling_of(ms))
    sig = sig.double()
    x = corekit.start(sig)
    core = fn(corekit.HostModel(data.denoiser, ms), x.clone(), sig.clone(), eta=0.0,
              s_noise=0.0, r=1.0, disable=True)
    ours = samplers.get_sampler("exp_heun_2_x0").fn(data.denoiser, x.clone(), sig,
                                                     process=process, solver_type="phi_1")
    assert float((ours - core).abs().max()) < 1e-9 * float(core.abs().max()), \
        float((ours - core).abs().max())
