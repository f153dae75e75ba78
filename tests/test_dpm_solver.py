"""DPM-Solver fast and adaptive (samplers/adaptive.py) against two oracles that
share no code with it:

* VE: k-diffusion's DPMSolver as the PyPI host ships it, called the way
  ComfyUI calls it (sigma_min = the last nonzero sigma, sigma_max = sigmas[0],
  n = len(sigmas) - 1 for dpm_fast). Same model, latent and noise must give
  the same result to 1e-5 and the same number of model calls.
* Flow (x = (1 - s) x0 + s n, starting at s = 1 exactly): the closed-form
  probability-flow ODE of Gaussian data, for which
  z = (x - a mu) / sqrt(a^2 std^2 + sigma^2), a = 1 - sigma, is constant
  along every trajectory.

The host's dpm_fast builds its lambda grid with torch.linspace, which is
float32 whatever the sigmas' dtype, so all its step coefficients are float32
(~1e-7); with float64 sigmas its float64 end point then differs from the
grid's last point and at eta > 0 it adds noise of size
sqrt(sigma(t_grid)^2 - sigma_min^2) ~ 1e-5 on its last step (NaN if the
rounding goes the other way). ComfyUI passes float32 sigmas, where the grid
and the end agree, so the dpm_fast comparisons use float32 sigmas. The host's
adaptive solver stays in the sigmas' dtype, so those comparisons use float64.
"""
import math

import pytest
import torch

from sampler_lab import samplers

RTOL = 1e-5
SHAPE = (4, 3, 8, 8)
MU = torch.tensor([0.5, -0.3, 0.1], dtype=torch.float64).reshape(3, 1, 1)
STD = torch.tensor([0.5, 1.0, 0.8], dtype=torch.float64).reshape(3, 1, 1)
SIGMA_MIN, SIGMA_MAX = 0.03, 14.6


# --- independent pieces: exact denoisers, exact ODE, replayable noise ----------

def _col(sigma, x):
    s = torch.as_tensor(sigma, dtype=torch.float64)
    return s.reshape(-1, *([1] * (x.ndim - 1))) if s.ndim else s


def _stats(x):
    # per-channel statistics on dim 1 for any rank >= 2
    shape = (3,) + (1,) * (x.ndim - 2)
    return MU.reshape(shape), STD.reshape(shape)


def ve_denoiser(x, sigma, **kw):
    """E[x0 | x0 + sigma n] for x0 ~ N(mu, std^2): the Wiener filter."""
    mu, sd = _stats(x)
    s, xd = _col(sigma, x), x.double()
    return (mu + sd ** 2 / (sd ** 2 + s ** 2) * (xd - mu)).to(x.dtype)


def flow_denoiser(x, sigma, **kw):
    """E[x0 | (1 - sigma) x0 + sigma n]; the prior mean at sigma = 1."""
    mu, sd = _stats(x)
    s, xd = _col(sigma, x), x.double()
    a = 1.0 - s
    return (mu + a * sd ** 2 / (a * a * sd ** 2 + s * s) * (xd - a * mu)).to(x.dtype)


def flow_exact(x, s0, s1):
    mu, sd = _stats(x)
    a0, a1 = 1.0 - s0, 1.0 - s1
    z = (x.double() - a0 * mu) / torch.sqrt(a0 * a0 * sd ** 2 + s0 * s0)
    return a1 * mu + z * torch.sqrt(a1 * a1 * sd ** 2 + s1 * s1)


class Counted:
    def __init__(self, model):
        self.model, self.calls, self.sigmas, self.finite = model, 0, [], True

    def __call__(self, x, sigma, **kw):
        self.calls += 1
        self.sigmas.append(float(torch.as_tensor(sigma).reshape(-1)[0]))
        self.finite &= bool(torch.isfinite(x).all()) and bool(torch.isfinite(sigma).all())
        return self.model(x, sigma, **kw)


class Replay:
    """The k-th call returns the k-th fixed tensor; records its interval."""

    def __init__(self, like, seed):
        self.shape, self.dtype, self.seed, self.intervals = like.shape, like.dtype, seed, []

    def __call__(self, sigma, sigma_next):
        g = torch.Generator().manual_seed(1000 * self.seed + len(self.intervals))
        self.intervals.append((float(sigma), float(sigma_next)))
        return torch.randn(self.shape, generator=g, dtype=torch.float64).to(self.dtype)


