"""The exact denoisers in bench/models.py are the ground truth of the sampler
tests, so they are checked here against independent facts: Tweedie's formula
on the marginal density (autograd), the PF-ODE as a differential equation
(finite differences), and brute-force posterior weights."""
import math

import pytest
import torch

from sampler_lab.bench import models

torch.set_default_dtype(torch.float32)


def gaussian(process, shape=(3, 1, 1)):
    mean = torch.tensor([0.5, -0.3, 0.1]).reshape(shape)
    std = torch.tensor([0.5, 1.0, 0.8]).reshape(shape)
    return models.GaussianData(mean, std, process)


def tweedie(log_density, x, sigma, process):
    """E[x0 | x] = (x + sigma^2 grad log p(x)) / a (Tweedie / Robbins)."""
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(log_density(x).sum(), x)
    a = 1.0 if process == "ve" else 1.0 - sigma
    return (x + sigma ** 2 * g) / a


@pytest.mark.parametrize("process", models.PROCESSES)
@pytest.mark.parametrize("sigma", [0.05, 0.5, 0.9])
def test_gaussian_denoiser_is_tweedie(process, sigma):
    data = gaussian(process)
    gen = torch.Generator().manual_seed(0)
    x = data.noisy((2, 3, 4, 4), sigma, gen, torch.float64)
    a = models.alpha(sigma, process)
    var = a * a * data.std.double() ** 2 + sigma ** 2

    def logp(x_):
        return -0.5 * (x_ - a * data.mean.double()) ** 2 / var

    expected = tweedie(logp, x, sigma, process)
    got = data.denoiser(x, torch.full((2,), sigma, dtype=torch.float64))
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_gaussian_flow_at_sigma_one_is_the_mean():
    data = gaussian("flow")
    x = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    got = data.denoiser(x, torch.ones(2))
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, data.mean.float().expand_as(x))
    # and the ODE starting at sigma = 1 is finite and normalises the noise
    out = data.ode_solution(x, 1.0, 0.0)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("process", models.PROCESSES)
