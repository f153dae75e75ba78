"""ddim, plms and uni_pc against diffusers' schedulers on the same discrete
model (SD1.x: scaled-linear betas 0.00085..0.012 over 1000 steps).

diffusers works in VP space with an eps-prediction model; our samplers work in
ComfyUI's VE sigma space with a denoiser. The conversion (standard, e.g.
Karras et al. 2022, Table 1):
    sigma(t) = sqrt((1 - alphas_cumprod[t]) / alphas_cumprod[t])
    x_vp     = x_ve / sqrt(1 + sigma^2)          (= sqrt(alphas_cumprod) x_ve)
    eps      = (x_ve - D(x_ve, sigma)) / sigma
At sigma = 0 (set_alpha_to_one / final_sigmas_type="zero") the two spaces
coincide, so final samples compare directly. Our sigmas are exactly the
noise levels of the timesteps diffusers visits, read from the scheduler.

diffusers keeps alphas_cumprod (and UniPC its sigmas) in float32, so the two
sides differ by float32 round-off in coefficients: hence 1e-4.
"""
import pytest
import torch

import helpers as H
from sampler_lab import samplers
from sampler_lab.bench import models

diffusers = pytest.importorskip("diffusers")

RTOL = 1e-4
SD1 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
           beta_schedule="scaled_linear")

_DIGITS = models.EmpiricalData(models.digits(256, torch.float64), "ve")
MODELS = {
    "gaussian": (H.gaussian("ve").denoiser, (2, 3, 8, 8)),
    "digits": (_DIGITS.denoiser, (3, 1, 8, 8)),
}


def sigma_of_t(scheduler, t):
    ac = scheduler.alphas_cumprod[int(t)].double()
    return float(((1 - ac) / ac).sqrt())


def start(model_name, sigma0, seed=0):
    denoiser, shape = MODELS[model_name]
    g = torch.Generator().manual_seed(seed)
    # diffusers starts from unit-variance noise in VP space
    x_ve = torch.randn(shape, generator=g, dtype=torch.float64) * (1 + sigma0 ** 2) ** 0.5
    return denoiser, x_ve


def assert_rel(ours, theirs, what):
    err = H.rel_err(ours, theirs)
    assert err < RTOL, f"{what}: relative difference {err:.3g}"


