"""UniPC (uni_pc = B(h) = h, uni_pc_bh2 = B(h) = e^h - 1).

Oracles:
* diffusers' UniPCMultistepScheduler (which follows the UniPC authors' code)
  on Stable Diffusion 1.x's discrete schedule, driven by an exact
  Gaussian-data eps model: same model, same sigmas, compared point by point;
* the closed-form probability-flow ODE solution of Gaussian data
  (GaussianData.ode_solution) for convergence orders, VE and flow;
* the data distribution itself for the stochastic form (an SDE sampler of
  Gaussian data must return that Gaussian).
"""
import math

import pytest
import torch

import helpers as H
from sampler_lab import samplers

NAMES = {"bh1": "uni_pc", "bh2": "uni_pc_bh2"}


# --- diffusers ---------------------------------------------------------------

def _sd1_scheduler(order, variant):
    from diffusers import UniPCMultistepScheduler
    return UniPCMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear",
        beta_start=0.00085, beta_end=0.012, solver_order=order, solver_type=variant,
        predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        prediction_type="epsilon")


def _run_diffusers(sched, data, x_ve):
    """diffusers' own loop in its VP space (x_vp = x_ve / sqrt(1 + sigma^2))
    with an eps model built from the exact VE denoiser. Returns the VE points
    the model was called at and the final sample."""
    sig = sched.sigmas
    x = x_ve / math.sqrt(1.0 + float(sig[0]) ** 2)
    visited = []
    for k, t in enumerate(sched.timesteps):
        s = float(sig[k])
        xv = x * math.sqrt(1.0 + s * s)
        visited.append(xv)
        d = data.denoiser(xv, torch.tensor(s, dtype=torch.float64))
        x = sched.step((xv - d) / s, t, x).prev_sample
        if k == len(sched.timesteps) - 1 and not torch.isfinite(x).all():
            # diffusers 0.35 with bh1: its final order-1 step adds
            # alpha_t * B(h) * 0 with B(h) = h = inf at sigma = 0, which is
            # NaN. Without that empty product the step is
            # sigma_t / sigma_s * x + alpha_t (1 - e^-h) x0_pred = x0_pred
            # (sigma_t = 0, alpha_t = 1); bh2 (B = -1 there) shows it.
            assert sched.config.solver_type == "bh1"
            x = d
    return visited, x


@pytest.mark.parametrize("steps", [10, 25])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_matches_diffusers_sd1(variant, order, steps):
    pytest.importorskip("diffusers")
    data = H.gaussian("ve")
    sched = _sd1_scheduler(order, variant)
    sched.set_timesteps(steps)
    sigmas = sched.sigmas.clone()  # VE sigmas, float32, ending in 0
    assert float(sigmas[-1]) == 0.0 and len(sigmas) == steps + 1
    x = data.noisy((2, 3, 8, 8), float(sigmas[0]), torch.Generator().manual_seed(steps + order),
                   torch.float64)
    visited, ref = _run_diffusers(sched, data, x)
    rec = H.Recorder()
    out = samplers.get_sampler(NAMES[variant]).fn(
        data.denoiser, x, sigmas, process="ve", order=order, callback=rec)
    assert torch.isfinite(out).all()
    assert len(rec.steps) == steps
    # Every point the model sees (each carries all corrections so far), then
    # the result: diffusers ends with the last model output, ours (as the
    # authors' code and the core) with an order-1 step to sigma 0.001 from the
    # corrected last point, which differs from that output by 0.001 / sigma_last
    # of its distance to it.
    diffs = [H.rel_err(r["x"], v) for r, v in zip(rec.steps, visited)]
    final = H.rel_err(out, ref)
    last = float(sigmas[-2])
    bound = 1.5 * (1e-3 / last) * H.rel_err(visited[-1], ref) + 1e-6
    report = f"max step diff {max(diffs):.2e}, final {final:.2e} (bound {bound:.2e})"
    assert max(diffs) < 1e-4 and final < bound, report
    # A different solver would not pass by accident: the result is far from
    # the true ODE solution at these step counts compared to the tolerance.
    exact = data.ode_solution(x, float(sigmas[0]), 0.0)
    assert H.rel_err(out, exact) > 1e-2


# --- convergence on the exact ODE solution -----------------------------------

SHAPE = (4, 3, 8, 8)


def _errors(process, name, order, ns, sigma_min):
    data = H.gaussian(process)
    s0 = H.sigma_max(process)
    x = data.noisy(SHAPE, s0, torch.Generator().manual_seed(0), torch.float64)
    errs = []
    for n in ns:
        # Ending at sigma_min > 0 keeps the final denoise (first order
        # whatever the method) out of the measurement.
        sig = H.schedule(process, n, sigma_min=sigma_min, zero=False)
        out = samplers.get_sampler(name).fn(data.denoiser, x, sig, process=process,
                                            order=order, eta=0.0)
        assert torch.isfinite(out).all()
        errs.append(H.rel_err(out, data.ode_solution(x, s0, float(sig[-1]))))
    return errs


