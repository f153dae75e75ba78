"""Every stochastic form keeps the data's scale: for every sampler x noise
strength {0.25, 0.5, 1, 2} x process x schedule {karras, simple, normal, beta}
(the core's definitions on an SD 1.x table and a shift-3 flow model) x
{4, 8, 12, 30} steps, the output's std on Gaussian data stays within a
stated band of the exact ODE solution's.

The band [0.3, 3.0]: the low end is what four ancestral Euler steps reach
(0.34: a first-order SDE step loses variance over few steps, DDPM's own
behaviour); the failures this guards against were 30x (LMS at eta 1 on
flow: a multistep history taken at re-noised points) and 9.6x (DPM-Solver++
3M SDE on flow's normal schedule: noise extrapolated over its long last
step). Outside it by design, each checked at its own measured bound, all at
4 steps of the VE Karras schedule and eta >= 1, where the ancestral split's
target sigma_next^2 / sigma is 25x below sigma:
* dpm_2, dpm_2_ancestral (3.2x) and heun (3.4x): a second-order step in
  sigma over that span overshoots; dpm_2_ancestral is the host's algorithm
  bit for bit (test_samplers_oracle_kdiffusion);
* dpm_fast (5.2x): the host's algorithm too; its split is capped at
  sigma_min, so one third-order step spans the rest of the schedule."""
import pytest
import torch

import helpers as H
from sampler_lab import samplers, schedules
from sampler_lab.bench import models
from sampler_lab.schedules.sampling import FlowSampling

BAND = (0.3, 3.0)
OWN_BOUND = {**{(n, eta, 4): 3.6 for n in ("heun", "dpm_2", "dpm_2_ancestral")
                for eta in (1.0, 2.0)},
             ("dpm_fast", 1.0, 4): 6.0, ("dpm_fast", 2.0, 4): 6.0}
FLOW = FlowSampling(shift=3.0)
NAMES = [n for n in H.PLAIN_NAMES if n != "lcm"]  # LCM: test_lcm_follows_its_closed_form


def _sigmas(process, name, steps):
    sampling = FLOW if process == "flow" else None
    return schedules.get_sigmas(name, steps, model_sampling=sampling).double()


@pytest.mark.parametrize("process", models.PROCESSES)
@pytest.mark.parametrize("name", NAMES)
def test_output_std_stays_near_the_datas(name, process):
    data = models.GaussianData(0.3, 0.6, process)
    for eta in (0.25, 0.5, 1.0, 2.0):
        for sched in ("karras", "simple", "normal", "beta"):
            for steps in (4, 8, 12, 30):
                sig = _sigmas(process, sched, steps)
                x0 = torch.randn(128, 1, 4, 4, dtype=torch.float64,
                                 generator=torch.Generator().manual_seed(steps)) * float(sig[0])
                exact = data.ode_solution(x0, float(sig[0]), 0.0)
                out = samplers.get_sampler(name).fn(data.denoiser, x0, sig, process=process,
                                                    eta=eta, noise=samplers.GaussianNoise(x0, 7))
                assert torch.isfinite(out).all(), (name, process, sched, steps, eta)
                ratio = float(out.std()) / float(exact.std())
                hi = OWN_BOUND.get((name, eta, steps), BAND[1])
                assert BAND[0] <= ratio <= hi, \
                    f"{name} ({process}, {sched}, {steps} steps, eta {eta}): std ratio {ratio:.2f}"


# Issue 22's goal: at eta 1 every sampler of (published) order >= 2 keeps the
# data's std within 5% at 20 steps on both processes (karras, the core's
# definition on an SD 1.x table / a shift-3 flow model). Deviations, each
# measured (ratio at 20 steps) and each still deviating:
import test_samplers_convergence as _C  # noqa: E402

_CORE_2M = ("the core's twin gives the same (tests/host/test_sampler_parity): the exact "
            "('heun') 2M weight extrapolates the noisy data predictions more than the "
            "midpoint one (dpmpp_2m_sde: 1.04)")
STD_DEVIATIONS = {
    ("dpmpp_2m_sde_heun", "ve"): (1.073, _CORE_2M),
    ("dpmpp_2m_sde_heun_gpu", "ve"): (1.073, _CORE_2M),
    ("res_multistep", "ve"): (1.073, _CORE_2M),
    ("res_multistep_ancestral", "ve"): (1.073, _CORE_2M),
    ("res_2m", "ve"): (1.073, _CORE_2M),
    ("gradient_estimation", "ve"): (1.073, "under noise it steps as exponential AB2 "
                                           "(res_multistep), two-step like its ODE form"),
    ("heunpp2", "ve"): (0.846, "first order (test_samplers_convergence.DEVIATIONS)"),
    ("heunpp2", "flow"): (0.904, "first order (test_samplers_convergence.DEVIATIONS)"),
}
ORDER_2 = [n for n in NAMES if _C.PUBLISHED_ORDER[n][0] >= 2 and n != "dpm_adaptive"]


