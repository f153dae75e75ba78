"""The example workflows load in the real host: every node type exists, the
widget values fit their inputs (converted to the API format the way the
frontend does: widgets in declaration order, a seed's control value after
it), the executor's validation accepts our nodes' values, and our nodes run
with those values on a small real model. The checkpoint itself is not on
this machine, so the loader's file name is the one validation error allowed.

Also: a workflow that names a sampler or schedule we do not have fails at
validation with a message listing ours, and bad widget values are refused
with their input's name."""
import json
from pathlib import Path

import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "example_workflows").glob("*.json"))
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


@pytest.fixture(scope="module")
def host_nodes(comfy):
    """The host's node table with this repository loaded as a custom node
    (and the host's own custom-sampling nodes, which live in comfy_extras)."""
    import importlib
    extras = [comfy.nodes_custom_sampler]
    try:  # ModelSamplingSD3 / Flux, on hosts that have them
        extras.append(importlib.import_module("comfy_extras.nodes_model_advanced"))
    except ImportError:
        pass
    for module in extras:
        for name, cls in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
            comfy.nodes.NODE_CLASS_MAPPINGS.setdefault(name, cls)
    ok = comfy.nodes.load_custom_node(str(ROOT))
    assert ok is True or ok is None or hasattr(ok, "__await__")
    if hasattr(ok, "__await__"):  # newest host: load_custom_node is async
        import asyncio
        assert asyncio.run(ok) is True
    for name in comfy.lab.NODE_CLASS_MAPPINGS:
        assert name in comfy.nodes.NODE_CLASS_MAPPINGS, f"{name} was not registered"
    return comfy.nodes.NODE_CLASS_MAPPINGS


def to_api(workflow, mappings):
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for n in workflow["nodes"]:
        cls = mappings[n["type"]]
        linked = {i["name"]: i["link"] for i in n.get("inputs", []) if i.get("link") is not None}
        values = list(n.get("widgets_values") or [])
        inputs = {}
        types = cls.INPUT_TYPES()
        for group in ("required", "optional"):
            for name, decl in types.get(group, {}).items():
                is_widget = isinstance(decl[0], list) or decl[0] in WIDGET_TYPES
                if name in linked:
                    l = links[linked[name]]
                    inputs[name] = [str(l[1]), l[2]]
                    if is_widget and values:
                        values.pop(0)  # a converted widget keeps its slot
                elif is_widget:
                    if not values and group == "optional":
                        # A workflow saved before this widget was appended:
                        # the frontend leaves it at its default.
                        inputs[name] = decl[1]["default"]
                        continue
                    assert values, f"{n['type']}: no saved value for widget {name}"
                    inputs[name] = values.pop(0)
                    if len(decl) > 1 and decl[1].get("control_after_generate") or \
                            name in ("seed", "noise_seed") and values and values[0] in (
                                "fixed", "increment", "decrement", "randomize"):
                        values.pop(0)
        assert not values, f"{n['type']}: {len(values)} saved widget values left over"
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return prompt


def validate(comfy, prompt):
    import execution
    result = execution.validate_prompt(prompt) if not hasattr(execution, "PromptExecutor") or \
        not _is_async(execution.validate_prompt) else _run_async(execution.validate_prompt, prompt)
    return result


def _is_async(fn):
    import inspect
    return inspect.iscoroutinefunction(fn)


def _run_async(fn, *args):
    import asyncio
    import uuid
    try:
        return asyncio.run(fn(str(uuid.uuid4()), *args, None))
    except TypeError:
        return asyncio.run(fn(*args))


