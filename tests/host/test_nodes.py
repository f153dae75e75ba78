"""Our nodes inside a real ComfyUI, against the core nodes on the same model."""
import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)


def _out(result):
    """A node's outputs: our sampling/SIGMAS nodes return ComfyUI's
    {"ui": ..., "result": (...)} form, core nodes a plain tuple."""
    return result["result"] if isinstance(result, dict) else result


def _latent(batch=1, h=8, w=8):
    return {"samples": torch.zeros(batch, 4, h, w)}


def _rel(a, b):
    return float((a - b).norm() / b.norm())


EQUIV_SCHEDULES = ["normal", "karras", "exponential", "sgm_uniform", "simple"]
# Tolerance per sampler for the whole KSampler node against the core's:
# - deterministic ones: the same algorithm on the host's own sigmas -> 1e-4
#   (float32 latents; in float64 they agree to 1e-12, see
#   test_sampler_parity.py);
# - Brownian SDE samplers: the same seeded path -> 1e-3.
EQUIV = {"euler": 1e-4, "heun": 1e-4, "dpm_2": 1e-4, "lms": 1e-4, "dpmpp_2m": 1e-4,
         "dpmpp_sde": 1e-3, "dpmpp_2m_sde": 1e-3, "uni_pc": 1e-4}


@pytest.mark.parametrize("scheduler", EQUIV_SCHEDULES)
@pytest.mark.parametrize("sampler", list(EQUIV))
def test_ksampler_equals_core(comfy, sd15_model, cond, sampler, scheduler):
    if sampler == "lms" and not _host_lms_denoises_last():
        pytest.skip("this host's LMS extrapolates its last step to 0; ours ends with the "
                    "denoise as the newest core's (up to 4x more accurate on Gaussian data); "
                    "the engine's oracle test compares the steps before it")
    pos, neg = cond
    args = dict(seed=123, steps=8, cfg=1.0, sampler_name=sampler, scheduler=scheduler,
                positive=pos, negative=neg, latent_image=_latent(2), denoise=1.0)
    # Our default Brownian path spans the model's sigma range (a split run
    # equals one run); the core's spans the schedule's, which sgm_uniform and
    # simple stop above the model's sigma_min: fresh noise `core` is the core's.
    ours_args = {"fresh_noise": "core"} if sampler in ("dpmpp_sde", "dpmpp_2m_sde") else {}
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd15_model, **args)[0]["samples"]
        ours = _out(comfy.lab.LabKSampler().sample(sd15_model, **args, **ours_args))[0]["samples"]
    assert torch.isfinite(ours).all()
    err = _rel(ours, core)
    assert err < EQUIV[sampler], f"{sampler}/{scheduler}: ours vs core relative difference {err:.2e}"


def _host_lms_denoises_last():
    import inspect

    import comfy.k_diffusion.sampling as kds
    return "x = denoised" in inspect.getsource(kds.sample_lms)


def _core_custom(comfy, model, sampler_name, sigmas, latent, pos, neg, seed=123, cfg=1.0):
    sampler = comfy.nodes_custom_sampler.KSamplerSelect().get_sampler(sampler_name)[0]
    return comfy.nodes_custom_sampler.SamplerCustom().sample(
        model, True, seed, cfg, pos, neg, sampler, sigmas, latent)[0]["samples"]


# Left out by design: dpmpp_3m_sde on normal, whose long last step our noisy 3M
# step takes at a lower order rather than extrapolate the fresh noise (the
# core's ends with 9.6x the data's std on flow; tests/test_samplers_std_band.py).
STOCHASTIC_PAIRS = [(sampler, scheduler)
                    for sampler in ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral",
                                    "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"]
                    for scheduler in EQUIV_SCHEDULES
                    if (sampler, scheduler) != ("dpmpp_3m_sde", "normal")]


