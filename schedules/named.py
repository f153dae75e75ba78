"""Schedules that belong to a model or a distillation: the resolution-aware
schedules of FLUX.2 and Ideogram 4 (the 2026 core's Flux2Scheduler and
Ideogram4Scheduler) and the published step lists of step-distilled models
and LoRAs. Each function takes the step count and a Context and returns
float64 sigmas, largest first, ending in 0 (the registry checks them)."""
import math

import numpy as np

from .discrete import append_zero


def _fixed(name, sigmas, steps):
    if steps != len(sigmas):
        raise ValueError(f"{name} is a {len(sigmas)}-step schedule (its published list); set "
                         f"steps to {len(sigmas)}, got {steps}")
    return append_zero(np.asarray(sigmas, dtype=np.float64))


# --- FLUX.2 --------------------------------------------------------------------

def flux2_mu(image_seq_len, steps):
    """FLUX.2's empirical shift mu for `image_seq_len` latent tokens and
    `steps` steps (Black Forest Labs' flux2 reference sampling, as the core's
    Flux2Scheduler): linear in the tokens at 200 steps (a2, b2) and at 10
    steps (a1, b1), interpolated linearly in the step count; above 4300
    tokens the 200-step line alone."""
    a1, b1 = 8.73809524e-05, 1.89833333
    a2, b2 = 0.00016927, 0.45666666
    if image_seq_len > 4300:
        return a2 * image_seq_len + b2
    m_200 = a2 * image_seq_len + b2
    m_10 = a1 * image_seq_len + b1
    slope = (m_200 - m_10) / 190.0
    return slope * steps + (m_200 - 200.0 * slope)


def flux2(steps, ctx, width, height):
    """FLUX.2 (the 2026 core's Flux2Scheduler): t uniform from 1 to 0 over
    `steps`, sigma = e^mu / (e^mu + 1/t - 1) with mu = flux2_mu(tokens,
    steps), tokens = round(width * height / 16^2) (image pixels; 16x16
    pixels per latent token). Ignores the model's sigma range."""
    tokens = round(width * height / 256.0)
    mu = flux2_mu(tokens, steps)
    t = np.linspace(1.0, 0.0, steps + 1)
    out = np.zeros_like(t)
    pos = t > 0
    out[pos] = math.exp(mu) / (math.exp(mu) + (1.0 / t[pos] - 1.0))
    return out


# --- Ideogram 4 ----------------------------------------------------------------

_LOGSNR_MIN, _LOGSNR_MAX = -15.0, 18.0


def ideogram4(steps, ctx, width, height, mu, std):
    """Ideogram 4 (the 2026 core's Ideogram4Scheduler): logit-normal
    quantiles. At u = k / steps, sigma = expit(m + std * Phi^-1(u)) with
    m = mu + ln(width * height / 512^2) / 2 (the resolution's log-SNR
    shift), clamped to the log-SNR range [-15, 18] (sigma in [1 / (1 + e^9),
    1 / (1 + e^-7.5)]), largest first; the last sigma is 0 (full denoise).
    Ignores the model's sigma range."""
    from statistics import NormalDist
    mean = mu + 0.5 * math.log(width * height / (512.0 * 512.0))
    lo = 1.0 - 1.0 / (1.0 + math.exp(0.5 * _LOGSNR_MIN))
    hi = 1.0 - 1.0 / (1.0 + math.exp(0.5 * _LOGSNR_MAX))
    nd = NormalDist()
    out = []
    for k in range(steps + 1):
        u = 1.0 - k / steps
        if u <= 0.0:
            s = lo
        elif u >= 1.0:
            s = hi
        else:
            s = 1.0 / (1.0 + math.exp(-(mean + std * nd.inv_cdf(u))))
        out.append(min(max(s, lo), hi))
    out[-1] = 0.0
    return np.asarray(out, dtype=np.float64)


# --- step-distilled models: published lists ------------------------------------

