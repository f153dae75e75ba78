"""The 2026 core's sampler additions, each against a hand-derived one-step
(or few-step) formula on exact Gaussian data, written here from the
equations of the core's source (comfy/k_diffusion/sampling.py, 2026:
sample_seeds_2 with solver_type and r, sample_exp_heun_2_x0(_sde) = seeds_2
at r = 1, solver_type phi_2; _sample_cfgpp_history / sample_cfgpp_ud10_ab),
never from our code:

  lambda = log(alpha / sigma), h = lambda_t - lambda_s, alpha the process's
  stage:  x_r = (s_r/s) e^(-r h eta) x + alpha_r (1 - e^(-r h (1 + eta))) D0 + noise
  phi_1:  x' = (t/s) e^(-h eta) x + alpha_t (1 - e^(-H)) ((1 - 1/(2r)) D0 + D_r/(2r))
  phi_2:  x' = (t/s) e^(-h eta) x + alpha_t ((1 - e^(-H) - b2) D0 + b2 D_r),
          b2 = (e^(-H) - 1 + H) / (H r),  H = h (1 + eta)
"""
import math

import pytest
import torch

from sampler_lab import samplers
from sampler_lab.bench import models

DATA = {"ve": (0.3, 0.6), "flow": (0.2, 0.8)}


def _alpha(s, process):
    return 1.0 if process == "ve" else 1.0 - s


def _lam(s, process):
    return math.log(_alpha(s, process) / s)


def _sigma_of_lam(lam, process):
    return math.exp(-lam) if process == "ve" else 1.0 / (1.0 + math.exp(lam))


def _one_step(process, s, t, x, solver_type, r, eta=0.0, z=None):
    """The core's seeds_2 step from s to t > 0, by hand (float64)."""
    den = models.GaussianData(*DATA[process], process).denoiser
    h = _lam(t, process) - _lam(s, process)
    big_h = h * (1.0 + eta)
    s_r = _sigma_of_lam(_lam(s, process) + r * h, process) if r != 1.0 else t
    d0 = den(x, torch.tensor([s], dtype=torch.float64))
    x_r = (s_r / s) * math.exp(-r * h * eta) * x + \
        _alpha(s_r, process) * (1.0 - math.exp(-r * big_h)) * d0
    noise = 0.0
    if eta > 0.0:
        noise = math.sqrt(1.0 - math.exp(-2.0 * r * h * eta)) * z
        x_r = x_r + noise * s_r
    d_r = den(x_r, torch.tensor([s_r], dtype=torch.float64))
    a_t = _alpha(t, process)
    if solver_type == "phi_1":
        mix = (1.0 - 1.0 / (2.0 * r)) * d0 + d_r / (2.0 * r)
        out = (t / s) * math.exp(-h * eta) * x + a_t * (1.0 - math.exp(-big_h)) * mix
    else:
        b2 = (math.exp(-big_h) - 1.0 + big_h) / (big_h * r)
        out = (t / s) * math.exp(-h * eta) * x + \
            a_t * ((1.0 - math.exp(-big_h) - b2) * d0 + b2 * d_r)
    if eta > 0.0:
        # the stage's noise decayed over the rest of the step, plus the rest's
        # own (the same unit draw z from the fixed source); r = 1: the rest is
        # empty and the step ends with the stage's noise
        rest = (r - 1.0) * h * eta
        tail = math.sqrt(max(0.0, 1.0 - math.exp(2.0 * rest))) * z
        out = out + (noise * math.exp(rest) + tail) * t
    return out


STEPS = {"ve": (4.0, 1.3), "flow": (0.8, 0.45)}


def _x(seed=0):
    return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("name,solver_type,r", [
    ("exp_heun_2_x0", "phi_2", 1.0), ("exp_heun_2_x0", "phi_1", 1.0),
    ("seeds_2", "phi_1", 0.5), ("seeds_2", "phi_2", 0.5), ("seeds_2", "phi_2", 0.3)])
def test_deterministic_step_is_the_hand_formula(process, name, solver_type, r):
    s, t = STEPS[process]
    x = _x() * (s if process == "ve" else 1.0)
    den = models.GaussianData(*DATA[process], process).denoiser
    opts = {"solver_type": solver_type}
    if name == "seeds_2":
        opts["r"] = r
    out = samplers.get_sampler(name).fn(den, x, torch.tensor([s, t], dtype=torch.float64),
                                        process=process, eta=0.0, **opts)
    want = _one_step(process, s, t, x, solver_type, r)
    assert torch.allclose(out, want, rtol=0, atol=1e-12), (out - want).abs().max()


class _Fixed:
    """A noise source that returns the same unit draw for every interval."""

    def __init__(self, z):
        self.z = z

    def __call__(self, sigma, sigma_next):
        return self.z


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("solver_type,r", [("phi_1", 0.5), ("phi_2", 0.5), ("phi_2", 0.3)])
def test_seeds_2_sde_step_is_the_hand_formula(process, solver_type, r):
    s, t = STEPS[process]
    x = _x() * (s if process == "ve" else 1.0)
    z = _x(7)
    den = models.GaussianData(*DATA[process], process).denoiser
    out = samplers.get_sampler("seeds_2").fn(
        den, x, torch.tensor([s, t], dtype=torch.float64), process=process, eta=1.0,
        noise=_Fixed(z), solver_type=solver_type, r=r)
    want = _one_step(process, s, t, x, solver_type, r, eta=1.0, z=z)
    assert torch.allclose(out, want, rtol=0, atol=1e-12), (out - want).abs().max()


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_sde_step_is_the_hand_formula(process, eta):
    s, t = STEPS[process]
    x = _x() * (s if process == "ve" else 1.0)
    z = _x(7)
    den = models.GaussianData(*DATA[process], process).denoiser
    out = samplers.get_sampler("exp_heun_2_x0_sde").fn(
        den, x, torch.tensor([s, t], dtype=torch.float64), process=process, eta=eta,
        noise=_Fixed(z))
    want = _one_step(process, s, t, x, "phi_2", 1.0, eta=eta, z=z)
    assert torch.allclose(out, want, rtol=0, atol=1e-12), (out - want).abs().max()