@pytest.mark.parametrize("sampler,scheduler", STOCHASTIC_PAIRS)
def test_stochastic_sampler_equals_core_on_the_same_sigmas(comfy, sd15_model, cond, sampler,
                                                           scheduler):
    """With the same sigmas and the same noise the samplers give the core's
    image. Our noise is the host's Brownian tree over the model's whole sigma
    range (so a split run draws what the unsplit one draws); the core's own
    function is handed that path as its noise_sampler (its default indexes
    by the schedule's first and last sigma, its ancestral ones draw per step:
    the `core` noise type reproduces those)."""
    pos, neg = cond
    sigmas = comfy.nodes_custom_sampler.BasicScheduler().get_sigmas(
        sd15_model, scheduler, 8, 1.0)[0]
    latent = _latent(2)
    lab = _out(comfy.lab.LabSampler().get_sampler(sampler, -1.0, 1.0))[0]
    ms = sd15_model.get_model_object("model_sampling") \
        if hasattr(sd15_model, "get_model_object") else sd15_model.model.model_sampling
    with torch.inference_mode():
        import comfy.k_diffusion.sampling as kds

        def fn(model, x, sigmas, extra_args=None, callback=None, disable=None):
            ns = kds.BrownianTreeNoiseSampler(x, ms.sigma_min, ms.sigma_max,
                                              seed=extra_args["seed"], cpu=True)
            return getattr(kds, f"sample_{sampler}")(model, x, sigmas, extra_args=extra_args,
                                                     callback=callback, disable=disable,
                                                     noise_sampler=ns)
        core_sampler = comfy.samplers.KSAMPLER(fn)
        core = comfy.nodes_custom_sampler.SamplerCustom().sample(
            sd15_model, True, 123, 1.0, pos, neg, core_sampler, sigmas, latent)[0]["samples"]
        ours = comfy.nodes_custom_sampler.SamplerCustom().sample(
            sd15_model, True, 123, 1.0, pos, neg, lab, sigmas, latent)[0]["samples"]
    err = _rel(ours, core)
    print(f"EQUIV-SAME-SIGMAS {sampler} {scheduler} {err:.2e}")
    assert err < 1e-4, f"{sampler}/{scheduler}: {err:.2e}"


def test_denoise_below_one_matches_core(comfy, sd15_model, cond):
    pos, neg = cond
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))}
    args = dict(seed=7, steps=10, cfg=1.0, sampler_name="dpmpp_2m", scheduler="karras",
                positive=pos, negative=neg, latent_image=latent, denoise=0.45)
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd15_model, **args)[0]["samples"]
        ours = _out(comfy.lab.LabKSampler().sample(sd15_model, **args))[0]["samples"]
    assert _rel(ours, core) < 1e-4


@pytest.mark.parametrize("add_noise,start,end,leftover", [
    ("enable", 0, 5, "enable"), ("disable", 5, 10000, "disable"), ("enable", 3, 7, "disable"),
    ("enable", 12, 10000, "disable")])
def test_advanced_steps_and_leftover_noise_match_core(comfy, sd15_model, cond, add_noise, start,
                                                     end, leftover):
    pos, neg = cond
    latent = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))}
    args = dict(add_noise=add_noise, noise_seed=11, steps=10, cfg=1.0, sampler_name="heun",
                scheduler="normal", positive=pos, negative=neg, latent_image=latent,
                start_at_step=start, end_at_step=end, return_with_leftover_noise=leftover)
    with torch.inference_mode():
        core = comfy.nodes.KSamplerAdvanced().sample(sd15_model, **args)[0]["samples"]
        ours = _out(comfy.lab.LabKSamplerAdvanced().sample(sd15_model, **args))[0]["samples"]
    assert _rel(ours, core) < 1e-4


