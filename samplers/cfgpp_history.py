"""CFG++ Euler with a blended Adams-Bashforth history and a final
extrapolation to sigma 0: the newest ComfyUI's `cfgpp_ud10_ab` (its
"_sample_cfgpp_history" with history weight 0.25, zero weight 1 and an
unconditional-history weight 0.1; added in ComfyUI PR #15951, 2026).

Written from its equations, per step i (sigma = s_i, next s' = s_{i+1},
dt = s' - s, alpha the process's: 1 for VE, 1 - sigma for flow):

    D, U       guided and unconditional data predictions of the model call
    e          = (x - alpha(s) U) / s                  (CFG++'s noise estimate,
                                                        Chung et al. 2024, arXiv:2406.08070)
    e~         = e + w_u (dt / dt_prev) (e - e_prev)   (i > 0; w_u = 0.1)
    E          = alpha(s') D + s' e~ - x               (the CFG++ DDIM step)
    d_i        = E / dt
    A          = c_0 d_i + c_1 d_{i-1},  c_j = int_s^s' l_j(tau) dtau over the line
                 through (s, d_i), (s_prev, d_{i-1})   (Adams-Bashforth 2 in sigma)
    x'         = x + (1 - w_h) E + w_h A                (w_h = 0.25; the first step: x + E)
    if s' = 0:   x' = D - s (D - D_prev) / (s - s_prev) (the data predictions' line
                                                        extrapolated to 0; i > 0)

Deterministic (no fresh noise); one model call a step.
"""
from .methods import lagrange_integral

HISTORY_WEIGHT = 0.25
ZERO_WEIGHT = 1.0
UNCOND_HISTORY_WEIGHT = 0.1


def sample_cfgpp_history(run, history_weight=HISTORY_WEIGHT, zero_weight=ZERO_WEIGHT,
                         uncond_history_weight=UNCOND_HISTORY_WEIGHT):
    """The loop above over `run` (core.Run, with `uncond`). Returns x at the
    schedule's end. Raises ValueError for eta > 0 (it has no noise)."""
    if run.eta > 0.0:
        raise ValueError(f"cfgpp_ud10_ab is deterministic: it needs eta (noise strength) = 0, "
                         f"got {run.eta}")
    proc = run.proc
    sig = run.sig
    x = run.x
    d_prev = eps_prev = denoised_prev = None
    for i in run.steps():
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = run.denoise(x, i)
        uncond = run.last_uncond(denoised)
        dt = sigma_next - sigma
        eps = (x - uncond * proc.alpha(sigma)) / sigma
        eps_mix = eps
        if i > 0 and uncond_history_weight:
            ratio = dt / (sigma - sig[i - 1])
            eps_mix = eps + (eps - eps_prev) * (uncond_history_weight * ratio)
        alpha_next = proc.alpha(sigma_next) if sigma_next > 0.0 else 1.0
        euler = denoised * alpha_next + eps_mix * sigma_next - x
        d = euler / dt
        if d_prev is None:
            step = euler
        else:
            c0, c1 = lagrange_integral([sigma, sig[i - 1]], sigma, sigma_next)
            history = d * c0 + d_prev * c1
            step = euler + (history - euler) * history_weight
        x = x + step
        if sigma_next == 0.0 and zero_weight is not None and denoised_prev is not None:
            slope = (denoised - denoised_prev) / (sigma - sig[i - 1])
            zero = denoised - slope * sigma
            x = x + (zero - x) * zero_weight
        d_prev, eps_prev, denoised_prev = d, eps, denoised
    return run.result(x)