def _errors_of(result, node_id):
    node_errors = result[3]
    return [e.get("message", "") + " " + e.get("details", "")
            for e in node_errors.get(node_id, {}).get("errors", [])]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_example_workflow_loads_validates_and_runs(comfy, host_nodes, sd15_model, cond, path):
    workflow = json.loads(path.read_text())
    missing = {n["type"] for n in workflow["nodes"]} - set(host_nodes)
    if missing:
        pytest.skip(f"this host lacks {sorted(missing)}")
    prompt = to_api(workflow, host_nodes)
    result = validate(comfy, prompt)
    ours = {k for k, v in prompt.items() if v["class_type"].startswith("SamplerLab")}
    for node_id in ours:
        assert not _errors_of(result, node_id), _errors_of(result, node_id)
    others = {k for k in result[3]} - ours
    for node_id in others:  # only the absent checkpoint file may fail
        assert prompt[node_id]["class_type"] == "CheckpointLoaderSimple", result[3][node_id]
    # run our nodes with the saved values on the small real model
    pos, neg = cond
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    with torch.inference_mode():
        for node_id in sorted(ours, key=int):
            node = prompt[node_id]
            cls = host_nodes[node["class_type"]]
            kwargs = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
            if node["class_type"] == "SamplerLabKSampler":
                out = cls().sample(sd15_model, positive=pos, negative=neg, latent_image=latent,
                                   **kwargs)["result"][0]["samples"]
                assert torch.isfinite(out).all() and out.shape == latent["samples"].shape
            elif node["class_type"] == "SamplerLabScheduler":
                sig = cls().get_sigmas(sd15_model, **kwargs)["result"][0]
                assert sig.ndim == 1 and float(sig[-1]) == 0.0
            elif node["class_type"] == "SamplerLabSampler":
                sampler = cls().get_sampler(**kwargs)[0]
                assert isinstance(sampler, comfy.samplers.KSAMPLER)


def _ksampler_prompt(**overrides):
    inputs = {"model": ["1", 0], "seed": 1, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
              "scheduler": "karras", "positive": ["2", 0], "negative": ["2", 0],
              "latent_image": ["3", 0], "denoise": 1.0, "noise_strength": -1.0, "s_noise": 1.0}
    inputs.update(overrides)
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a", "clip": ["1", 1]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64,
                                                           "batch_size": 1}},
        "4": {"class_type": "SamplerLabKSampler", "inputs": inputs},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0],
                                                    "filename_prefix": "t"}},
    }


def _error_inputs(result, node_id):
    return [e.get("extra_info", {}).get("input_name")
            for e in result[3].get(node_id, {}).get("errors", [])]


def _host_checks_optional(comfy):
    from sampler_lab.nodes import host
    return host.HOST_CHECKS_OPTIONAL_INPUTS


@pytest.mark.parametrize("field,value,expect", [
    ("sampler_name", "euler_turbo_9000", "euler_turbo_9000"),
    ("scheduler", "cosine_v7", "cosine_v7"),
    ("steps", 0, "steps"),
    ("noise_strength", -3.0, "noise_strength"),
    ("noise_strength", -2.0, "noise_strength"),
    ("s_noise", 11.0, "s_noise"),
    ("noise_end", 1.5, "noise_end"),
    ("restart", "[[3, 2, 0.1]]", "restart"),
])
def test_validation_names_the_bad_value(comfy, host_nodes, field, value, expect):
    """One bad value is one validation error, on the input that holds it
    (issue 22.9: noise_strength -2 came back as 15 identical errors, one per
    input VALIDATE_INPUTS took: the host reports a failure once per argument
    of that function). The March-2024 host checks only required inputs
    itself, so there ours checks the rest and each failure names its input in
    the message."""
    result = validate(comfy, _ksampler_prompt(**{field: value}))
    errors = " | ".join(_errors_of(result, "4"))
    assert expect in errors, errors
    if _host_checks_optional(comfy) or field in ("steps",):
        assert _error_inputs(result, "4") == [field], result[3]["4"]
    if field == "sampler_name" and not _host_checks_optional(comfy):
        assert "dpmpp_2m_sde" in errors and "uni_pc_bh2" in errors  # the message lists ours