def test_batch_index_and_noise_mask_match_core(comfy, sd15_model, cond):
    pos, neg = cond
    base = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    base[2] = base[0]
    mask = torch.zeros(3, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1.0
    latent = {"samples": base, "batch_index": [4, 1, 4], "noise_mask": mask}
    args = dict(seed=99, steps=6, cfg=1.0, sampler_name="euler", scheduler="karras",
                positive=pos, negative=neg, latent_image=latent, denoise=0.8)
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd15_model, **args)[0]["samples"]
        ours = _out(comfy.lab.LabKSampler().sample(sd15_model, **args))[0]["samples"]
    assert _rel(ours, core) < 1e-4
    # batch_index 4 twice: the same noise, so items 0 and 2 agree
    assert torch.allclose(ours[0], ours[2])
    # outside the mask the latent is kept
    assert torch.allclose(ours[:, :, 0, 0], base[:, :, 0, 0], atol=1e-5)


def test_interrupt_mid_run_raises_like_core(comfy, sd15_model, cond):
    pos, neg = cond
    mm = comfy.model_management
    calls = []

    def hook(value, total, preview, **kwargs):  # what the server installs
        calls.append(value)
        if value == 2:
            mm.interrupt_current_processing(True)
        mm.throw_exception_if_processing_interrupted()

    old = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        for node in (comfy.nodes.KSampler(), comfy.lab.LabKSampler()):
            calls.clear()
            with torch.inference_mode(), pytest.raises(mm.InterruptProcessingException):
                node.sample(sd15_model, 1, 10, 1.0, "euler", "karras", pos, neg, _latent(), 1.0)
            assert calls == [1, 2]
    finally:
        comfy.utils.set_progress_bar_global_hook(old)
        mm.interrupt_current_processing(False)


def test_noise_strength_knob(comfy, sd15_model, cond):
    """eta = 0 makes euler_ancestral plain Euler; eta = 1 its default; any
    value below 0 is the default (the widget offers [-1, 10]); a value that is
    not a number names the input."""
    pos, neg = cond
    run = lambda name, eta: _out(comfy.lab.LabKSampler().sample(
        sd15_model, 5, 8, 1.0, name, "karras", pos, neg, _latent(), 1.0, eta, 1.0))[0]["samples"]
    with torch.inference_mode():
        assert torch.allclose(run("euler_ancestral", 0.0), run("euler", -1.0))
        assert torch.allclose(run("euler_ancestral", -1.0), run("euler_ancestral", 1.0))
        assert not torch.allclose(run("euler_ancestral", 1.0), run("euler", -1.0))
        assert torch.equal(run("euler_ancestral", -0.5), run("euler_ancestral", -1.0))
        with pytest.raises(ValueError, match="noise_strength"):
            run("euler", float("nan"))


def test_custom_sigmas_and_scheduler_nodes(comfy, sd15_model):
    sig = _out(comfy.lab.LabCustomSigmas().get_sigmas("14.6, 5, 1.2"))[0]
    assert sig.tolist() == pytest.approx([14.6, 5.0, 1.2, 0.0])
    assert "item 2" in comfy.lab.LabCustomSigmas.VALIDATE_INPUTS("14.6, x, 1")
    s = _out(comfy.lab.LabScheduler().get_sigmas(sd15_model, "karras", 10, 1.0,
                                                 karras_rho=3.0, beta_alpha=0.3))[0]
    from sampler_lab import schedules
    ms = sd15_model.model.model_sampling
    want = schedules.get_sigmas("karras", 10, rho=3.0, sigma_min=float(ms.sigma_min),
                                sigma_max=float(ms.sigma_max))
    assert torch.equal(s, want)