class RecordingEps:
    """The eps model, keeping the denoiser output of every call so the
    trajectories can be compared call by call, not only at the end (on the
    digits data the end is a training image, which hides small deviations)."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.denoised = []

    def __call__(self, x_vp, sigma):
        x_ve = x_vp * (1.0 + sigma ** 2) ** 0.5
        d = self.denoiser(x_ve, torch.full((x_ve.shape[0],), sigma, dtype=x_ve.dtype))
        self.denoised.append(d)
        return (x_ve - d) / sigma


def assert_same_denoised(rec, theirs, index_map, what):
    """Our callback's `denoised` at step i against diffusers' model call index_map(i)."""
    assert rec.steps, f"{what}: no callbacks"
    for step in rec.steps:
        i = step["i"]
        assert_rel(step["denoised"], theirs[index_map(i)], f"{what}: denoised at step {i}")


# --- DDIM --------------------------------------------------------------------

@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_matches_diffusers(model_name, steps, eta):
    # "leading" spacing with steps_offset = 1 (SD1.x's config): every step goes
    # from t to t - 1000 // steps, which is exactly the next visited timestep,
    # and the last one to alphas_cumprod = 1, i.e. sigma = 0.
    sched = diffusers.DDIMScheduler(**SD1, set_alpha_to_one=True, timestep_spacing="leading",
                                    steps_offset=1, clip_sample=False)
    sched.set_timesteps(steps)
    ts = [int(t) for t in sched.timesteps]
    ratio = 1000 // steps
    assert all(a - b == ratio for a, b in zip(ts, ts[1:])) and ts[-1] - ratio < 0
    sig = [sigma_of_t(sched, t) for t in ts] + [0.0]

    denoiser, x_ve = start(model_name, sig[0])
    # The same unit noise for step k on both sides: diffusers adds
    # std_t * z_k to the VP sample at the next level, which in VE units is
    # exactly the ancestral sigma_up * z_k.
    replay = H.ReplayNoise(x_ve, 21)
    zs = [replay(0, 0) for _ in ts]

    x_vp = x_ve / (1 + sig[0] ** 2) ** 0.5
    model = RecordingEps(denoiser)
    for k, t in enumerate(ts):
        eps = model(x_vp, sig[k])
        x_vp = sched.step(eps, t, x_vp, eta=eta, variance_noise=zs[k] if eta > 0 else None).prev_sample

    ours_noise = H.ReplayNoise(x_ve, 21)
    rec = H.Recorder()
    got = samplers.get_sampler("ddim").fn(denoiser, x_ve.clone(), torch.tensor(sig, dtype=torch.float64),
                                          eta=eta, noise=ours_noise, callback=rec)
    what = f"ddim {steps} steps eta={eta} on {model_name}"
    assert_rel(got, x_vp, what)
    assert_same_denoised(rec, model.denoised, lambda i: i, what)
    if eta > 0:
        # one draw per step except the last (it lands on sigma = 0)
        assert len(ours_noise.intervals) == len(ts) - 1


# --- PLMS (PNDM with skip_prk_steps) -------------------------------------------

@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("steps", [4, 10, 25])
def test_plms_matches_diffusers(model_name, steps):
    # With skip_prk_steps diffusers visits [t0, t1, t1, t2, ...]: the repeated
    # t1 is the pseudo-Heun first step (an Euler predictor to t1, then the
    # average of the two eps from t0 again), after which it runs
    # Adams-Bashforth of growing order on eps with the DDIM transfer -- in VE
    # units an Euler step x + (sigma' - sigma) eps (PNDM paper, eq. 9).
    sched = diffusers.PNDMScheduler(**SD1, skip_prk_steps=True, set_alpha_to_one=True,
                                    timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(steps)
    ts = [int(t) for t in sched.timesteps]
    uniq = list(dict.fromkeys(ts))
    assert len(uniq) == steps and len(ts) == steps + 1
    sig = [sigma_of_t(sched, t) for t in uniq] + [0.0]

    denoiser, x_ve = start(model_name, sig[0])
    x_vp = x_ve / (1 + sig[0] ** 2) ** 0.5
    model = RecordingEps(denoiser)
    for t in ts:
        eps = model(x_vp, sigma_of_t(sched, t))
        x_vp = sched.step(eps, t, x_vp).prev_sample

    counted = models.CallCounter(denoiser)
    rec = H.Recorder()
    got = samplers.get_sampler("plms").fn(counted, x_ve.clone(), torch.tensor(sig, dtype=torch.float64),
                                          callback=rec)
    what = f"plms {steps} steps on {model_name}"
    assert_rel(got, x_vp, what)
    assert counted.calls == len(model.denoised)
    # diffusers' call 1 is the pseudo-Heun stage (no grid step of its own)
    assert_same_denoised(rec, model.denoised, lambda i: 0 if i == 0 else i + 1, what)


# --- UniPC -------------------------------------------------------------------

@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("steps", [5, 12])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("name,variant", [("uni_pc", "bh1"), ("uni_pc_bh2", "bh2")])
def test_uni_pc_matches_diffusers(model_name, steps, order, name, variant):
    # Data prediction (predict_x0), lower-order warm-up and final steps, the
    # corrector after every step but the last (diffusers applies it at the
    # start of the next step with that step's model output: same arithmetic).
    sched = diffusers.UniPCMultistepScheduler(**SD1, solver_order=order, solver_type=variant,
                                              predict_x0=True, lower_order_final=True,
                                              final_sigmas_type="zero")
    sched.set_timesteps(steps)
    sig = sched.sigmas.double()
    assert sig.shape[0] == steps + 1 and float(sig[-1]) == 0.0

    denoiser, x_ve = start(model_name, float(sig[0]))
    x_vp = x_ve / (1 + float(sig[0]) ** 2) ** 0.5
    model = RecordingEps(denoiser)
    for k, t in enumerate(sched.timesteps):
        eps = model(x_vp, float(sig[k]))
        x_vp = sched.step(eps, t, x_vp).prev_sample
    if variant == "bh1":
        # diffusers' last step (order 1, to sigma = 0) computes
        # x_t_ - alpha_t * B(h) * 0 with B(h) = -h = -inf for bh1: NaN. The
        # order-1 predictor has no correction term, so its value is x_t_ =
        # (0 / sigma) x + (1 - 0) m0: the denoiser output of that last call.
        assert torch.isnan(x_vp).all()
        x_vp = model.denoised[-1]

    counted = models.CallCounter(denoiser)
    rec = H.Recorder()
    got = samplers.get_sampler(name).fn(counted, x_ve.clone(), sig, order=order, callback=rec)
    what = f"{name} order {order}, {steps} steps on {model_name}"
    assert counted.calls == steps
    # The model is called at the predictor's output in both, every call the
    # same. The last step differs by design: ours, as the UniPC authors' code
    # and the newest ComfyUI, integrates to sigma 0.001 from the corrected
    # point (tests/host/test_sampler_parity.py); diffusers (final_sigmas_type
    # "zero") returns the last model output. Their gap is that last order-1
    # step's: at most sigma_last's share of the noise.
    assert_same_denoised(rec, model.denoised, lambda i: i, what)
    last = float(sig[-2])
    assert H.rel_err(got, x_vp) < 2 * last / (1 + last), what