@pytest.mark.parametrize("process", models.PROCESSES)
def test_order_two_keeps_the_datas_std_at_20_steps(process):
    data = models.GaussianData(0.1, 0.5, process)
    sig = _sigmas(process, "karras", 20)
    x0 = torch.randn(4096, 1, 2, 2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1)) * float(sig[0])
    exact = data.ode_solution(x0, float(sig[0]), 0.0)
    bad = []
    for name in ORDER_2:
        out = samplers.get_sampler(name).fn(data.denoiser, x0, sig, process=process, eta=1.0,
                                            noise=samplers.GaussianNoise(x0, 7))
        ratio = float(out.std()) / float(exact.std())
        dev = STD_DEVIATIONS.get((name, process))
        if dev is None and abs(ratio - 1.0) > 0.05:
            bad.append(f"{name}: std ratio {ratio:.3f}")
        if dev is not None and not (abs(ratio - 1.0) > 0.05 and abs(ratio - dev[0]) < 0.01):
            bad.append(f"{name}: listed at {dev[0]}, now {ratio:.3f}: update STD_DEVIATIONS")
    assert not bad, f"{process}:\n" + "\n".join(bad)


# Issue 22's goal at 8+ steps and eta <= 1: within 0.67-1.5x of the data's
# std. Deviations (name, process, eta, schedule, steps) -> measured ratio and
# reason; each must still deviate.
_FIRST = "first order: a first-order ancestral step loses variance (the core's twin the same)"
_CORE_STEPS = ("the core's function's steps, kept for its images (samplers/registry."
               "_CORE_NOISY); the same samplers at the engine's bound are inside")
BAND_8 = (0.67, 1.5)
BAND_8_DEVIATIONS = {
    **{(n, "ve", 1.0, "karras", 8): (0.66, _FIRST)
       for n in ("euler", "euler_ancestral", "ddim", "ddpm")},
    **{(n, "flow", 1.0, s, 8): (r, _FIRST) for n in ("euler", "euler_ancestral", "ddim", "ddpm")
       for s, r in (("karras", 0.64), ("simple", 0.64), ("normal", 0.61), ("beta", 0.63))},
    ("heunpp2", "flow", 1.0, "normal", 8): (0.66, "first order (test_samplers_convergence)"),
    ("sa_solver", "flow", 1.0, "simple", 8): (0.65, "its noise window (0.2-0.8 of the process) "
                                                    "ends before simple's last long steps"),
    **{(n, "ve", 1.0, "karras", 8): (1.57, _CORE_STEPS)
       for n in ("dpmpp_3m_sde", "dpmpp_3m_sde_gpu")},
    **{(n, p, eta, "normal", steps): (r, _CORE_STEPS)
       for n in ("dpmpp_2m_sde", "dpmpp_2m_sde_gpu")
       for p, eta, steps, r in (("ve", 1.0, 8, 1.55), ("ve", 1.0, 12, 1.56),
                                ("flow", 0.5, 8, 1.59), ("flow", 0.5, 12, 1.60),
                                ("flow", 1.0, 8, 1.65), ("flow", 1.0, 12, 1.69))},
    ("res_multistep_ancestral", "ve", 0.5, "normal", 8): (1.56, _CORE_STEPS),
    **{(n, "ve", 1.0, "karras", 8): (1.79, "UniPC's noisy bound 6 (samplers/registry."
                                           "_UNIPC_NOISY: at 5 the node test on an SD3-type "
                                           "model reads its 30/60-step std 7% off)")
       for n in ("uni_pc", "uni_pc_bh2")},
}


@pytest.mark.parametrize("process", models.PROCESSES)
def test_eight_steps_keep_the_datas_scale(process):
    data = models.GaussianData(0.3, 0.6, process)
    bad = []
    for sched in ("karras", "simple", "normal", "beta"):
        for steps in (8, 12):
            sig = _sigmas(process, sched, steps)
            x0 = torch.randn(1024, 1, 2, 2, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(steps)) * float(sig[0])
            exact_std = float(data.ode_solution(x0, float(sig[0]), 0.0).std())
            for name in NAMES:
                if name == "dpm_adaptive":
                    continue
                for eta in (0.5, 1.0):
                    out = samplers.get_sampler(name).fn(data.denoiser, x0, sig, process=process,
                                                        eta=eta,
                                                        noise=samplers.GaussianNoise(x0, 7))
                    ratio = float(out.std()) / exact_std
                    dev = BAND_8_DEVIATIONS.get((name, process, eta, sched, steps))
                    inside = BAND_8[0] <= ratio <= BAND_8[1]
                    if dev is None and not inside:
                        bad.append(f"{name} eta {eta} {sched} {steps}: {ratio:.2f}")
                    elif dev is not None and (inside or abs(ratio - dev[0]) > 0.02):
                        bad.append(f"{name} eta {eta} {sched} {steps}: listed at {dev[0]}, "
                                   f"now {ratio:.2f}: update BAND_8_DEVIATIONS")
    assert not bad, f"{process}:\n" + "\n".join(bad)