@pytest.mark.parametrize("node,kwargs", [
    ("LabKSampler", dict(seed=3, steps=6, cfg=1.0, sampler_name="euler", scheduler="karras",
                         denoise=0.6)),
    ("LabKSampler", dict(seed=3, steps=5, cfg=1.0, sampler_name="dpm_2", scheduler="normal",
                         denoise=1.0)),
    ("LabKSamplerAdvanced", dict(add_noise="enable", noise_seed=3, steps=8, cfg=1.0,
                                 sampler_name="euler", scheduler="karras", start_at_step=2,
                                 end_at_step=6, return_with_leftover_noise="disable")),
    ("LabKSamplerAdvanced", dict(add_noise="disable", noise_seed=3, steps=8, cfg=1.0,
                                 sampler_name="euler", scheduler="karras", start_at_step=3,
                                 end_at_step=5, return_with_leftover_noise="enable")),
])
def test_ui_sigmas_are_the_sigmas_sampled_with(comfy, sd15_model, cond, monkeypatch, node,
                                               kwargs):
    """The web widget shows the "ui" sigmas after a run: they must be exactly
    the ones handed to the sampler (after denoise, start/end steps and the
    dropped penultimate sigma)."""
    from sampler_lab.nodes import host
    seen = []
    real = host.sample

    def spy(model, seed, cfg, sampler, sigmas, *args, **kw):
        seen.append([float(v) for v in sigmas])
        return real(model, seed, cfg, sampler, sigmas, *args, **kw)
    monkeypatch.setattr(host, "sample", spy)
    pos, neg = cond
    with torch.inference_mode():
        result = getattr(comfy.lab, node)().sample(sd15_model, positive=pos, negative=neg,
                                                   latent_image=_latent(), **kwargs)
    assert set(result) == {"ui", "result"} and len(result["result"]) == 1
    assert len(seen) == 1 and result["ui"]["sampler_lab_sigmas"] == seen[0]
    assert all(isinstance(v, float) for v in seen[0])


def test_ui_sigmas_of_the_sigmas_nodes(comfy, sd15_model):
    for result in (comfy.lab.LabCustomSigmas().get_sigmas("14.6, 5, 1.2"),
                   comfy.lab.LabScheduler().get_sigmas(sd15_model, "beta", 7, 0.5)):
        assert result["ui"]["sampler_lab_sigmas"] == result["result"][0].tolist()
    # a start step past the end runs nothing: no sigmas were used
    result = comfy.lab.LabKSamplerAdvanced().sample(
        sd15_model, "enable", 1, 4, 1.0, "euler", "karras", None, None, _latent(), 9, 10,
        "disable")
    assert result["ui"]["sampler_lab_sigmas"] == []


def test_node_declarations(comfy):
    """Every node: category, description, a tooltip on every input, and our
    KSampler's inputs start with the core KSampler's, in order."""
    for name, cls in comfy.lab.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "sampling/sampler_lab" and cls.DESCRIPTION
        types = cls.INPUT_TYPES()
        for group in types.values():
            for key, decl in group.items():
                assert len(decl) > 1 and decl[1].get("tooltip"), f"{name}.{key} has no tooltip"
    for core, ours in ((comfy.nodes.KSampler, comfy.lab.LabKSampler),
                       (comfy.nodes.KSamplerAdvanced, comfy.lab.LabKSamplerAdvanced)):
        # the core's inputs, all required, in the core's order; ours after
        # them and optional, so the core's prompts run on ours unchanged
        core_keys = list(core.INPUT_TYPES()["required"])
        assert list(ours.INPUT_TYPES()["required"]) == core_keys
        assert list(ours.INPUT_TYPES()["optional"])[:2] == ["noise_strength", "s_noise"]


def _flow_cond():
    c = torch.zeros(1, 1, 4096)
    return [[c, {"pooled_output": torch.zeros(1, 2048)}]], [[c.clone(), {"pooled_output": torch.zeros(1, 2048)}]]