def test_defaults_are_the_cores():
    assert samplers.get_sampler("seeds_2").options == {"r": 0.5, "solver_type": "phi_1"}
    assert samplers.get_sampler("exp_heun_2_x0").options == {"solver_type": "phi_2"}
    assert samplers.get_sampler("exp_heun_2_x0").default_eta == 0.0
    assert samplers.get_sampler("exp_heun_2_x0_sde").default_eta == 1.0
    with pytest.raises(ValueError, match="solver_type"):
        samplers.get_sampler("seeds_2").fn(models.GaussianData().denoiser, _x(),
                                           torch.tensor([3.0, 1.0, 0.0]), solver_type="phi_3")


@pytest.mark.parametrize("process", ["ve", "flow"])
def test_exp_heun_is_second_order(process):
    """Independent of the transcription: the error against the exact ODE
    solution falls 4x per halving of the step (second order)."""
    data = models.GaussianData(*DATA[process], process)
    s0, s1 = (5.0, 0.05) if process == "ve" else (0.9, 0.05)
    x = _x(3) * (s0 if process == "ve" else 1.0)
    errs = []
    for n in (8, 16, 32):
        lam = torch.linspace(_lam(s0, process), _lam(s1, process), n + 1, dtype=torch.float64)
        sig = torch.tensor([_sigma_of_lam(float(v), process) for v in lam], dtype=torch.float64)
        out = samplers.get_sampler("exp_heun_2_x0").fn(data.denoiser, x, sig, process=process)
        errs.append(float((out - data.ode_solution(x, s0, s1)).abs().max()))
    orders = [math.log2(errs[k] / errs[k + 1]) for k in range(2)]
    assert all(1.8 < o < 2.3 for o in orders), (errs, orders)


class _Guided:
    """D_g = D_u + w (D_c - D_u) over two Gaussian denoisers; `uncond` returns
    D_u of the last call; counts calls."""

    def __init__(self, process, w):
        self.c = models.GaussianData(0.3, 0.5, process).denoiser
        self.u = models.GaussianData(-0.2, 0.7, process).denoiser
        self.w, self.last, self.calls = w, None, 0

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        c, u = self.c(x, sigma), self.u(x, sigma)
        self.last = u
        return u + self.w * (c - u)

    def uncond(self):
        return self.last


def _ud10_by_hand(model, x, sig, process):
    """_sample_cfgpp_history(history_weight=0.25, zero_weight=1, zero_order=1,
    uncond_history_weight=0.1), from its equations."""
    ds, eps_old, dens = [], None, []
    for i in range(len(sig) - 1):
        s, t = sig[i], sig[i + 1]
        d_g = model(x, torch.tensor([s], dtype=torch.float64))
        d_u = model.last
        a_s = _alpha(s, process)
        a_t = _alpha(t, process) if t != 0 else 1.0
        eps = (x - a_s * d_u) / s
        e = eps
        dt = t - s
        if i > 0:
            e = e + 0.1 * (dt / (s - sig[i - 1])) * (eps - eps_old)
        euler = a_t * d_g + t * e - x
        ds.append(euler / dt)
        if len(ds) == 1:
            step = euler
        else:
            h_prev = s - sig[i - 1]
            c1 = -dt * dt / (2.0 * h_prev)      # int of (tau - s)/(s_prev - s) over [s, t]
            c0 = dt - c1
            step = 0.75 * euler + 0.25 * (c0 * ds[-1] + c1 * ds[-2])
        x = x + step
        if t == 0 and dens:
            slope = (d_g - dens[-1]) / (s - sig[i - 1])
            x = d_g - s * slope
        dens.append(d_g)
        eps_old = eps
    return x


@pytest.mark.parametrize("process", ["ve", "flow"])
@pytest.mark.parametrize("end", [0.0, 0.2])
def test_cfgpp_ud10_ab_is_the_hand_loop(process, end):
    sig = [6.0, 2.5, 1.0, 0.45] if process == "ve" else [1.0, 0.7, 0.5, 0.3]
    sig = sig + [end * (1.0 if process == "ve" else 0.5)]
    x = _x(5) * (sig[0] if process == "ve" else 1.0)
    model = _Guided(process, 1.7)
    out = samplers.get_sampler("cfgpp_ud10_ab").fn(
        model, x, torch.tensor(sig, dtype=torch.float64), process=process, uncond=model.uncond)
    assert model.calls == len(sig) - 1
    want = _ud10_by_hand(_Guided(process, 1.7), x, sig, process)
    assert torch.allclose(out, want, rtol=0, atol=1e-12), (out - want).abs().max()


def test_cfgpp_ud10_ab_needs_uncond_and_no_noise():
    model = _Guided("ve", 1.5)
    with pytest.raises(ValueError, match="uncond"):
        samplers.get_sampler("cfgpp_ud10_ab").fn(model, _x(), torch.tensor([3.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="deterministic"):
        samplers.get_sampler("cfgpp_ud10_ab").fn(model, _x(), torch.tensor([3.0, 1.0, 0.0]),
                                                 uncond=model.uncond, eta=0.5)