# UniC-p lifts the order-p predictor to order p + 1 (Zhao et al. 2023,
# Thm. 3.3). On flow the start from sigma = 1 caps it at 2: the lambda steps
# near alpha = 0 stay O(1) however fine the grid, so the first steps keep an
# O(h^2) global contribution (measured: orders ~2.0 at 80 -> 160 steps for
# p = 3; tests/test_samplers_convergence.py documents the same for every
# multistep method).
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("process", ["ve", "flow"])
def test_converges_at_order(process, variant, order):
    want = order + 1 if process == "ve" else 2
    errs = _errors(process, NAMES[variant], order, (20, 40, 80), 0.005)
    orders = H.observed_orders(errs)
    report = (f"{NAMES[variant]} order {order} ({process}): errors "
              f"{['%.3g' % e for e in errs]}, orders {['%.2f' % o for o in orders]}")
    assert errs[-1] < 1e-2, report
    for o in orders:
        assert o >= 0.8 * want, report


def test_higher_order_option_is_more_accurate():
    for variant in ("bh1", "bh2"):
        e = [_errors("ve", NAMES[variant], p, (80,), 0.005)[0] for p in (1, 2, 3)]
        assert e[0] > 2 * e[1] > 4 * e[2], (variant, e)


# --- flow from pure noise, the step to 0 --------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_flow_from_sigma_one_to_zero(variant, order, dtype):
    """Exactly 1.0 down to 0.005, then the last step, which ends at sigma
    0.001 as the UniPC authors' code and the core do (not a denoise): judged
    there."""
    data = H.gaussian("flow")
    x = data.noisy(SHAPE, 1.0, torch.Generator().manual_seed(1), dtype)
    exact = data.ode_solution(x, 1.0, 1e-3)
    errs = []
    for n in (20, 40, 80):
        sig = H.flow_karras(n, sigma_min=0.005)
        assert float(sig[0]) == 1.0 and float(sig[-1]) == 0.0
        seen = []

        def model(x_, s):
            seen.append(bool(torch.isfinite(x_).all()) and 0.0 < float(s[0]) <= 1.0)
            return data.denoiser(x_, s)

        out = samplers.get_sampler(NAMES[variant]).fn(model, x, sig.to(dtype), process="flow",
                                                      order=order)
        assert out.dtype == dtype and torch.isfinite(out).all() and all(seen)
        assert len(seen) == n  # one call per step, none at sigma = 0
        errs.append(H.rel_err(out, exact))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 5e-3, errs


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_linear_flow_schedule_improves_with_steps(variant):
    """The uniform-t shift-3 schedule flow models use ends in one O(5) step in
    lambda, where the order-2 predictor's rho = 1/2 over-extrapolates (bh1:
    B = h = 5); the error must still fall as steps double."""
    data = H.gaussian("flow")
    x = data.noisy(SHAPE, 1.0, torch.Generator().manual_seed(1), torch.float32)
    exact = data.ode_solution(x, 1.0, 0.0)
    errs = []
    for n in (10, 20, 40):
        out = samplers.get_sampler(NAMES[variant]).fn(data.denoiser, x, H.flow_shifted(n).float(),
                                                      process="flow")
        assert torch.isfinite(out).all()
        errs.append(H.rel_err(out, exact))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.2, errs


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_corrector_of_bh2_is_the_trapezoid_in_inverse_sigma(process):
    """In -log(sigma), the clock of the deterministic samplers for both
    processes, the ODE reads d(x / sigma)/du = D with u = 1 / sigma, so a
    step is x_1 / s_1 = x_0 / s_0 + int_u0^u1 D du. UniC-1 of B(h) = 1 - e^-h
    (rho = 1/2) is the trapezoid rule on that integral, also for the first
    step out of flow's pure noise (u = 1, finite). Checked at the next model
    call, which sees the corrected point moved one DDIM step."""
    data = H.gaussian(process)
    s0 = 1.0 if process == "flow" else 14.6
    x0 = data.noisy(SHAPE, s0, torch.Generator().manual_seed(9), torch.float64)
    s1, s2 = (0.9, 0.7) if process == "flow" else (5.0, 2.0)
    sig = torch.tensor([s0, s1, s2, 0.0], dtype=torch.float64)
    rec = H.Recorder()
    samplers.get_sampler("uni_pc_bh2").fn(data.denoiser, x0, sig, process=process, order=1,
                                          callback=rec)
    m0, m1 = rec.steps[0]["denoised"], rec.steps[1]["denoised"]
    x1 = s1 * (x0 / s0 + (1 / s1 - 1 / s0) * (m0 + m1) / 2)
    x2 = s2 * (x1 / s1 + (1 / s2 - 1 / s1) * m1)
    assert H.rel_err(rec.steps[2]["x"], x2) < 1e-12


