"""Every scheduler name the host has gives the host's sigmas on the host's own
model samplings (eps SD1.5, SDXL, v-prediction, continuous EDM; on hosts with
flow models SD3-type shifts 1/3/6, AuraFlow's multiplier 1 and Flux-type
shifts), read through nodes/host.py; and the
schedules that copy a core node (sd_turbo, optimal_steps, ltxv, beta57) give
that node's output.

Tolerances, in float32 ulps of the host's value:
- table look-ups (simple, ddim_uniform, beta): exactly equal;
- the rest, against the host's handler run with float64 as the default
  dtype (its ramps then carry no float32 round-off of their own): 8 ulps
  (the host's continuous-EDM maps stay in float32: only the float32 run is
  compared there); and as the host really runs (float32 throughout): 32
  ulps, the float32 round-off of its Karras ramp raised to the power rho;
- kl_optimal builds its angles in float32 whatever the default dtype, so
  the bound is that angle error carried through tan: (1 + sigma^2) * 8 eps
  * (|atan sigma_min| + |atan sigma_max|), plus 2 ulps.
"""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hostlib import comfy, sd15_model, sd3_model  # noqa: F401  (fixtures)

CORE_NAMES = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform",
              "beta", "linear_quadratic", "kl_optimal"]
TABLE_LOOKUPS = {"simple", "ddim_uniform", "beta"}
STEPS = [1, 2, 5, 8, 20, 50, 1000, 1500, 10000]
EPS32 = 2.0 ** -23
ULPS_F64_HOST = 8
ULPS_F32_HOST = 32


def _config(comfy, name):
    return getattr(comfy.supported_models, name)({"disable_unet_model_creation": True})


def _ms(comfy, config, model_type, **params):
    kind = getattr(comfy.model_base.ModelType, model_type, None)
    if kind is None or not hasattr(comfy.supported_models, config):
        pytest.skip(f"this host has no {model_type} models")
    ms = comfy.model_base.model_sampling(_config(comfy, config), kind)
    if params:
        ms.set_parameters(**params)
    return ms


FAMILIES = {
    "sd15_eps": lambda c: _ms(c, "SD15", "EPS"),
    "sdxl_eps": lambda c: _ms(c, "SDXL", "EPS"),
    "sd2_v": lambda c: _ms(c, "SD20", "V_PREDICTION"),
    "sdxl_edm_v": lambda c: _ms(c, "SDXL", "V_PREDICTION_EDM"),
    "sd3_shift1": lambda c: _ms(c, "SD3", "FLOW", shift=1.0),
    "sd3_shift3": lambda c: _ms(c, "SD3", "FLOW", shift=3.0),
    "sd3_shift6": lambda c: _ms(c, "SD3", "FLOW", shift=6.0),
    "auraflow": lambda c: _ms(c, "SD3", "FLOW", shift=1.73, multiplier=1.0),
    "flux_1.15": lambda c: _ms(c, "Flux", "FLUX", shift=1.15),
    "flux_0.5": lambda c: _ms(c, "Flux", "FLUX", shift=0.5),
    "flux_3": lambda c: _ms(c, "Flux", "FLUX", shift=3.0),
}
MAPPED = {"sdxl_edm_v"}
EXPECTED_KIND = {"sd15_eps": "discrete", "sdxl_eps": "discrete", "sd2_v": "discrete",
                 "sdxl_edm_v": "mapped", "auraflow": "flow"}


def _host_names(comfy):
    """The host's own scheduler names (not the lab_<name> entries our opt-in
    SAMPLER_LAB_IN_CORE adds, which another test of this session exercises)."""
    from sampler_lab.nodes.host import CORE_PREFIX
    handlers = getattr(comfy.samplers, "SCHEDULER_HANDLERS", None)
    names = list(handlers) if handlers is not None else list(comfy.samplers.KSampler.SCHEDULERS)
    return [n for n in names if not n.startswith(CORE_PREFIX)]