class Recorder:
    def __init__(self):
        self.steps = []

    def __call__(self, d):
        self.steps.append({k: v.clone() if torch.is_tensor(v) else v for k, v in d.items()})


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def geometric(n, lo=SIGMA_MIN, hi=SIGMA_MAX, zero=False, dtype=torch.float64):
    """n sigmas from hi to lo (only the ends matter to these solvers)."""
    s = torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))
    s[0], s[-1] = hi, lo
    if zero:
        s = torch.cat([s, s.new_zeros(1)])
    return s.to(dtype)


def ve_latent(seed=0, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * SIGMA_MAX


def flow_latent(seed=0, shape=SHAPE, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def fast(model, x, sigmas, **kw):
    return samplers.get_sampler("dpm_fast").fn(model, x.clone(), sigmas, **kw)


def adaptive(model, x, sigmas, **kw):
    return samplers.get_sampler("dpm_adaptive").fn(model, x.clone(), sigmas, **kw)


# --- VE: k-diffusion ----------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 10, 11])
@pytest.mark.parametrize("eta,s_noise", [(0.0, 1.0), (0.5, 1.0), (0.5, 0.6), (2.0, 1.0)])
def test_fast_matches_host(kdiff, n, eta, s_noise):
    """n covers every branch of the order pattern (n % 3, n < 3); eta = 2
    sends sigma_down to 0, which the host caps at sigma_min."""
    x, sig = ve_latent(n), geometric(n + 1, dtype=torch.float32)
    rec_t, rec_o = Recorder(), Recorder()
    noise_t, noise_o = Replay(x, 7), Replay(x, 7)
    theirs = kdiff.sample_dpm_fast(ve_denoiser, x.clone(), sig[-1], sig[0], n, disable=True,
                                   callback=rec_t, eta=eta, s_noise=s_noise,
                                   noise_sampler=noise_t)
    model = Counted(ve_denoiser)
    got = fast(model, x, sig, eta=eta, s_noise=s_noise, noise=noise_o, callback=rec_o)
    err = rel(got, theirs)
    assert err < RTOL, f"n={n} eta={eta}: relative difference {err:.3g}"
    assert got.dtype == x.dtype and got.shape == x.shape
    assert model.calls == n
    # one report per step, at the step's start, as the host
    assert len(rec_o.steps) == len(rec_t.steps)
    for a, b in zip(rec_o.steps, rec_t.steps):
        assert a["i"] == b["i"]
        assert abs(float(a["sigma"]) / float(b["sigma"]) - 1) < 1e-6
        assert rel(a["x"], b["x"]) < RTOL and rel(a["denoised"], b["denoised"]) < RTOL
    # Same draws for the same intervals; the host also draws for its last step
    # and multiplies that draw by 0, which we skip.
    if eta == 0.0:
        assert noise_o.intervals == []
    else:
        assert len(noise_t.intervals) == len(noise_o.intervals) + 1
        for (a0, a1), (b0, b1) in zip(noise_o.intervals, noise_t.intervals):
            assert abs(a0 / b0 - 1) < 1e-6 and abs(a1 / b1 - 1) < 1e-6


def test_one_step_is_ddim_exactly():
    """With a budget of one call dpm_fast is DPM-Solver-1, i.e. DDIM from
    sigma_max to sigma_min: x1 = D + sigma_min (x - D) / sigma_max. (The host
    lands 7.6e-6 from this: float32 coefficients times the cancellation in its
    x - sigma (e^h - 1) eps form.)"""
    x, sig = ve_latent(9), geometric(2)
    d = ve_denoiser(x, torch.full((x.shape[0],), SIGMA_MAX, dtype=torch.float64))
    expected = d + (x - d) * (SIGMA_MIN / SIGMA_MAX)
    assert rel(fast(ve_denoiser, x, sig), expected) < 1e-12


def test_fast_matches_host_with_float64_sigmas_at_eta_0(kdiff):
    x, sig = ve_latent(3), geometric(11)
    theirs = kdiff.sample_dpm_fast(ve_denoiser, x.clone(), sig[-1], sig[0], 10, disable=True)
    err = rel(fast(ve_denoiser, x, sig), theirs)
    assert err < RTOL, err


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_fast_ends_with_a_denoise_when_sigmas_end_in_zero(kdiff, eta):
    x, sig = ve_latent(4), geometric(10, zero=True, dtype=torch.float32)
    n = len(sig) - 1  # ComfyUI's step budget: n calls; ours spends one on the denoise
    theirs = kdiff.sample_dpm_fast(ve_denoiser, x.clone(), sig[-2], sig[0], n - 1, disable=True,
                                   eta=eta, noise_sampler=Replay(x, 2))
    expected = ve_denoiser(theirs, torch.full((x.shape[0],), float(sig[-2]), dtype=torch.float64))
    model = Counted(ve_denoiser)
    got = fast(model, x, sig, eta=eta, noise=Replay(x, 2))
    err = rel(got, expected)
    assert err < RTOL, err
    assert model.calls == n
    assert model.sigmas[-1] == pytest.approx(float(sig[-2]), rel=1e-7)


ADAPTIVE = [
    {},
    {"order": 2},
    {"rtol": 0.01, "atol": 0.002},
    {"pcoeff": 0.2, "icoeff": 0.8, "dcoeff": 0.1, "accept_safety": 0.9, "h_init": 0.2},
    {"h_init": 1.5},  # forces rejections at the start
]


@pytest.mark.parametrize("opts", ADAPTIVE, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_adaptive_matches_host(kdiff, opts, eta):
    x, sig = ve_latent(5), geometric(7)
    theirs, info_t = kdiff.sample_dpm_adaptive(
        ve_denoiser, x.clone(), sig[-1], sig[0], disable=True, return_info=True, eta=eta,
        noise_sampler=Replay(x, 3), **opts)
    info, model = {}, Counted(ve_denoiser)
    got = adaptive(model, x, sig, eta=eta, noise=Replay(x, 3), info=info, **opts)
    err = rel(got, theirs)
    assert err < RTOL, f"{opts} eta={eta}: relative difference {err:.3g}"
    for key in ("nfe", "n_accept", "n_reject"):
        assert info[key] == info_t[key], (key, info, info_t)
    assert model.calls == info_t["nfe"]


def test_adaptive_rejections_happen_in_the_comparison(kdiff):
    """Guards the comparison above: a path with rejections is compared."""
    x, sig = ve_latent(5), geometric(7)
    _, info_t = kdiff.sample_dpm_adaptive(ve_denoiser, x.clone(), sig[-1], sig[0],
                                          disable=True, return_info=True, h_init=1.5)
    assert info_t["n_reject"] > 0


def test_adaptive_ends_with_a_denoise_when_sigmas_end_in_zero(kdiff):
    x, sig = ve_latent(6), geometric(7, zero=True)
    theirs, info_t = kdiff.sample_dpm_adaptive(ve_denoiser, x.clone(), sig[-2], sig[0],
                                               disable=True, return_info=True)
    expected = ve_denoiser(theirs, torch.full((x.shape[0],), float(sig[-2]), dtype=torch.float64))
    info, model, rec = {}, Counted(ve_denoiser), Recorder()
    got = adaptive(model, x, sig, info=info, callback=rec)
    err = rel(got, expected)
    assert err < RTOL, err
    assert info["nfe"] == info_t["nfe"] + 1 == model.calls
    assert (info["n_accept"], info["n_reject"]) == (info_t["n_accept"], info_t["n_reject"])
    # one report per attempt and one for the final denoise; each pairs x,
    # sigma and the model's output at exactly that x and sigma
    assert [d["i"] for d in rec.steps] == list(range(info_t["steps"] + 1))
    assert sum(bool(d.get("accepted")) for d in rec.steps) == info_t["n_accept"]
    for d in rec.steps:
        again = ve_denoiser(d["x"], torch.full((x.shape[0],), float(d["sigma"]), dtype=torch.float64))
        assert rel(d["denoised"], again) < 1e-12


# --- flow from pure noise: the closed-form ODE ---------------------------------

def flow_sigmas(n, lo=0.002, zero=False):
    return torch.cat([torch.linspace(1.0, lo, n, dtype=torch.float64)]
                     + ([torch.zeros(1, dtype=torch.float64)] if zero else []))


@pytest.mark.parametrize("name", ["dpm_fast", "dpm_adaptive"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_flow_from_sigma_one_is_finite(name, dtype, eta):
    x = flow_latent(1, dtype=dtype)
    model = Counted(flow_denoiser)
    sig = flow_sigmas(8, zero=True).to(dtype)
    out = samplers.get_sampler(name).fn(model, x, sig, process="flow", eta=eta,
                                        noise=Replay(x, 4))
    assert out.dtype == dtype and torch.isfinite(out).all() and model.finite
    assert model.sigmas[0] == 1.0  # the model sees the schedule's pure-noise sigma
    assert all(0.0 < s <= 1.0 for s in model.sigmas)


def test_flow_fast_is_third_order_in_model_calls():
    """Against the exact solution at sigma_min (no final denoise, so the error
    is the solver's alone). Treating the pure-noise latent as a latent at the
    floored lambda(1) would leave a 1e-4 error floor: the last budgets check
    that the error keeps falling below it."""
    x = flow_latent(2)
    lo = 0.002
    exact = flow_exact(x, 1.0, lo)
    nfes = [30, 60, 120, 240]
    errs = []
    for nfe in nfes:
        model = Counted(flow_denoiser)
        out = fast(model, x, flow_sigmas(nfe + 1, lo), process="flow")
        assert model.calls == nfe
        errs.append(rel(out, exact))
    orders = [math.log(errs[k] / errs[k + 1]) / math.log(2) for k in range(len(errs) - 1)]
    report = f"errors {errs}, orders {orders}"
    assert all(o > 2.6 for o in orders), report
    assert errs[-1] < 2e-5, report


def test_flow_adaptive_error_falls_with_tolerance():
    x = flow_latent(3)
    lo = 0.002
    exact = flow_exact(x, 1.0, lo)
    errs, nfes = [], []
    # Since the solver integrates flow in -log(sigma) (as the host does) its
    # error plateaus at ~8e-5 from rtol 5e-3 to 5e-4 (2e-3, 9e-4, 8e-5, 8e-5,
    # 1e-4 at rtol 0.05, 0.02, 0.005, 0.002, 0.0005) and falls again below:
    # the tolerances step over the plateau.
    for rtol, atol in ((0.05, 0.0078), (0.005, 0.00078), (0.0001, 0.00001)):
        info, model = {}, Counted(flow_denoiser)
        out = adaptive(model, x, flow_sigmas(10, lo), process="flow", rtol=rtol, atol=atol,
                       info=info)
        assert info["nfe"] == model.calls and info["n_accept"] >= 1
        errs.append(rel(out, exact))
        nfes.append(model.calls)
    report = f"errors {errs}, nfe {nfes}"
    assert errs[0] > errs[1] > errs[2] and nfes[0] < nfes[1] < nfes[2], report
    assert errs[2] < 1e-3, report


def test_flow_final_denoise_reaches_the_clean_solution():
    """With sigmas ending in 0 the result is a denoised sample: for Gaussian
    data its error against the exact x(0) is the denoise's own,
    ~ sigma_min^2 / (2 std^2) relative, far below the leftover noise."""
    x = flow_latent(4)
    exact0 = flow_exact(x, 1.0, 0.0)
    leftover = 0.002 * float(torch.randn(SHAPE, dtype=torch.float64).norm() / exact0.norm())
    out = fast(flow_denoiser, x, flow_sigmas(121, 0.002, zero=True), process="flow")
    assert rel(out, exact0) < 2e-4 < leftover / 5
    # Tolerances bound the local error; the global error at a given tolerance
    # moves with the step sequence (2.8e-4 at rtol 1e-4 after the grid start
    # moved to lambda = -6), so ask for a margin.
    out = adaptive(flow_denoiser, x, flow_sigmas(10, 0.002, zero=True), process="flow",
                   rtol=1e-5, atol=1e-6)
    assert rel(out, exact0) < 1e-4


# --- shapes, dtypes, noise use, failure -----------------------------------------

@pytest.mark.parametrize("shape", [(1, 3), (2, 3, 4), (2, 3, 2, 4, 4)])
@pytest.mark.parametrize("name,opts,n", [("dpm_fast", {}, 31),
                                         ("dpm_adaptive", {"rtol": 1e-3, "atol": 1e-4}, 10)])
def test_any_rank_and_float32(name, opts, n, shape):
    """float32 in, float32 out, the float64 answer to float32 accuracy (the
    adaptive steps may differ: its error estimate reads round-off)."""
    x64 = flow_latent(5, shape=shape)
    sig = flow_sigmas(n, 0.01, zero=True)
    spec = samplers.get_sampler(name)
    ref = spec.fn(flow_denoiser, x64, sig, process="flow", **opts)
    out = spec.fn(flow_denoiser, x64.float(), sig.float(), process="flow", **opts)
    assert out.dtype == torch.float32 and out.shape == x64.shape
    assert rel(out, ref) < 1e-4
    assert rel(ref, flow_exact(x64, 1.0, 0.0)) < 1e-2  # and it is the right answer


@pytest.mark.parametrize("name", ["dpm_fast", "dpm_adaptive"])
def test_no_noise_is_drawn_at_eta_zero(name):
    def refuse(sigma, sigma_next):
        raise AssertionError("a deterministic run drew noise")
    x = ve_latent(7)
    samplers.get_sampler(name).fn(ve_denoiser, x, geometric(6, zero=True), eta=0.0, noise=refuse)


def test_adaptive_stops_on_a_non_finite_model():
    def broken(x, sigma, **kw):
        return torch.full_like(x, float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        adaptive(broken, ve_latent(8), geometric(6))


def test_adaptive_rejects_bad_order():
    with pytest.raises(ValueError):
        adaptive(ve_denoiser, ve_latent(8), geometric(6), order=1)