# ModelTC/LightX2V-Wan2.2-Lightning, issue #3 (the authors, 2025-08-08): the
# 4-step LoRAs run at timesteps [1000, 937.5001, 833.3333, 625, 0] and, for 8
# steps, [1000, 972.2224, 937.5001, 892.8571, 833.3333, 750.0001, 625,
# 416.6667, 0]; "for sigmas divide each value by 1000". Both are the shift-5
# flow map sigma = 5 t / (1 + 4 t) of uniform t, which gives them exactly.
def _shift5(n):
    t = np.arange(n, 0, -1, dtype=np.float64) / n
    return 5.0 * t / (1.0 + 4.0 * t)


WAN22_LIGHTNING_4 = tuple(float(v) for v in _shift5(4))
WAN22_LIGHTNING_8 = tuple(float(v) for v in _shift5(8))
# FLUX.2-dev-Turbo (fal), its published 8-step sigmas (SwarmUI issue #1208).
FLUX2_DEV_TURBO_8 = (1.0, 0.6509, 0.4374, 0.2932, 0.1893, 0.1108, 0.0495, 0.00031)


def lightning_wan22_4(steps, ctx):
    """Wan2.2-Lightning 4-step (ModelTC/LightX2V-Wan2.2-Lightning issue #3):
    sigmas 1, 0.9375, 0.8333, 0.625, 0."""
    return _fixed("lightning_wan22_4", WAN22_LIGHTNING_4, steps)


def lightning_wan22_8(steps, ctx):
    """Wan2.2-Lightning at 8 steps, the authors' list (issue #3): sigmas 1,
    0.97222, 0.9375, 0.89286, 0.83333, 0.75, 0.625, 0.41667, 0."""
    return _fixed("lightning_wan22_8", WAN22_LIGHTNING_8, steps)


def flux2_dev_turbo_8(steps, ctx):
    """FLUX.2-dev-Turbo's 8 published sigmas (SwarmUI issue #1208), then 0."""
    return _fixed("flux2_dev_turbo_8", FLUX2_DEV_TURBO_8, steps)


def _table_at(ctx, timesteps):
    table = ctx.table
    return append_zero(np.asarray([table[int(t)] for t in timesteps], dtype=np.float64))


def trailing(steps, ctx):
    """Trailing timesteps (Lin et al. 2024, arXiv:2305.08891, Table 2;
    diffusers' timestep_spacing="trailing"): t_k = round(T - k T / steps) - 1
    for k = 0 .. steps - 1, the model's sigma there. What SDXL-Lightning
    (ByteDance, arXiv:2402.13929; "use trailing timesteps") and Hyper-SD's
    N-step LoRAs (ByteDance, arXiv:2404.13686; DDIM "trailing") expect:
    4 steps at 999, 749, 499, 249."""
    n = len(ctx.table)
    if steps > n:
        raise ValueError(f"trailing: at most {n} steps (the model's timesteps), got {steps}")
    ts = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
    return _table_at(ctx, ts[:steps])


def lcm(steps, ctx, original_steps=50):
    """LCM's and TCD's timesteps (Luo et al. 2023, arXiv:2310.04378; Zheng et
    al. 2024, arXiv:2402.19159; diffusers' LCMScheduler / TCDScheduler): of
    the `original_steps` = 50 distillation timesteps k T/50 - 1, k = 1..50,
    taken from the top at floor(linspace(0, 50, steps)) positions: 4 steps at
    999, 759, 499, 259."""
    n = len(ctx.table)
    if steps > original_steps:
        raise ValueError(f"lcm: at most {original_steps} steps (its distillation grid), got "
                         f"{steps}")
    c = n // original_steps
    origin = [k * c - 1 for k in range(original_steps, 0, -1)]
    idx = np.floor(np.linspace(0, original_steps, steps, endpoint=False)).astype(np.int64)
    return _table_at(ctx, [origin[i] for i in idx])
