"""UniPC: the unified predictor-corrector of Zhao et al. 2023 ("UniPC: A
Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models",
arXiv:2302.04867), multistep, with data prediction.

Written, like exponential.py, in normalised coordinates X = x / alpha,
S = sigma / alpha = e^-lambda, where every process is VE. With h the step in
lambda from s to t and m_0 the denoiser at s, the exact ODE solution is

    X_t = e^-h X_s + (1 - e^-h) m_0 + int_0^h e^(u - h) (D(lambda_s + u) - m_0) du

and UniPC replaces the integral by B(h) * sum_k rho_k D1_k, with the scaled
differences D1_k = (m_k - m_0) / r_k, r_k = (lambda_k - lambda_s) / h, and
B(h) = h ("bh1") or 1 - e^-h ("bh2": the paper's e^h - 1 with data
prediction's sign of h). Matching the Taylor terms of the integral gives the
linear system  sum_k rho_k r_k^(n-1) = n! h phi_(n+1)(-h) / B(h),  n = 1..p.
Mapped back, x_t = (sigma_t / sigma_s) x_s + alpha_t [(1 - e^-h) m_0 + B ...].

Per step, one model call at the new grid point serves twice: it corrects the
point the predictor just reached (UniC, using the same history plus the new
output) and, as the newest history entry, drives the next predictor. The
output was taken at the uncorrected point; the paper and the authors' code
(which diffusers' UniPCMultistepScheduler follows) reuse it anyway, and so do
we, so the cost stays one call per step.

Orders follow diffusers: the predictor order is limited by the history
available (warm-up) and by the steps left (lower_order_final), the corrector
takes the order of the predictor it corrects, the order-2 predictor uses
rho = 1/2 and the order-1 corrector rho = 1/2, both the leading term of the
solved value. The step to sigma = 0 (lambda = inf) is a plain denoise. The
corrector raises the order by one: UniPC-p converges at order p + 1.

eta > 0 moves to the ancestral split's sigma_down and adds fresh noise up to
the next grid sigma. The exponential weights then span H = lambda(sigma_down)
- lambda(sigma), but the denoiser's trend is extrapolated over the lambda
actually elapsed (r_k in units of lambda_next - lambda): the step is the
SDE's, whose drift integral is the ODE one with h -> H and the time scaled
by H / h (Lu et al. 2023, SDE-DPM-Solver++). Extrapolating D all the way to
sigma_down instead doubles its trend at eta = 1 and feeds the fresh noise
back into the next differences (measured: 2x the data's std after 40 Karras
steps). A noisy step also solves for rho at order 2 instead of taking 1/2
(see _uni_step); B(H) then cancels, so both variants take the same noisy
step, and at eta = 1 and order 2 it is SDE-DPM-Solver++(2M) in its "heun"
form. The corrector is skipped after a noisy step: it would need the model
at the predicted point, and the fresh noise has moved the point the model is
evaluated at.
"""
import math

_VARIANTS = ("bh1", "bh2")


def _phi_scaled(h, n):
    """[k! * h * phi_(k+1)(-h) for k = 1..n], phi_j(z) = sum_i z^i / (i + j)!.

    The recurrence phi_(j+1)(z) = (phi_j(z) - 1/j!) / z cancels badly for small
    |z|, so small steps use the series instead."""
    z = -h
    out = []
    if abs(z) < 1.0:
        for k in range(1, n + 1):
            # 30 terms of z^i / (i + k + 1)! reach double precision for |z| < 1.
            term = 1.0 / math.factorial(k + 1)
            total = term
            for i in range(1, 30):
                term *= z / (i + k + 1)
                total += term
            out.append(math.factorial(k) * h * total)
        return out
    phi = math.expm1(z) / z  # phi_1
    for k in range(1, n + 1):
        phi = (phi - 1.0 / math.factorial(k)) / z  # phi_(k+1)
        out.append(math.factorial(k) * h * phi)
    return out


def _solve(a, b):
    """Dense solve for the at most 3 x 3 rho systems in host floats (Gaussian
    elimination with partial pivoting), so no coefficient touches the device."""
    n = len(b)
    m = [list(row) + [b[i]] for i, row in enumerate(a)]
    for c in range(n):
        p = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[p] = m[p], m[c]
        if m[c][c] == 0.0:
            raise ZeroDivisionError("UniPC: two history points share one lambda")
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            for k in range(c, n + 1):
                m[r][k] -= f * m[c][k]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][k] * x[k] for k in range(r + 1, n))) / m[r][r]
    return x


