"""Variation seed and noise types on our nodes in a real ComfyUI (issue 23,
items 2 and 3). Oracles: the core's own KSampler (its latent for every
sampler name with fresh noise `core`), the same node at another seed (the
variation's ends), and moments."""
import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)
from sampler_lab.samplers.noise_types import FRESH_NOISE_TYPES, INITIAL_NOISE_TYPES


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _latent(batch=2):
    return {"samples": torch.zeros(batch, 4, 8, 8)}


def _ours(comfy, model, cond, sampler="euler_ancestral", seed=7, steps=8, **extra):
    pos, neg = cond
    with torch.inference_mode():
        out = comfy.lab.LabKSampler().sample(model, seed, steps, 1.0, sampler, "karras", pos,
                                             neg, _latent(), **extra)
    return out["result"][0]["samples"]


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m_sde"])
def test_variation_strength_ends_are_the_two_seeds_bit_for_bit(comfy, sd15_model, cond, sampler):
    base = _ours(comfy, sd15_model, cond, sampler, seed=7)
    other = _ours(comfy, sd15_model, cond, sampler, seed=99)
    zero = _ours(comfy, sd15_model, cond, sampler, seed=7, variation_seed=99,
                 variation_strength=0.0)
    one = _ours(comfy, sd15_model, cond, sampler, seed=7, variation_seed=99,
                variation_strength=1.0)
    half = _ours(comfy, sd15_model, cond, sampler, seed=7, variation_seed=99,
                 variation_strength=0.5)
    assert torch.equal(zero, base)
    assert torch.equal(one, other)
    # in between: neither end, about halfway, the spread kept
    gap_a, gap_b = _rel(half, base), _rel(half, other)
    assert 0.2 < gap_a / (gap_a + gap_b) < 0.8, (gap_a, gap_b)
    assert abs(float(half.std() / base.std()) - 1.0) < 0.15
    if sampler == "euler":  # the core's own image at strength 0
        pos, neg = cond
        with torch.inference_mode():
            core = comfy.nodes.KSampler().sample(sd15_model, 7, 8, 1.0, "euler", "karras", pos,
                                                 neg, _latent())[0]["samples"]
        assert _rel(zero, core) < 1e-5


def test_variation_strength_outside_0_1_is_a_clear_error(comfy, sd15_model, cond):
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="variation_strength"):
            _ours(comfy, sd15_model, cond, variation_seed=3, variation_strength=bad)
    with pytest.raises(ValueError, match="variation_strength"):
        comfy.lab.LabNoise().get_noise(1, "gaussian", 2, 2.0)


def test_noise_node_for_sampler_custom_advanced(comfy, sd15_model, cond):
    """Sampler Lab Noise: gaussian at strength 0 is the core's RandomNoise,
    strength 1 the variation seed's RandomNoise (with our sampler, whose fresh
    noise the seed's variation reaches too)."""
    cs = comfy.nodes_custom_sampler
    if not hasattr(cs, "SamplerCustomAdvanced"):
        pytest.skip("this host has no SamplerCustomAdvanced")
    from comfy_extras.nodes_custom_sampler import BasicGuider, RandomNoise

    def run(node, *args):
        out = getattr(node(), node.FUNCTION)(*args)
        out = getattr(out, "result", out)
        return out["result"] if isinstance(out, dict) else out

    pos, _ = cond
    sigmas = run(cs.BasicScheduler, sd15_model, "karras", 8, 1.0)[0]
    guider = run(BasicGuider, sd15_model, pos)[0]
    sampler = comfy.lab.LabSampler().get_sampler("euler_ancestral", -1.0, 1.0)[0]

    def sample(noise):
        with torch.inference_mode():
            return run(cs.SamplerCustomAdvanced, noise, guider, sampler, sigmas,
                       _latent())[0]["samples"]
    core_a, core_b = sample(run(RandomNoise, 4)[0]), sample(run(RandomNoise, 8)[0])
    ours = lambda t: sample(comfy.lab.LabNoise().get_noise(4, "gaussian", 8, t)[0])
    assert torch.equal(ours(0.0), core_a)
    assert torch.equal(ours(1.0), core_b)
    mid = ours(0.3)
    assert not torch.equal(mid, core_a) and torch.isfinite(mid).all()


@pytest.mark.parametrize("kind", INITIAL_NOISE_TYPES)
def test_initial_noise_types_run_and_keep_the_data_spread(comfy, sd15_model, cond, kind):
    """Each initial noise type through our KSampler (euler, deterministic):
    finite, and the result's spread within 10% of the gaussian run's (each
    type has unit variance per channel)."""
    gauss = _ours(comfy, sd15_model, cond, "euler", noise_type="gaussian")
    got = _ours(comfy, sd15_model, cond, "euler", noise_type=kind)
    assert torch.isfinite(got).all()
    assert abs(float(got.std() / gauss.std()) - 1.0) < 0.1, kind