@pytest.mark.parametrize("value", [-1.0, -0.5, -0.01, 0.0, 0.5, 10.0])
def test_every_noise_strength_the_widget_offers_validates_and_runs(comfy, host_nodes, sd15_model,
                                                                     cond, value):
    """The widget offers [-1, 10]; every value below 0 is the sampler's own
    default (was: (-1, 0) passed validation and failed at run time)."""
    assert not _errors_of(validate(comfy, _ksampler_prompt(noise_strength=value)), "4")
    pos, neg = cond
    with torch.inference_mode():
        out = host_nodes["SamplerLabKSampler"]().sample(
            sd15_model, 1, 4, 1.0, "euler_ancestral", "karras", pos, neg,
            {"samples": torch.zeros(1, 4, 8, 8)}, noise_strength=value)
    assert torch.isfinite(out["result"][0]["samples"]).all()
    if value < 0:  # the default: euler_ancestral's eta 1
        with torch.inference_mode():
            one = host_nodes["SamplerLabKSampler"]().sample(
                sd15_model, 1, 4, 1.0, "euler_ancestral", "karras", pos, neg,
                {"samples": torch.zeros(1, 4, 8, 8)}, noise_strength=1.0)
        assert torch.equal(out["result"][0]["samples"], one["result"][0]["samples"])


@pytest.mark.parametrize("field", ["noise_start", "noise_end"])
def test_noise_window_sides_below_0_are_the_samplers_own(comfy, host_nodes, sd15_model, cond,
                                                         field):
    """The window widgets offer [-1, 1]; below 0 is the sampler's own side
    (was: (-1, 0) passed validation and failed at run time)."""
    pos, neg = cond

    def run(value):
        with torch.inference_mode():
            return host_nodes["SamplerLabKSampler"]().sample(
                sd15_model, 1, 4, 1.0, "sa_solver", "karras", pos, neg,
                {"samples": torch.zeros(1, 4, 8, 8)}, **{field: value})["result"][0]["samples"]
    assert not _errors_of(validate(comfy, _ksampler_prompt(**{field: -0.5})), "4")
    assert torch.equal(run(-0.5), run(-1.0))


@pytest.mark.parametrize("overrides,names", [
    ({"noise_start": 0.8, "noise_end": 0.2}, ("noise_start", "noise_end")),
    ({"sampler_name": "euler_ancestral", "restart": "default"},
     ("restart", "noise_strength", "sampler_name")),
    ({"sampler_name": "dpmpp_2m_sde", "noise_strength": 0.5, "restart": "default"},
     ("restart", "noise_strength")),
])
def test_bad_combinations_fail_before_the_first_model_call(comfy, host_nodes, sd15_model, cond,
                                                           overrides, names):
    """Relations between inputs fail when the node runs, before any model
    call, naming each input (as validation errors they would be reported on
    every input VALIDATE_INPUTS takes, single-input errors included)."""
    pos, neg = cond
    inputs = {k: v for k, v in _ksampler_prompt(**overrides)["4"]["inputs"].items()
              if not isinstance(v, list)}
    net = sd15_model.model.diffusion_model
    calls = net.calls
    with pytest.raises(ValueError) as info, torch.inference_mode():
        host_nodes["SamplerLabKSampler"]().sample(sd15_model, positive=pos, negative=neg,
                                                  latent_image={"samples": torch.zeros(1, 4, 8, 8)},
                                                  **inputs)
    assert net.calls == calls, "the model was called before the error"
    for name in names:
        assert name in str(info.value), str(info.value)


def test_ve_sigmas_on_a_flow_model_fail_before_the_first_model_call(comfy, host_nodes, sd3_model,
                                                                    cond):
    """A flow model's sigmas lie in [0, 1]; SD1.5's Custom Sigmas text on an
    SD3 model fails naming the sigmas, before the model is called."""
    pos, _ = cond
    sigmas = host_nodes["SamplerLabCustomSigmas"]().get_sigmas("14.6, 3.0, 0.5, 0")["result"][0]
    sampler = host_nodes["SamplerLabSampler"]().get_sampler("euler", -1.0, 1.0)[0]
    net = sd3_model.model.diffusion_model
    calls = net.calls
    with pytest.raises(ValueError) as info, torch.inference_mode():
        comfy.nodes_custom_sampler.SamplerCustom().sample(
            sd3_model, True, 1, 1.0, pos, pos, sampler, sigmas,
            {"samples": torch.zeros(1, 16, 8, 8)})
    assert net.calls == calls
    assert "sigmas" in str(info.value) and "flow" in str(info.value), str(info.value)