def test_gaussian_ode_solution_solves_the_pf_ode(process):
    """d/dsigma of the closed form equals (x - D(x, sigma)) / sigma: this is
    the ODE every sampler integrates, derived independently (module doc)."""
    data = gaussian(process)
    x0 = data.noisy((2, 3, 4, 4), 0.9, torch.Generator().manual_seed(2), torch.float64)
    for s in (0.7, 0.3, 0.05):
        h = 1e-5 * s
        xs = data.ode_solution(x0, 0.9, s)
        deriv = (data.ode_solution(x0, 0.9, s + h) - data.ode_solution(x0, 0.9, s - h)) / (2 * h)
        rhs = (xs - data.denoiser(xs, s)) / s
        torch.testing.assert_close(deriv, rhs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("process", models.PROCESSES)
def test_gaussian_ode_solution_is_a_flow_map(process):
    data = gaussian(process)
    x = data.noisy((2, 3, 4, 4), 0.8, torch.Generator().manual_seed(3), torch.float64)
    direct = data.ode_solution(x, 0.8, 0.0)
    via = data.ode_solution(data.ode_solution(x, 0.8, 0.2), 0.2, 0.0)
    torch.testing.assert_close(direct, via, rtol=1e-12, atol=1e-12)
    # per-batch sigmas and a 5-D (video) latent
    data5 = models.GaussianData(data.mean.reshape(1, 3, 1, 1, 1), data.std.reshape(1, 3, 1, 1, 1), process)
    xb = x.reshape(2, 3, 1, 4, 4)
    got = data5.ode_solution(xb, torch.tensor([0.8, 0.8]), torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(got.reshape(x.shape), direct)


@pytest.mark.parametrize("process", models.PROCESSES)
def test_gaussian_ode_pushes_marginal_to_data(process):
    """Transporting the sigma_max marginal to 0 gives the data distribution."""
    data = gaussian(process, shape=(1, 3, 1, 1))
    s_max = 1.0 if process == "flow" else 20.0
    x = data.noisy((4000, 3, 2, 2), s_max, torch.Generator().manual_seed(4), torch.float64)
    out = data.ode_solution(x, s_max, 0.0)
    m = out.mean(dim=(0, 2, 3))
    sd = out.std(dim=(0, 2, 3))
    n = out.shape[0] * 4
    torch.testing.assert_close(m, data.mean.reshape(3).double(),
                               atol=5 * data.std.max().item() / math.sqrt(n), rtol=0)
    torch.testing.assert_close(sd, data.std.reshape(3).double(), rtol=5 / math.sqrt(2 * n), atol=0)


def test_gaussian_dtype_and_rank():
    data = models.GaussianData(0.2, 0.7, "ve")
    for shape in [(2, 5), (2, 3, 4), (2, 3, 2, 4, 4)]:
        for dt in (torch.float16, torch.bfloat16, torch.float32):
            x = torch.randn(shape).to(dt)
            out = data.denoiser(x, torch.tensor([0.5, 2.0]))
            assert out.dtype == dt and out.shape == x.shape
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("process", models.PROCESSES)
def test_empirical_denoiser_matches_brute_force_and_tweedie(process):
    gen = torch.Generator().manual_seed(5)
    pts = torch.randn(7, 2, 3, generator=gen, dtype=torch.float64)
    data = models.EmpiricalData(pts, process)
    for sigma in (0.05, 0.4, 0.9):
        a = models.alpha(sigma, process)
        x = data.noisy(3, sigma, gen, torch.float64)
        # brute force posterior weights
        d2 = ((x[:, None] - a * pts[None]) ** 2).flatten(2).sum(-1)
        w = torch.exp(-(d2 - d2.min(1, keepdim=True).values) / (2 * sigma ** 2))
        w = w / w.sum(1, keepdim=True)
        brute = torch.einsum("bn,nij->bij", w, pts)
        got = data.denoiser(x, torch.full((3,), sigma, dtype=torch.float64))
        torch.testing.assert_close(got, brute, rtol=1e-9, atol=1e-9)

        def logp(x_):
            d = ((x_[:, None] - a * pts[None]) ** 2).flatten(2).sum(-1)
            return torch.logsumexp(-d / (2 * sigma ** 2), dim=1)

        torch.testing.assert_close(got, tweedie(logp, x, sigma, process), rtol=1e-8, atol=1e-8)


def test_empirical_flow_sigma_one_and_tiny_sigma():
    pts = models.digits(50, torch.float64)
    flow = models.EmpiricalData(pts, "flow")
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(flow.denoiser(x, torch.ones(4, dtype=torch.float64)),
                               pts.mean(0, keepdim=True).expand(4, -1, -1, -1))
    # at tiny sigma the posterior collapses onto the nearest point: no NaN
    ve = models.EmpiricalData(pts, "ve")
    near = pts[[3, 7]] + 1e-5 * torch.randn(2, 1, 8, 8, dtype=torch.float64)
    out = ve.denoiser(near, torch.full((2,), 1e-4, dtype=torch.float64))
    torch.testing.assert_close(out, pts[[3, 7]])
    assert torch.isfinite(ve.denoiser(near.float(), torch.full((2,), 1e-6))).all()


def test_digits():
    d = models.digits()
    assert d.shape == (1797, 1, 8, 8)
    assert d.min() == -1 and d.max() == 1
    assert models.digits(10).shape == (10, 1, 8, 8)


def test_rk4_matches_gaussian_closed_form():
    """The reference integrator on a problem with a known answer."""
    for process, s0 in (("ve", 80.0), ("flow", 1.0)):
        data = gaussian(process, shape=(1, 3, 1, 1))
        x = data.noisy((2, 3, 2, 2), s0, torch.Generator().manual_seed(6), torch.float64)
        out = models.rk4_log_sigma(lambda x_, t: x_ - data.denoiser(x_, math.exp(t)),
                                   x, s0, 1e-3, 1000)
        torch.testing.assert_close(out, data.ode_solution(x, s0, 1e-3), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("process,s0", [("ve", 80.0), ("flow", 1.0)])
def test_reference_solution_converged(process, s0):
    """Halving the step count changes the reference by < 1e-6 relative."""
    data = models.EmpiricalData(models.digits(300, torch.float64), process)
    x = data.noisy(6, s0, torch.Generator().manual_seed(7), torch.float64)
    fine = data.reference_solution(x, s0, steps=1024)
    coarse = data.reference_solution(x, s0, steps=512)
    assert torch.isfinite(fine).all()
    rel = (fine - coarse).norm() / fine.norm()
    assert rel < 1e-6, rel
    # and it ends on data points (the ODE of an empirical distribution does)
    dist = torch.cdist(fine.reshape(6, -1), data.flat).min(1).values
    assert dist.max() < 1e-6


def test_call_counter():
    data = models.GaussianData(0.0, 1.0)
    m = models.CallCounter(data.denoiser)
    m(torch.zeros(2, 3), torch.tensor([1.0, 1.0]))
    m(torch.zeros(2, 3), torch.tensor([0.5, 0.5]))
    assert m.calls == 2 and m.sigmas == [1.0, 0.5]


@pytest.mark.parametrize("process", models.PROCESSES)
def test_blurred_empirical_denoiser_is_tweedie(process):
    """With a bandwidth the marginal is a mixture of N(a y_i, (a^2 tau^2 +
    sigma^2) I); Tweedie's formula on its log density gives E[x0 | x]."""
    gen = torch.Generator().manual_seed(6)
    pts = torch.randn(5, 2, 3, generator=gen, dtype=torch.float64)
    tau = 0.3
    data = models.EmpiricalData(pts, process, bandwidth=tau)
    for sigma in (0.05, 0.4, 0.9):
        a = models.alpha(sigma, process)
        var = sigma ** 2 + (a * tau) ** 2
        x = data.noisy(3, sigma, gen, torch.float64)

        def logp(x_):
            d = ((x_[:, None] - a * pts[None]) ** 2).flatten(2).sum(-1)
            return torch.logsumexp(-d / (2 * var), dim=1)

        got = data.denoiser(x, torch.full((3,), sigma, dtype=torch.float64))
        torch.testing.assert_close(got, tweedie(logp, x, sigma, process), rtol=1e-8, atol=1e-8)
    # A single blurred point is Gaussian data: the closed form applies.
    one = models.EmpiricalData(pts[:1], process, bandwidth=tau)
    gauss = models.GaussianData(pts[0], tau, process)
    x = torch.randn(4, 2, 3, generator=gen, dtype=torch.float64)
    s = torch.full((4,), 0.3, dtype=torch.float64)
    torch.testing.assert_close(one.denoiser(x, s), gauss.denoiser(x, s), rtol=1e-10, atol=1e-10)
