"""Exponential integrators in the half-log-SNR lambda (Lu et al. 2022, 2023):
the linear part of the ODE is solved exactly and only the denoiser's
prediction is approximated.

Every formula here is written for a general process (alpha, sigma): in
normalised coordinates x / alpha, sigma / alpha the process is VE, the familiar
VE formula applies, and multiplying back by alpha_next turns "+ c * denoised"
into "+ alpha_next * c * denoised" while the x and noise terms keep their
sigma ratios. For VE (alpha = 1) the formulas are k-diffusion's.

First-order terms use `Process.decay` (= e^-h from ratios, exact even at
alpha = 0); step-size ratios for higher-order terms use lambda.
"""
import math

import torch

from .core import run_with_split


def _expm1_neg(h):
    """1 - e^-h, accurate for small h, 1 for h = inf."""
    return 1.0 if math.isinf(h) else -math.expm1(-h)


def data_step(proc, x, denoised, sigma, sigma_to):
    """First-order step with the data prediction held constant: DDIM (Song et
    al. 2021) = DPM-Solver++(1) = Euler in VE coordinates."""
    a_to = proc.alpha(sigma_to)
    return x * (sigma_to / sigma) + denoised * (a_to * (1.0 - proc.decay(sigma, sigma_to)))


# --- single-step -------------------------------------------------------------

def sample_ddim(run):
    """DDIM; its eta is exactly the ancestral split's eta."""
    def step(run, i, x, denoised, sigma, sigma_down):
        return data_step(run.proc, x, denoised, sigma, sigma_down)
    return run_with_split(run, step)


def _dpmpp_2s_step(run, x, denoised, sigma, sigma_to, r=0.5):
    """DPM-Solver++(2S): one extra model call at lambda + r h."""
    proc = run.proc
    if sigma_to == 0.0:
        return data_step(proc, x, denoised, sigma, sigma_to)
    lam = proc.lam(sigma)
    sigma_s = proc.sigma_from_lam(lam + r * (proc.lam(sigma_to) - lam))
    x_s = data_step(proc, x, denoised, sigma, sigma_s)
    denoised_s = run.denoise_at(x_s, sigma_s)
    return data_step(proc, x, denoised_s, sigma, sigma_to)


def sample_dpmpp_2s(run):
    def step(run, i, x, denoised, sigma, sigma_down):
        return _dpmpp_2s_step(run, x, denoised, sigma, sigma_down)
    return run_with_split(run, step)


def sample_dpmpp_sde(run, r=0.5):
    """DPM-Solver++ SDE (k-diffusion's dpmpp_sde): the 2S step with an
    ancestral split in each of its two sub-steps, so noise enters at the stage
    too; with a Brownian source both draws lie on one path."""
    if not 0.0 < r < 1.0:
        raise ValueError(f"dpmpp_sde option r must be in (0, 1), got {r}")
    proc, eta = run.proc, run.eta
    fac = 1.0 / (2.0 * r)
    x = run.x
    for i in run.steps():
        sigma, sigma_next = run.sig[i], run.sig[i + 1]
        denoised = run.denoise(x, i)
        if sigma_next == 0.0:
            x = data_step(proc, x, denoised, sigma, 0.0)
            continue
        lam = proc.lam(sigma)
        sigma_s = proc.sigma_from_lam(lam + r * (proc.lam(sigma_next) - lam))
        sd, up = proc.ancestral_split(sigma, sigma_s, eta)
        x_s = data_step(proc, x, denoised, sigma, sd)
        labels = _sde_noise_labels(proc, sigma, sigma_next, sigma_s, r, run.sigmas.dtype)
        if up > 0.0:
            x_s = proc.renoise(x_s, sd, sigma_s, up, run.draw_at(labels[0], labels[1]))
        denoised_s = run.denoise_at(x_s, sigma_s)
        sd, up = proc.ancestral_split(sigma, sigma_next, eta)
        denoised_d = denoised * (1.0 - fac) + denoised_s * fac
        x = data_step(proc, x, denoised_d, sigma, sd)
        if up > 0.0:
            x = proc.renoise(x, sd, sigma_next, up, run.draw_at(labels[0], labels[2]))
    return run.result(x)