@pytest.mark.parametrize("sampler", ["euler", "heun", "dpm_2"])
def test_flow_model_derivative_samplers_equal_core(comfy, sd3_model, sampler):
    """On a flow model the ODE dx/dsigma = (x - D)/sigma is the same as for VE, so
    the derivative-based samplers must agree with the core's."""
    pos, neg = _flow_cond()
    args = dict(seed=3, steps=8, cfg=1.0, sampler_name=sampler, scheduler="simple",
                positive=pos, negative=neg, latent_image={"samples": torch.zeros(2, 16, 8, 8)},
                denoise=1.0)
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd3_model, **args)[0]["samples"]
        ours = _out(comfy.lab.LabKSampler().sample(sd3_model, **args))[0]["samples"]
    assert _rel(ours, core) < 1e-4


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                                     "dpmpp_2m_sde", "dpmpp_3m_sde", "uni_pc", "lms"])
def test_flow_model_stochastic_samplers_keep_the_data_spread(comfy, sd3_model, sampler):
    """The burnt-SD3 test through the real host: with noise strength 1 the
    output's spread is the data's (std 0.5 here), not inflated by noise added
    VE-style (that inflates it by 30-77%). Stochastic samplers carry an O(1/N)
    bias in the spread, so the std is extrapolated from 30 and 60 steps
    (2 s(60) - s(30)). 256 latents of 16x8x8: standard error ~0.1%."""
    pos, neg = _flow_cond()
    latent = {"samples": torch.zeros(256, 16, 8, 8)}
    stds = []
    with torch.inference_mode():
        for steps in (30, 60):
            out = _out(comfy.lab.LabKSampler().sample(
                sd3_model, 9, steps, 1.0, sampler, "simple", pos, neg, latent, 1.0, 1.0,
                1.0))[0]["samples"]
            x0 = sd3_model.model.process_latent_in(out)  # back to the model's space
            assert abs(float(x0.mean()) - 0.1) < 0.02, f"{sampler}: mean {float(x0.mean()):.4f}"
            stds.append(float(x0.std()))
    std = 2 * stds[1] - stds[0]
    assert abs(std / 0.5 - 1) < 0.06, f"{sampler}: std {stds} -> {std:.4f}, data 0.5"


def test_opt_in_core_dropdowns(comfy, sd15_model, cond):
    """expose_in_core (SAMPLER_LAB_IN_CORE=1) adds lab_<name> to the core
    KSampler's lists; the core then runs our sampler, and core names keep
    their behaviour."""
    from sampler_lab.nodes import host
    pos, neg = cond
    lists = [comfy.samplers.KSAMPLER_NAMES, comfy.samplers.SAMPLER_NAMES,
             comfy.samplers.KSampler.SAMPLERS, comfy.samplers.SCHEDULER_NAMES,
             comfy.samplers.KSampler.SCHEDULERS]
    before = [list(lst) for lst in lists]
    run = lambda node, name, sched: _out(node.sample(sd15_model, 5, 6, 1.0, name, sched, pos,
                                                     neg, _latent(), 1.0))[0]["samples"]
    try:
        with torch.inference_mode():
            core_euler = run(comfy.nodes.KSampler(), "euler", "karras")
            added = host.expose_in_core(["euler", "dpmpp_2m"], ["karras", "beta"])
            assert host.expose_in_core(["euler", "dpmpp_2m"], ["karras", "beta"]) == added
            assert "lab_euler" in comfy.nodes.KSampler.INPUT_TYPES()["required"]["sampler_name"][0]
            assert comfy.samplers.KSampler.SAMPLERS.count("lab_euler") == 1
            assert torch.equal(run(comfy.nodes.KSampler(), "euler", "karras"), core_euler)
            via_core = run(comfy.nodes.KSampler(), "lab_dpmpp_2m", "karras")
            ours = run(comfy.lab.LabKSampler(), "dpmpp_2m", "karras")
            assert _rel(via_core, ours) < 1e-4
            if hasattr(comfy.samplers, "SCHEDULER_HANDLERS"):  # newest host: schedules too
                assert "lab_beta" in added
                via_core = run(comfy.nodes.KSampler(), "euler", "lab_beta")
                ours = run(comfy.lab.LabKSampler(), "euler", "beta")
                assert _rel(via_core, ours) < 1e-4
            else:
                assert "lab_beta" not in added
    finally:
        for lst, old in zip(lists, before):
            lst[:] = old