def _core(comfy, ms, name, steps, dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        if hasattr(comfy.samplers, "calculate_sigmas"):
            out = comfy.samplers.calculate_sigmas(ms, name, steps)
        else:
            out = comfy.samplers.calculate_sigmas_scheduler(
                SimpleNamespace(model_sampling=ms), name, steps)
    finally:
        torch.set_default_dtype(old)
    return out.double().numpy()


def _ulps(ours, core):
    spacing = np.spacing(np.abs(core).astype(np.float32)).astype(np.float64)
    return np.abs(ours - core) / spacing


def _kl_bound(ms, core):
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    angle = abs(math.atan(lo)) + abs(math.atan(hi))
    spacing = np.spacing(np.abs(core).astype(np.float32)).astype(np.float64)
    return (1.0 + core ** 2) * 8 * EPS32 * angle + 2 * spacing


def test_we_carry_every_core_name(comfy):
    from sampler_lab import schedules
    missing = set(_host_names(comfy)) - set(schedules.SCHEDULE_NAMES)
    assert not missing, f"core scheduler names we lack: {sorted(missing)}"
    assert set(_host_names(comfy)) <= set(CORE_NAMES)  # a new core name needs a test row


@pytest.mark.parametrize("family", list(FAMILIES))
def test_description_of_the_model_sampling(comfy, family):
    from sampler_lab.nodes import host
    from sampler_lab.schedules.preview import family_sampling
    ms = FAMILIES[family](comfy)
    desc = host.sampling_of(ms)
    kind = EXPECTED_KIND.get(family, family.split("_")[0].replace("sd3", "flow"))
    assert desc.kind == kind
    assert np.array_equal(desc.sigmas, ms.sigmas.double().numpy())
    assert (desc.sigma_min, desc.sigma_max) == (float(ms.sigma_min), float(ms.sigma_max))
    # The preview's families build the very same tables (computed, not read).
    if kind in ("flow", "flux") and family != "auraflow":
        ours = family_sampling(kind, float(ms.shift))
        assert np.array_equal(ours.sigmas, desc.sigmas)
    if family == "sd15_eps":
        ours = family_sampling("sd15")
        assert np.array_equal(ours.sigmas, desc.sigmas)
        assert np.array_equal(ours.log_sigmas, desc.log_sigmas)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", CORE_NAMES)
def test_core_names_give_the_hosts_sigmas(comfy, family, name):
    from sampler_lab.nodes import host
    if name not in _host_names(comfy):
        pytest.skip(f"this host has no {name!r} scheduler")
    ms = FAMILIES[family](comfy)
    worst = {}
    for steps in STEPS:
        ours = host.model_schedule(ms, name, steps).double().numpy()
        core32 = _core(comfy, ms, name, steps, torch.float32)
        core64 = _core(comfy, ms, name, steps, torch.float64)
        if name == "kl_optimal" and steps == 1:
            # the host divides 0 by 0 for its single ramp point; ours is sigma_max
            assert np.isnan(core32[0]) and core32[-1] == 0.0
            assert ours.tolist() == [float(ms.sigma_max), 0.0]
            continue
        if name == "simple":
            # Past the table's length the host repeats entries (zero-length
            # steps); each is kept once here.
            table_len = len(ms.sigmas)
            repeats = int(np.sum(core32[1:] == core32[:-1]))
            assert (repeats > 0) == (steps > table_len), (steps, repeats)
            keep = np.r_[True, core32[1:] != core32[:-1]]
            core32, core64 = core32[keep], core64[keep]
        assert ours.shape == core32.shape, (steps, ours.shape, core32.shape)
        assert ours[-1] == core32[-1] == 0.0
        if name in TABLE_LOOKUPS:
            assert np.array_equal(ours, core32), steps
            worst[steps] = (0.0, 0.0)
            continue
        if name == "kl_optimal":
            for core in (core32, core64):
                excess = np.abs(ours - core) - _kl_bound(ms, core)
                assert np.all(excess <= 0), (steps, float(excess.max()))
            worst[steps] = (float(_ulps(ours, core32).max()), float(_ulps(ours, core64).max()))
            continue
        u64, u32 = _ulps(ours, core64).max(), _ulps(ours, core32).max()
        if family not in MAPPED:  # mapped: the host's own float32 maps, see above
            assert u64 <= ULPS_F64_HOST, (steps, u64)
        assert u32 <= ULPS_F32_HOST, (steps, u32)
        worst[steps] = (float(u32), float(u64))
    print(f"PARITY {family} {name} max ulps vs the host: "
          f"{max(w[0] for w in worst.values()):.0f} (as it runs, float32), "
          f"{max(w[1] for w in worst.values()):.0f} (float64 default dtype)")


# --------------------------------------------------------------------------
# The KSampler's sigmas: denoise and the dropped penultimate sigma


def _core_ksampler_sigmas(comfy, model, steps, sampler, scheduler, denoise):
    patcher_api = hasattr(comfy.model_patcher.ModelPatcher, "get_model_object")
    ks = comfy.samplers.KSampler(model if patcher_api else model.model, steps=steps,
                                 device="cpu", sampler=sampler, scheduler=scheduler,
                                 denoise=denoise, model_options={})
    return ks.sigmas.double().numpy()


@pytest.mark.parametrize("which", ["sd15", "sd3"])
@pytest.mark.parametrize("sampler,scheduler,steps,denoise", [
    ("euler", "normal", 8, 1.0), ("euler", "normal", 8, 0.6), ("dpm_2", "normal", 6, 1.0),
    ("dpm_2", "sgm_uniform", 6, 0.5), ("euler", "ddim_uniform", 7, 1.0),
    ("euler", "ddim_uniform", 7, 0.8), ("uni_pc", "simple", 9, 0.7),
    ("euler", "karras", 5, 0.3), ("euler", "simple", 1500, 0.75)])
def test_ksampler_sigmas_equal_the_cores(comfy, request, which, sampler, scheduler, steps,
                                         denoise):
    from sampler_lab.nodes import host
    model = request.getfixturevalue(f"{which}_model")
    if scheduler not in _host_names(comfy):
        pytest.skip(f"this host has no {scheduler!r} scheduler")
    core = _core_ksampler_sigmas(comfy, model, steps, sampler, scheduler, denoise)
    ours = host.schedule(model, scheduler, steps, denoise,
                         discard_penultimate=host.core_discards_penultimate(sampler))
    ours = ours.double().numpy()
    core = core[np.r_[True, core[1:] != core[:-1]]]  # simple past the table: each once
    assert ours.shape == core.shape
    assert np.all(_ulps(ours, core) <= ULPS_F32_HOST), float(_ulps(ours, core).max())


@pytest.mark.parametrize("scheduler", ["normal", "sgm_uniform", "beta", "ddim_uniform",
                                       "kl_optimal"])
def test_flow_model_images_equal_the_cores(comfy, sd3_model, scheduler):
    """The whole KSampler on an SD3-type flow model (shift 3): with the
    schedule read through the model's maps, euler's image is the core's
    (before, the timestep round trip was missed: 4.8% apart on sgm_uniform)."""
    if scheduler not in _host_names(comfy):
        pytest.skip(f"this host has no {scheduler!r} scheduler")
    c = torch.zeros(1, 1, 4096)
    pos = [[c, {"pooled_output": torch.zeros(1, 2048)}]]
    neg = [[c.clone(), {"pooled_output": torch.zeros(1, 2048)}]]
    args = dict(seed=3, steps=8, cfg=1.0, sampler_name="euler", scheduler=scheduler,
                positive=pos, negative=neg, latent_image={"samples": torch.zeros(2, 16, 8, 8)},
                denoise=1.0)
    with torch.inference_mode():
        core = comfy.nodes.KSampler().sample(sd3_model, **args)[0]["samples"]
        ours = comfy.lab.LabKSampler().sample(sd3_model, **args)["result"][0]["samples"]
    err = float((ours - core).norm() / core.norm())
    print(f"PARITY-IMAGE sd3_shift3 euler/{scheduler}: {err:.1e}")
    assert err < 1e-5, err


# --------------------------------------------------------------------------
# Schedules that copy a core node


def test_beta57_is_the_cores_beta_scheduler(comfy):
    from sampler_lab.nodes import host
    beta = getattr(comfy.samplers, "beta_scheduler", None)
    if beta is None:
        pytest.skip("this host has no beta scheduler")
    for family in ("sd15_eps", "sd3_shift3", "flux_1.15"):
        ms = FAMILIES[family](comfy)
        for steps in (1, 8, 20, 200, 1000):
            core = beta(ms, steps, alpha=0.5, beta=0.7).double().numpy()
            ours = host.model_schedule(ms, "beta57", steps).double().numpy()
            assert np.array_equal(ours, core), (family, steps)


@pytest.mark.parametrize("which", ["sd15", "sd3"])
def test_sd_turbo_is_the_cores_node(comfy, request, which):
    from sampler_lab.nodes import host
    model = request.getfixturevalue(f"{which}_model")
    node = comfy.nodes_custom_sampler.SDTurboScheduler()
    checked = 0
    denoises = (1.0, 0.95, 0.7, 0.5, 0.3, 0.1)
    for denoise in denoises:
        start = 10 - int(10 * denoise)
        for steps in range(1, 11):
            if start + steps > 10:  # the core returns fewer; ours says why
                with pytest.raises(ValueError, match="sd_turbo: steps must be at most"):
                    host.schedule(model, "sd_turbo", steps, denoise)
                continue
            core = node.get_sigmas(model, steps, denoise)[0].double().numpy()
            ours = host.schedule(model, "sd_turbo", steps, denoise).double().numpy()
            assert ours.shape == core.shape and np.all(_ulps(ours, core) <= 4), (denoise, steps)
            checked += 1
    assert checked == sum(int(10 * d) for d in denoises)


def _import_extra(name):
    import importlib
    try:
        return importlib.import_module(f"comfy_extras.{name}")
    except ImportError as exc:
        pytest.skip(f"this host has no comfy_extras.{name} ({exc})")


def _node_out(out):
    return (out.result if hasattr(out, "result") else out)[0].double().numpy()


def test_optimal_steps_is_the_cores_node(comfy):
    from sampler_lab import schedules
    node = _import_extra("nodes_optimalsteps").OptimalStepsScheduler
    for model_type in ("FLUX", "Wan", "Chroma"):
        for steps in (3, 5, 10, 20, 40, 77):
            core = _node_out(node.execute(model_type, steps, 1.0))
            ours = schedules.get_sigmas("optimal_steps", steps,
                                        model_type=model_type).double().numpy()
            assert ours.shape == core.shape
            assert np.all(_ulps(ours, core) <= 4), (model_type, steps)


def test_ltxv_is_the_cores_node(comfy):
    from sampler_lab import schedules
    node = _import_extra("nodes_lt").LTXVScheduler
    cases = [dict(), dict(stretch=False), dict(terminal=0.3), dict(max_shift=3.0, base_shift=0.5)]
    for kw in cases:
        args = dict(max_shift=2.05, base_shift=0.95, stretch=True, terminal=0.1) | kw
        for steps in (2, 8, 30, 100):
            for latent_shape, tokens in (((1, 128, 8, 16, 16), 8 * 16 * 16), (None, 4096)):
                latent = None if latent_shape is None else {"samples": torch.zeros(latent_shape)}
                core = _node_out(node.execute(steps, latent=latent, **args))
                params = {k: v for k, v in args.items()}
                params["stretch"] = "true" if params["stretch"] else "false"
                ours = schedules.get_sigmas("ltxv", steps, tokens=tokens,
                                            **params).double().numpy()
                assert ours.shape == core.shape
                assert np.all(_ulps(ours, core) <= 16), (kw, steps, tokens,
                                                          float(_ulps(ours, core).max()))