def test_custom_sigmas_text_is_validated(comfy, host_nodes):
    prompt = _ksampler_prompt()
    del prompt["4"]
    prompt.update({
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "7": {"class_type": "SamplerLabCustomSigmas", "inputs": {"sigmas": "14, 3, zz"}},
        "8": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "4": {"class_type": "SamplerCustom", "inputs": {
            "model": ["1", 0], "add_noise": True, "noise_seed": 1, "cfg": 7.0,
            "positive": ["2", 0], "negative": ["2", 0], "sampler": ["8", 0],
            "sigmas": ["7", 0], "latent_image": ["3", 0]}},
    })
    errors = " | ".join(_errors_of(validate(comfy, prompt), "7"))
    assert "item 3" in errors and "zz" in errors, errors
    # a lone 0 has no step: a validation error naming the text (was: a run-time
    # "steps must be an integer in [1, 10000], got 0")
    prompt["7"]["inputs"]["sigmas"] = "0"
    result = validate(comfy, prompt)
    assert _error_inputs(result, "7") == ["sigmas"], result[3].get("7")
    assert "'0'" in " | ".join(_errors_of(result, "7"))


# Saved workflows store widget values by position: new widgets may only be
# appended, never inserted, or old files would load shifted values.
FROZEN_WIDGETS = {
    "SamplerLabTuneSampler": ["cfg", "calls", "max_evals", "calibration_seed", "tuned_table"],
    "SamplerLabKSampler": [
        "seed", "steps", "cfg", "sampler_name", "scheduler", "denoise", "noise_strength",
        "s_noise", "noise_start", "noise_end", "s_churn", "s_tmin", "s_tmax", "restart",
        "detail_amount", "detail_start", "detail_end", "detail_bias", "detail_exponent",
        "variation_seed", "variation_strength", "noise_type", "fresh_noise",
    ],
    "SamplerLabKSamplerAdvanced": [
        "add_noise", "noise_seed", "steps", "cfg", "sampler_name", "scheduler",
        "start_at_step", "end_at_step", "return_with_leftover_noise", "noise_strength",
        "s_noise", "noise_start", "noise_end", "s_churn", "s_tmin", "s_tmax", "restart",
        "detail_amount", "detail_start", "detail_end", "detail_bias", "detail_exponent",
        "variation_seed", "variation_strength", "noise_type", "fresh_noise",
        # two experts (issue 23), appended
        "boundary", "boundary_unit", "cfg_low",
    ],
    "SamplerLabSampler": [
        "sampler_name", "noise_strength", "s_noise", "lms_order", "dpm_adaptive_order",
        "dpm_adaptive_rtol", "dpm_adaptive_atol", "dpm_adaptive_h_init",
        "dpm_adaptive_pcoeff", "dpm_adaptive_icoeff", "dpm_adaptive_dcoeff",
        "dpm_adaptive_accept_safety", "dpmpp_2m_solver_type", "dpmpp_sde_r",
        "dpmpp_2m_sde_solver_type", "uni_pc_order", "uni_pc_bh2_order", "deis_order",
        "ipndm_order", "ipndm_v_order", "gradient_estimation_ge_gamma", "er_sde_max_stage",
        "seeds_2_r", "seeds_3_r_1", "seeds_3_r_2", "sa_solver_predictor_order",
        "sa_solver_corrector_order", "sa_solver_pece_predictor_order",
        "sa_solver_pece_corrector_order", "dpmpp_sde_gpu_r", "dpmpp_2m_sde_gpu_solver_type",
        "dpmpp_2m_cfg_pp_solver_type", "gradient_estimation_cfg_pp_ge_gamma", "noise_start",
        "noise_end", "s_churn", "s_tmin", "s_tmax", "restart", "detail_amount",
        "detail_start", "detail_end", "detail_bias", "detail_exponent",
        # the 2026 core's options (issue 23), then two experts, appended
        "seeds_2_solver_type", "exp_heun_2_x0_solver_type", "exp_heun_2_x0_sde_solver_type",
        "boundary", "boundary_unit", "cfg_low", "fresh_noise",
    ],
    "SamplerLabScheduler": [
        "scheduler", "steps", "denoise", "karras_rho", "polyexponential_rho", "beta_alpha",
        "beta_beta", "linear_quadratic_threshold_noise", "linear_quadratic_linear_steps",
        "laplace_mu", "laplace_beta", "vp_beta_d", "vp_beta_min", "vp_eps_s",
        "align_your_steps_model_type", "gits_coeff", "bong_tangent_middle",
        "bong_tangent_pivot_1", "bong_tangent_pivot_2", "bong_tangent_slope_1",
        "bong_tangent_slope_2", "optimal_steps_model_type", "ltxv_max_shift",
        "ltxv_base_shift", "ltxv_stretch", "ltxv_terminal", "ltxv_tokens",
        # the 2026 core's resolution-aware schedules (issue 23), appended
        "flux2_width", "flux2_height", "ideogram4_width", "ideogram4_height", "ideogram4_mu",
        "ideogram4_std",
    ],
    "SamplerLabNoise": ["seed", "noise_type", "variation_seed", "variation_strength",
                        "add_noise"],
}
# The first round shipped the prefixes up to s_noise / ipndm_order / gits_coeff;
# this round's samplers, schedules and controls come after them, frozen here
# in full: a later option must come after these (a sampler's option added to
# the registry today would be drawn before the controls and fail this test).


