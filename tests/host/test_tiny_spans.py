"""Any sigma span works (issue 22, item 7): a tiny denoise on our KSampler
(the schedule's last steps + 1 sigmas of int(steps / denoise) steps, all
within 1e-6 of each other) gave a RecursionError inside torchsde's
BrownianInterval, or noise of zero variance, where the core's KSampler runs.
Oracle: the deterministic euler run on the same sigmas (ours equals the
core's KSampler there, tests/host/test_nodes.py): the stochastic samplers
differ from it only by the noise they add, a few times the schedule's first
sigma; the result is finite."""
import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)
from sampler_lab.samplers import BrownianNoise

CASES = [  # (model, scheduler, steps, denoise): the failures and smaller
    ("flow", "karras", 8, 1e-4), ("eps", "karras", 8, 1e-4), ("flow", "exponential", 20, 1e-3),
    ("flow", "polyexponential", 20, 1e-3), ("eps", "exponential", 8, 1e-5),
    ("eps", "optimal_steps", 8, 1e-4), ("flow", "optimal_steps", 8, 1e-4),
]
SAMPLERS = ["lcm", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "er_sde", "dpmpp_3m_sde",
            "sa_solver", "seeds_3", "ddpm", "res_multistep_ancestral", "dpm_2_ancestral",
            "dpmpp_2s_ancestral"]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("kind,scheduler,steps,denoise", CASES)
def test_tiny_denoise_runs(comfy, request, cond, sampler, kind, scheduler, steps, denoise):
    model = request.getfixturevalue("sd15_model" if kind == "eps" else "sd3_model")
    pos, neg = cond
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5

    def run(name):
        with torch.inference_mode():
            return comfy.lab.LabKSampler().sample(
                model, 3, steps, 1.0, name, scheduler, pos, neg, {"samples": latent},
                denoise=denoise)
    try:
        out = run(sampler)
    except ValueError as exc:  # allowed: a clear message naming the input
        assert any(k in str(exc) for k in ("denoise", "steps", "scheduler")), str(exc)
        return
    samples = out["result"][0]["samples"]
    sigmas = out["ui"]["sampler_lab_sigmas"]
    assert torch.isfinite(samples).all()
    reference = run("euler")["result"][0]["samples"]
    gap = float((samples - reference).abs().max())
    print(f"TINY {kind} {scheduler} {denoise:g} {sampler}: sigmas {sigmas[0]:.6g}.."
          f"{sigmas[-2]:.6g}, max |out - euler| {gap:.2e}")
    if sampler == "lcm":
        # LCM re-noises fully at every step: on this exact denoiser the core's
        # own lcm ends 1.5 away from euler here (eps karras 1e-4); the spread
        # must stay the data's
        ratio = float(samples.std() / reference.std())
        assert 0.5 < ratio < 2.0, ratio
    else:
        assert gap < 10 * sigmas[0] + 1e-5


@pytest.mark.parametrize("span", [1e-3, 1e-5, 3e-7, 1e-9, 1e-13])
def test_brownian_noise_has_unit_variance_at_any_span(span):
    """The noise source itself: unit variance, zero mean over 16k values at
    every span (the host-compatible tree gave zeros or a RecursionError
    below its 1e-6 resolution), and the same numbers when asked twice."""
    x = torch.zeros(4, 4, 32, 32)
    lo, hi = 0.0291675, 14.6146
    a = 0.0291675 + 3 * span
    noise = BrownianNoise(x, lo, hi, 3)
    w = noise(torch.tensor(a + span, dtype=torch.float64), torch.tensor(a, dtype=torch.float64))
    assert abs(float(w.std()) - 1.0) < 0.03 and abs(float(w.mean())) < 0.03
    again = BrownianNoise(x, lo, hi, 3)(torch.tensor(a + span, dtype=torch.float64),
                                        torch.tensor(a, dtype=torch.float64))
    assert torch.equal(w, again)