@pytest.mark.parametrize("kind", [k for k in FRESH_NOISE_TYPES if k != "core"])
@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_fresh_noise_types_keep_the_data_spread(comfy, sd15_model, cond, sampler, kind):
    brown = _ours(comfy, sd15_model, cond, sampler, steps=20, fresh_noise="brownian")
    got = _ours(comfy, sd15_model, cond, sampler, steps=20, fresh_noise=kind)
    assert torch.isfinite(got).all()
    ratio = float(got.std() / brown.std())
    print(f"FRESH {sampler} {kind}: std vs brownian {ratio:.3f}")
    assert abs(ratio - 1.0) < 0.1, (kind, ratio)


def _core_names(comfy):
    return list(getattr(comfy.samplers, "SAMPLER_NAMES", comfy.samplers.KSampler.SAMPLERS))


@pytest.fixture(params=["eps", "flow"])
def any_model(request, comfy):
    return request.getfixturevalue("sd15_model" if request.param == "eps" else "sd3_model")


# Where ours is another algorithm than the core's, noise aside (measured here,
# karras 8 steps, cfg 1.5): the deterministic dpm_fast (0.10 eps), dpm_adaptive
# (3e-3) and deis (8e-2 / 5e-2) are the engine's own (tests/host/
# test_sampler_parity.py); dpmpp_2s_ancestral_cfg_pp's last step (6e-2 eps);
# on flow the core runs ddpm and res_multistep_ancestral with the VE
# formulas on flow sigmas, ours with the flow process's own ancestral split
# (0.4-0.5): the same draws, another rule; its RF dpmpp_2s_ancestral steps in
# another clock (9e-2). (Its RF split of euler_ancestral and dpm_2_ancestral
# is what fresh noise `core` uses there: equal.) uni_pc on flow: 9e-4.
KNOWN = {
    "eps": {"dpm_fast", "dpm_adaptive", "deis", "dpmpp_2s_ancestral_cfg_pp"},
    "flow": {"dpm_fast", "dpm_adaptive", "deis", "uni_pc", "uni_pc_bh2",
             "dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "ddpm",
             "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp"},
}


def test_fresh_noise_core_gives_the_core_latent_for_every_core_name(comfy, any_model, cond,
                                                                      request):
    """A workflow retyped from the core KSampler (same seed, steps, cfg,
    sampler, scheduler, denoise) with fresh_noise `core` gives the core's
    latent for the host's sampler names, stochastic ones included (cfg 1.5:
    the CFG++ samplers see a real guidance): 1e-4 relative, 1e-3 for the
    Brownian SDE names (as tests/host/test_nodes.py). The names in KNOWN
    differ by algorithm, not by noise; any other name failing fails."""
    from sampler_lab.nodes.host import CORE_BROWNIAN
    kind = request.node.callspec.params["any_model"]
    pos, neg = cond
    bad, stochastic_ok = {}, []
    for name in _core_names(comfy):
        args = dict(seed=11, steps=8, cfg=1.5, sampler_name=name, scheduler="karras",
                    positive=pos, negative=neg, latent_image=_latent(), denoise=1.0)
        with torch.inference_mode():
            core = comfy.nodes.KSampler().sample(any_model, **args)[0]["samples"]
            ours = comfy.lab.LabKSampler().sample(any_model, fresh_noise="core",
                                                  **args)["result"][0]["samples"]
        err = _rel(ours, core)
        print(f"CORE-NOISE {kind} {name}: {err:.2e}")
        if not err < (1e-3 if name in CORE_BROWNIAN else 1e-4):
            bad[name] = f"{err:.2e}"
        elif comfy.lab.host.get_sampler(name).default_eta > 0:
            stochastic_ok.append(name)
    known = set(KNOWN[kind])
    import inspect

    import comfy.k_diffusion.sampling as kds
    if "x = denoised" not in inspect.getsource(kds.sample_lms):
        known.add("lms")  # the March-2024 LMS extrapolates its last step (test_nodes.py)
    unexpected = {k: v for k, v in bad.items() if k not in known}
    assert not unexpected, unexpected
    print(f"stochastic names equal to the core's ({kind}): {len(stochastic_ok)}")
    assert len(stochastic_ok) >= 5  # 21 eps, 15 flow on 0.3.64
