"""A stochastic run split in two equals the unsplit run (issue 22, item 6).

The usual base -> refiner chain: KSampler (Advanced) 0-10 with leftover
noise, then 10-20 with add_noise off, same seed (ComfyUI issues #6293 and
#8274 expect the image of one 0-20 run); and SamplerCustomAdvanced over the
two halves of SplitSigmas. Our fresh noise is one Brownian path indexed by
the model's absolute sigma, so each piece draws exactly the increments the
unsplit run draws over the same sigmas:
- single-step samplers give the unsplit latent to float32 tolerance;
- multistep ones restart their history at the split (a deterministic
  effect, printed beside the same sampler's split at eta 0): far below what
  replayed or fresh noise gives (the gap between two seeds), with the
  unsplit run's spread.
The oracle is the unsplit run through the same host pipeline."""
import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)

SINGLE_STEP = ["euler_ancestral", "dpmpp_sde", "lcm", "dpm_2_ancestral", "dpmpp_2s_ancestral"]
MULTISTEP = ["dpmpp_2m_sde", "dpmpp_3m_sde", "er_sde"]


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def _latent():
    return {"samples": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(9)) * 0.3}


def _advanced(comfy, model, cond, sampler, seed, start, end, add_noise, leftover, latent,
              steps=20, eta=-1.0):
    pos, neg = cond
    out = comfy.lab.LabKSamplerAdvanced().sample(
        model, add_noise, seed, steps, 1.0, sampler, "karras", pos, neg, latent, start, end,
        leftover, noise_strength=eta)
    return out["result"][0]


def _chain(comfy, model, cond, sampler, seed=21, split=10, eta=-1.0):
    first = _advanced(comfy, model, cond, sampler, seed, 0, split, "enable", "enable",
                      _latent(), eta=eta)
    return _advanced(comfy, model, cond, sampler, seed, split, 10000, "disable", "disable",
                     first, eta=eta)["samples"]


def _whole(comfy, model, cond, sampler, seed=21, eta=-1.0):
    return _advanced(comfy, model, cond, sampler, seed, 0, 10000, "enable", "disable",
                     _latent(), eta=eta)["samples"]


@pytest.fixture(params=["eps", "flow"])
def model(request, comfy):
    return request.getfixturevalue("sd15_model" if request.param == "eps" else "sd3_model")


@pytest.mark.parametrize("sampler", SINGLE_STEP)
def test_split_ksampler_advanced_equals_one_run_single_step(comfy, model, cond, sampler):
    with torch.inference_mode():
        whole = _whole(comfy, model, cond, sampler)
        split = _chain(comfy, model, cond, sampler)
        other_seed = _whole(comfy, model, cond, sampler, seed=22)
    gap, seed_gap = _rel(split, whole), _rel(other_seed, whole)
    print(f"SPLIT {sampler}: split vs whole {gap:.2e}, another seed {seed_gap:.2e}")
    assert seed_gap > 0.1  # the noise matters here, so equality means the same noise
    assert gap < 1e-5, f"{sampler}: the split run differs from the whole run by {gap:.2e}"


@pytest.mark.parametrize("sampler", MULTISTEP)
def test_split_ksampler_advanced_multistep_keeps_the_noise(comfy, model, cond, sampler):
    """The history restarts at the split; the noise does not: the gap stays
    of the order of the deterministic split's and far below another seed's,
    and the chain keeps the unsplit run's spread (replayed noise raised it
    by 1.23x, issue 22)."""
    with torch.inference_mode():
        whole = _whole(comfy, model, cond, sampler)
        split = _chain(comfy, model, cond, sampler)
        other_seed = _whole(comfy, model, cond, sampler, seed=22)
        det_gap = _rel(_chain(comfy, model, cond, sampler, eta=0.0),
                       _whole(comfy, model, cond, sampler, eta=0.0))
    gap, seed_gap = _rel(split, whole), _rel(other_seed, whole)
    ratio = float(split.std() / whole.std())
    print(f"SPLIT {sampler}: split vs whole {gap:.2e}, at eta 0 {det_gap:.2e}, another seed "
          f"{seed_gap:.2e}, std ratio {ratio:.4f}")
    # Measured (karras, 20 steps, split at 10): eps 0.9-3.3e-2 against 0.7-1.0e-2
    # at eta 0; flow up to 3.9e-2 against 2.4e-3: the stochastic multistep
    # correction the restarted history lacks is larger than the ODE's, so
    # "no farther than the deterministic split" is not met on flow (the
    # history does not cross nodes). Replayed noise gave ~0.5 here.
    assert gap < 0.05 * seed_gap
    assert abs(ratio - 1.0) < 0.02