def _b_of_h(variant, h, decay):
    if variant == "bh2" or decay == 0.0:
        # From pure noise (alpha = 0, flow's sigma = 1) h is infinite and
        # B = h with it, while the integral it scales stays finite: in the SNR
        # u = e^lambda it is int_0^u_t D du, and 1 - e^-h = 1 with rho = 1/2
        # is the trapezoid rule there. B from the floored lambda instead
        # weights the first correction by ~log(1e4) for no reason (measured:
        # 2-10x the error on flow grids). Only a first step can start there,
        # so VE never takes this branch.
        return 1.0 - decay
    return h


def _uni_step(proc, variant, x, sigma, sigma_to, m0, lam, older, newest=None, h_time=None):
    """One UniP step (newest is None) or UniC step (newest = the denoiser at
    sigma_to) from (x, sigma) to sigma_to.

    m0: the denoiser at sigma, whose lambda is `lam`; older: [(denoised,
    lambda), ...] of earlier points, newest first, as many as the order uses.
    h_time: the lambda the trajectory really advances (differs from the
    exponential's span only on a stochastic step)."""
    decay = proc.decay(sigma, sigma_to)
    a_to = proc.alpha(sigma_to)
    x_new = x * (sigma_to / sigma) + m0 * (a_to * (1.0 - decay))
    p = len(older) + (0 if newest is None else 1)
    if p == 0:
        return x_new
    h = proc.lam(sigma_to) - lam
    big_b = _b_of_h(variant, h, decay)
    rks = [(lam_k - lam) / (h if h_time is None else h_time) for _, lam_k in older]
    if p == 1 and h_time is None:
        # The order-2 predictor and the order-1 corrector: the leading term of
        # the solved value (exact for B = h as h -> 0), as the authors' code.
        # A noisy step spans H = (1 + eta') h, where B(H) / 2 = H / 2 (bh1)
        # outgrows the exact weight H phi_2(-H) < 1 and amplifies the fresh
        # noise carried by the differences (flow's last steps: +28% std), so
        # it solves for rho, as at higher order.
        rhos = [0.5]
    else:
        nodes = rks + ([1.0] if newest is not None else [])
        rhs = [g / big_b for g in _phi_scaled(h, p)]
        rhos = _solve([[r ** (n - 1) for r in nodes] for n in range(1, p + 1)], rhs)
    corr = None
    for rho, (d_k, _), r_k in zip(rhos, older, rks):
        term = (d_k - m0) * (rho / r_k)
        corr = term if corr is None else corr + term
    if newest is not None:
        term = (newest - m0) * rhos[-1]
        corr = term if corr is None else corr + term
    return x_new + corr * (a_to * big_b)


def sample_unipc(run, variant, order=3):
    if variant not in _VARIANTS:
        raise ValueError(f"UniPC variant must be one of {list(_VARIANTS)}, got {variant!r}")
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= 3:
        raise ValueError(f"UniPC order must be an integer in [1, 3], got {order!r}")
    proc, eta, sig = run.proc, run.eta, run.sig
    n_steps = len(sig) - 1
    x = run.x
    hist = []       # (denoised, lambda) at earlier grid points, newest first
    pending = None  # (x, sigma, order) of the last predictor if it added no noise
    for i in run.steps():
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = run.denoise(x, i)
        lam = proc.lam(sigma)
        if pending is not None:
            x_prev, sigma_prev, p = pending
            m_prev, lam_prev = hist[0]
            x = _uni_step(proc, variant, x_prev, sigma_prev, sigma, m_prev, lam_prev,
                          hist[1:p], newest=denoised)
        sigma_down, up = proc.ancestral_split(sigma, sigma_next, eta)
        p = min(order, len(hist) + 1, n_steps - i)
        if sigma_down == 0.0:
            # lambda = inf: the extrapolation weights have no finite limit,
            # and the exact first-order step is the denoised point itself.
            x_next, p = denoised, 1
        else:
            h_time = None if sigma_down == sigma_next else proc.lam(sigma_next) - lam
            x_next = _uni_step(proc, variant, x, sigma, sigma_down, denoised, lam,
                               hist[:p - 1], h_time=h_time)
        pending = (x, sigma, p) if up == 0.0 else None
        hist.insert(0, (denoised, lam))
        del hist[order:]
        x = x_next
        if up > 0.0:
            x = proc.renoise(x, sigma_down, sigma_next, up, run.draw(i))
    return run.result(x)