@pytest.mark.parametrize("h", [1e-7, 1e-3, 0.5, 0.999, 1.001, 4.0, 30.0])
def test_phi_weights_against_quadrature(h):
    """k! h phi_(k+1)(-h) = k! h int_0^1 e^(-h(1 - t)) t^k / k! dt (Hochbruck
    & Ostermann 2010), by 40-point Gauss-Legendre; tiny h is where the
    textbook recurrence cancels."""
    import numpy as np
    from sampler_lab.samplers.phi import phi
    t, w = np.polynomial.legendre.leggauss(40)
    t, w = (t + 1) / 2, w / 2
    got = [math.factorial(k) * h * phi(k + 1, -h) for k in (1, 2, 3)]
    for k in (1, 2, 3):
        want = h * float(np.sum(w * np.exp(-h * (1 - t)) * t ** k))
        assert abs(got[k - 1] - want) <= 1e-12 * abs(want), (k, got[k - 1], want)


# --- noise --------------------------------------------------------------------

@pytest.mark.parametrize("process", ["ve", "flow"])
def test_eta_zero_is_deterministic_and_draws_nothing(process):
    data = H.gaussian(process)
    s0 = H.sigma_max(process)
    x = data.noisy(SHAPE, s0, torch.Generator().manual_seed(2), torch.float32)
    sig = H.schedule(process, 12).float()
    outs = []
    for seed in (0, 1):
        noise = H.ReplayNoise(x, seed)
        outs.append(samplers.get_sampler("uni_pc").fn(data.denoiser, x, sig, process=process,
                                                      eta=0.0, noise=noise))
        assert noise.intervals == []
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("process", ["ve", "flow"])
def test_eta_one_samples_the_data_distribution(process, variant):
    """With fresh noise at every step the sampler solves the reverse SDE: its
    output must be distributed as the data, whatever the starting noise
    contributes. The per-channel mean and spread are checked against the
    Gaussian's (4096 draws per channel: ~1.5% sampling error on the std)."""
    data = H.gaussian(process)
    s0 = H.sigma_max(process)
    shape = (64, 3, 8, 8)
    x = data.noisy(shape, s0, torch.Generator().manual_seed(3), torch.float64)
    n = 40
    sig = H.schedule(process, n)
    noise = H.ReplayNoise(x, 7)
    out = samplers.get_sampler(NAMES[variant]).fn(data.denoiser, x, sig, process=process,
                                                  eta=1.0, noise=noise)
    assert torch.isfinite(out).all()
    # one draw per step except the last (to sigma = 0)
    assert len(noise.intervals) == n - 1
    mean = out.mean(dim=(0, 2, 3))
    std = out.std(dim=(0, 2, 3))
    want_mean = torch.tensor(H.MEAN, dtype=torch.float64)
    want_std = torch.tensor(H.STD, dtype=torch.float64)
    assert torch.allclose(mean, want_mean, atol=0.06), (mean, want_mean)
    assert torch.allclose(std / want_std, torch.ones(3, dtype=torch.float64), atol=0.06), std
    # ... and it is not the ODE's answer (noise did enter).
    exact = data.ode_solution(x, s0, 0.0)
    assert H.rel_err(out, exact) > 0.3


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_eta_one_order_two_is_sde_dpmpp_2m(variant, process):
    """At eta = 1 the ancestral split is the SDE's exact step (sigma_down / alpha
    = (sigma_next / alpha_next) e^-h), and UniP-2 with rho solved over
    H = 2h and the trend in elapsed lambda is SDE-DPM-Solver++(2M) (Lu et al.
    2023) with the weight 1 - (1 - e^-H) / H, term by term. The corrector must
    stay off for this to hold. dpmpp_2m integrates in the same clock as
    UniPC (-log sigma) for both processes."""
    data = H.gaussian(process)
    s0 = H.sigma_max(process)
    x = data.noisy(SHAPE, s0, torch.Generator().manual_seed(6), torch.float64)
    sig = H.schedule(process, 15)
    rec_ref, rec = H.Recorder(), H.Recorder()
    samplers.get_sampler("dpmpp_2m").fn(data.denoiser, x, sig, process=process, eta=1.0,
                                        solver_type="heun", noise=H.ReplayNoise(x, 8),
                                        callback=rec_ref)
    samplers.get_sampler(NAMES[variant]).fn(data.denoiser, x, sig, process=process, eta=1.0,
                                            order=2, noise=H.ReplayNoise(x, 8), callback=rec)
    # every point the model sees; the last step differs by design (UniPC's
    # lower_order_final and its end at sigma 0.001)
    assert len(rec.steps) == len(rec_ref.steps) == 15
    for a, b in zip(rec.steps, rec_ref.steps):
        assert H.rel_err(a["x"], b["x"]) < 1e-10


@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_flow_eta_from_pure_noise_is_finite(eta):
    data = H.gaussian("flow")
    x = data.noisy(SHAPE, 1.0, torch.Generator().manual_seed(4), torch.float32)
    for name in NAMES.values():
        out = samplers.get_sampler(name).fn(data.denoiser, x, H.flow_shifted(8).float(),
                                            process="flow", eta=eta, noise=H.ReplayNoise(x, 5))
        assert torch.isfinite(out).all(), (name, eta)


def test_rejects_bad_options():
    data = H.gaussian("ve")
    x = torch.zeros(1, 3, 2, 2)
    for bad in (0, 4, 2.0):
        with pytest.raises(ValueError):
            samplers.get_sampler("uni_pc").fn(data.denoiser, x, H.karras(4), order=bad)