def _sde_noise_labels(proc, sigma, sigma_next, sigma_s, r, dtype):
    """The sigmas that name dpmpp_sde's two noise intervals on the Brownian
    path. For VE they are computed as k-diffusion does, in the schedule's
    dtype through t = -log(sigma): its labels differ from the schedule's
    numbers by an ulp,
    and a Brownian path read an ulp apart differs by ~1e-4, enough to part
    ways with the core sampler's image for the same seed."""
    if proc.name != "ve":
        return sigma, sigma_s, sigma_next
    t = -torch.tensor([sigma, sigma_next], dtype=dtype).log()
    t_s = t[0] + (t[1] - t[0]) * r
    return float((-t[0]).exp()), float((-t_s).exp()), float((-t[1]).exp())


# --- multistep ---------------------------------------------------------------

def sample_dpmpp_multistep(run, order=2, solver_type="midpoint"):
    """DPM-Solver++(2M) / (3M) and their SDE forms (Lu et al. 2023; Gonzalez
    et al. 2023 for 3M), with eta the SDE's noise fraction: eta = 0 is the ODE
    solver, eta = 1 the SDE DPM-Solver++ of the paper.

    Per step, with h = lambda_next - lambda and H = (1 + eta) h:
      x' = (sigma'/sigma) e^{-eta h} x + alpha' (1 - e^{-H}) D  + alpha' * corr
           + sigma' sqrt(1 - e^{-2 eta h}) z
    where corr is the finite-difference correction from earlier predictions.
    The step to sigma = 0 is a plain denoise.
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    proc, eta = run.proc, run.eta
    x = run.x
    hist = []  # (denoised, h of the step that followed it), newest first
    h = None
    for i in run.steps():
        sigma, sigma_next = run.sig[i], run.sig[i + 1]
        denoised = run.denoise(x, i)
        if sigma_next == 0.0:
            x = denoised
            hist.insert(0, (denoised, h))
            continue
        h = proc.lam(sigma_next) - proc.lam(sigma)
        decay = proc.decay(sigma, sigma_next)  # e^-h, exact
        a_next = proc.alpha(sigma_next)
        big_h = (1.0 + eta) * h
        one_minus = 1.0 - decay ** (1.0 + eta)
        x = x * ((sigma_next / sigma) * decay ** eta) + denoised * (a_next * one_minus)
        if hist and order >= 3 and len(hist) >= 2:
            (d1, h1), (d2, h2) = hist[0], hist[1]
            r0, r1 = h1 / h, h2 / h
            d1_0 = (denoised - d1) / r0
            d1_1 = (d1 - d2) / r1
            dd1 = d1_0 + (d1_0 - d1_1) * (r0 / (r0 + r1))
            dd2 = (d1_0 - d1_1) / (r0 + r1)
            phi_2 = 1.0 - _expm1_neg(big_h) / big_h
            phi_3 = phi_2 / big_h - 0.5
            x = x + dd1 * (a_next * phi_2) - dd2 * (a_next * phi_3)
            # free the latent-sized temporaries before the next model call
            del d1, d2, d1_0, d1_1, dd1, dd2
        elif hist:
            d1, h1 = hist[0]
            r = h1 / h
            if solver_type == "heun" or order >= 3:
                w = 1.0 - _expm1_neg(big_h) / big_h
            else:
                w = 0.5 * one_minus
            x = x + (denoised - d1) * (a_next * w / r)
        if eta > 0.0:
            # From the exact decay, not the floored lambda, so the first step
            # out of pure flow noise gets its full variance.
            x = x + run.draw(i) * (sigma_next * math.sqrt(1.0 - decay ** (2.0 * eta)))
        hist.insert(0, (denoised, h))
        del hist[2:]
    return run.result(x)