def test_split_sigmas_custom_advanced_equals_one_run(comfy, model, cond):
    """SamplerCustomAdvanced over SplitSigmas' halves (the newest host's
    graph for a base -> refiner chain), our Sampler node; the second half's
    NOISE is Sampler Lab Noise with add_noise off (the same seed for the
    fresh noise; the core's DisableNoise hands the sampler seed 0)."""
    cs = comfy.nodes_custom_sampler
    if not hasattr(cs, "SamplerCustomAdvanced"):
        pytest.skip("this host has no SamplerCustomAdvanced (COMFYUI_DIR=/work/comfy has it)")
    from comfy_extras.nodes_custom_sampler import BasicGuider, RandomNoise, SplitSigmas

    def run(node, *args):
        out = getattr(node(), node.FUNCTION)(*args)
        out = getattr(out, "result", out)  # v3 nodes return NodeOutput
        return out["result"] if isinstance(out, dict) else out

    pos, _ = cond
    sigmas = run(cs.BasicScheduler, model, "karras", 16, 1.0)[0]
    high, low = run(SplitSigmas, sigmas, 7)[:2]
    guider = run(BasicGuider, model, pos)[0]
    sampler = comfy.lab.LabSampler().get_sampler("euler_ancestral", -1.0, 1.0)[0]
    noise = run(RandomNoise, 5)[0]
    off = comfy.lab.LabNoise().get_noise(5, add_noise=False)[0]
    with torch.inference_mode():
        whole = run(cs.SamplerCustomAdvanced, noise, guider, sampler, sigmas, _latent())[0]
        first = run(cs.SamplerCustomAdvanced, noise, guider, sampler, high, _latent())[0]
        second = run(cs.SamplerCustomAdvanced, off, guider, sampler, low, first)[0]
    gap = _rel(second["samples"], whole["samples"])
    print(f"SPLIT SplitSigmas euler_ancestral: {gap:.2e}")
    assert gap < 1e-5


def test_split_sigmas_sampler_custom_equals_one_run(comfy, model, cond):
    """SamplerCustom over SplitSigmas' halves, the second with add_noise off
    and the same noise_seed (the seed the sampler's fresh noise uses)."""
    cs = comfy.nodes_custom_sampler
    split_cls = getattr(cs, "SplitSigmas", None)
    if split_cls is None:
        pytest.skip("this host has no SplitSigmas")

    def run(node, *args):
        out = getattr(node(), node.FUNCTION)(*args)
        out = getattr(out, "result", out)
        return out["result"] if isinstance(out, dict) else out

    pos, neg = cond
    sigmas = run(cs.BasicScheduler, model, "karras", 16, 1.0)[0]
    high, low = run(split_cls, sigmas, 9)[:2]
    sampler = comfy.lab.LabSampler().get_sampler("dpmpp_sde", -1.0, 1.0)[0]
    with torch.inference_mode():
        whole = run(cs.SamplerCustom, model, True, 5, 1.0, pos, neg, sampler, sigmas,
                    _latent())[0]
        first = run(cs.SamplerCustom, model, True, 5, 1.0, pos, neg, sampler, high, _latent())[0]
        second = run(cs.SamplerCustom, model, False, 5, 1.0, pos, neg, sampler, low, first)[0]
    gap = _rel(second["samples"], whole["samples"])
    print(f"SPLIT SplitSigmas SamplerCustom dpmpp_sde: {gap:.2e}")
    assert gap < 1e-5