@pytest.mark.parametrize("name", list(FROZEN_WIDGETS))
def test_widget_order_only_grows_at_the_end(comfy, name):
    cls = comfy.lab.NODE_CLASS_MAPPINGS[name]
    types = cls.INPUT_TYPES()
    widgets = [k for g in ("required", "optional") for k, d in types.get(g, {}).items()
               if isinstance(d[0], list) or d[0] in WIDGET_TYPES]
    assert widgets[:len(FROZEN_WIDGETS[name])] == FROZEN_WIDGETS[name]


def _core_names(comfy):
    return list(getattr(comfy.samplers, "SAMPLER_NAMES", comfy.samplers.KSampler.SAMPLERS))


def test_core_ksampler_workflows_switch_to_ours_for_every_core_sampler(comfy, host_nodes,
                                                                        sd15_model, cond):
    """A prompt saved with the core KSampler, for each of the host's sampler
    names (42 on the newest host), validates with the node type changed to
    ours (the core's inputs, ours appended with their defaults) and runs on
    a real model, CFG++ samplers with a real CFG (cfg 1.5, uncond from the
    host's post-CFG hook)."""
    pos, neg = cond
    names = _core_names(comfy)
    assert len(names) >= 19
    for name in names:
        core = _ksampler_prompt(sampler_name=name)
        core["4"]["class_type"] = "KSampler"
        for ours_only in ("noise_strength", "s_noise"):
            del core["4"]["inputs"][ours_only]
        assert not _errors_of(validate(comfy, core), "4"), name  # the core's own prompt is valid
        switched = json.loads(json.dumps(core))
        switched["4"]["class_type"] = "SamplerLabKSampler"
        assert not _errors_of(validate(comfy, switched), "4"), name
        args = {k: v for k, v in switched["4"]["inputs"].items()
                if k not in ("model", "positive", "negative", "latent_image")}
        args.update(steps=6, cfg=1.5)
        with torch.inference_mode():
            out = host_nodes["SamplerLabKSampler"]().sample(
                sd15_model, positive=pos, negative=neg,
                latent_image={"samples": torch.zeros(1, 4, 8, 8)}, **args)
        samples = out["result"][0]["samples"]
        assert torch.isfinite(samples).all() and samples.abs().max() < 50, name
