"""The trained denoisers of bench/networks.py: the loader, and that the
shipped networks really denoise held-out digits (never trained on) and
sample digit-like images. The baselines are independent of the networks:
the identity (D(x) = x) and the training set's mean image; the reference
statistics are the held-out digits'."""
import math

import numpy as np
import pytest
import torch

from sampler_lab.bench import networks as nw
from sampler_lab.bench import train_networks as tn


HELD = 200  # held-out digits per check: enough for stable MSEs, fast enough


@pytest.fixture(scope="module", params=nw.NETWORKS)
def net(request):
    return nw.load_network(request.param)


@pytest.fixture(scope="module")
def heldout():
    return nw.mnist_digits("heldout", torch.float64)


@pytest.fixture(scope="module")
def mean_image():
    return nw.mnist_digits("train", torch.float64).mean(0, keepdim=True)


def test_data_splits():
    train, held = nw.mnist_digits("train"), nw.mnist_digits("heldout")
    assert train.shape == (4500, 1, 28, 28) and held.shape == (500, 1, 28, 28)
    assert float(train.min()) == -1.0 and float(train.max()) == 1.0
    # disjoint: no held-out image equals a training image
    flat_t = train.reshape(len(train), -1)
    flat_h = held.reshape(len(held), -1)
    d2 = torch.cdist(flat_h.double(), flat_t.double())
    assert float(d2.min()) > 0
    with pytest.raises(ValueError, match="split"):
        nw.mnist_digits("test")


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="digits-eps"):
        nw.load_network("digits-vp")
    with pytest.raises(FileNotFoundError, match="train_networks --model digits-flow"):
        nw.load_network("digits-flow", weights_dir=tmp_path)


def _sd1_sigmas_closed_form():
    # SD 1.x: betas linear in sqrt from 0.00085 to 0.012 over 1000 steps
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000) ** 2
    ac = np.cumprod(1 - betas)
    return np.sqrt((1 - ac) / ac)


def test_loader_metadata_and_shapes(net):
    cfg, m = net.config, net.metrics
    assert cfg["name"] == net.name and cfg["seed"] == 0 and cfg["steps"] >= 1000
    assert {"arch", "kind", "data", "batch", "lr", "ema", "final_loss",
            "train_seconds"} <= set(cfg)
    assert {"denoise", "heldout_pixels", "euler20_pixels"} <= set(m)
    assert net.sigmas.dtype == torch.float32 and net.sigmas.shape == (1000,)
    assert bool((net.sigmas[1:] > net.sigmas[:-1]).all())
    if net.kind == "eps":  # digits-eps and digits-cond
        assert (net.kind, net.process, net.shift) == ("eps", "ve", None)
        np.testing.assert_allclose(net.sigmas.numpy(), _sd1_sigmas_closed_form(), rtol=1e-6)
        assert net.sigma_min == pytest.approx(0.0292, abs=1e-4)
        assert net.sigma_max == pytest.approx(14.6146, abs=1e-4)
    else:
        assert (net.kind, net.process, net.shift) == ("flow", "flow", 3.0)
        t = np.arange(1, 1001) / 1000
        np.testing.assert_allclose(net.sigmas.numpy(), 3 * t / (1 + 2 * t), rtol=1e-6)
        assert net.sigma_max == 1.0
    for p in net.diffusion_model.parameters():
        assert p.dtype == torch.float32 and not p.requires_grad
    assert net.diffusion_model.dtype == torch.float32
    x = torch.randn(3, 1, 28, 28)
    for dtype in (torch.float32, torch.float64):
        out = net(x.to(dtype), torch.full((3,), 0.5, dtype=dtype))
        assert out.shape == x.shape and out.dtype == dtype and bool(torch.isfinite(out).all())
    raw = net.diffusion_model(x, torch.tensor([10.0, 500.0, 900.0]))
    assert raw.shape == x.shape
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 1, 8, 8), torch.ones(2))
    with pytest.raises(ValueError, match="sigma"):
        net(x, torch.full((3,), -0.1))


def test_timestep_map_matches_the_table(net):
    """eps: the network gets the index of the nearest table entry in log
    sigma (ComfyUI's discrete sampling), or the log-linear fractional index;
    flow: 1000 sigma. sigma_of inverts the fractional map."""
    idx = torch.tensor([0, 1, 250, 998, 999])
    t = net.timestep(net.sigmas[idx].double())
    want = idx.double() if net.kind == "eps" else net.sigmas[idx].double() * 1000
    torch.testing.assert_close(t, want, rtol=0, atol=1e-3)
    s = torch.tensor([0.05, 0.4, 0.9]).double() * net.sigma_max
    if net.kind == "eps":
        log_table = np.log(net.sigmas.double().numpy())
        nearest = [float(np.argmin(np.abs(log_table - np.log(v)))) for v in s.tolist()]
        assert net.timestep(s).tolist() == nearest
        frac = nw.timestep_from_sigma(s, "eps", net.sigmas, interpolate=True)
        assert (frac - torch.tensor(nearest).double()).abs().max() <= 0.5 + 1e-9
        torch.testing.assert_close(net.sigma_of(frac), s, rtol=1e-9, atol=0)
    else:
        torch.testing.assert_close(net.timestep(s), 1000 * s)
        torch.testing.assert_close(net.sigma_of(net.timestep(s)), s, rtol=1e-12, atol=0)


def _denoise_mse(net, x0, sigma, gen):
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    a = 1.0 if net.process == "ve" else 1.0 - sigma
    x = a * x0 + sigma * noise
    d = net(x, torch.full((x0.shape[0],), sigma, dtype=torch.float64))
    return float(((d - x0) ** 2).mean()), float(((x - x0) ** 2).mean())


# Up to where the noisy image still says much about the digit; the top of the
# range (where D tends to the mean image) has its own test below.
# digits-cond here is its unconditional (null-class) denoiser.
SIGMAS = {"digits-eps": [0.03, 0.15, 0.6, 2.0], "digits-flow": [0.005, 0.05, 0.25, 0.6],
          "digits-cond": [0.03, 0.15, 0.6, 2.0]}


def test_denoises_heldout_better_than_both_baselines(net, heldout, mean_image):
    """Across the range, D(x0 + noise) is closer to the held-out x0 than the
    noisy input itself and than the mean image, by a clear margin (x0.7) —
    the better baseline is the identity at low noise, the mean at high."""
    gen = torch.Generator().manual_seed(7)
    x0 = heldout[:HELD]
    mean_mse = float(((mean_image - x0) ** 2).mean())
    for sigma in SIGMAS[net.name]:
        mse, ident = _denoise_mse(net, x0, sigma, gen)
        best = min(ident, mean_mse)
        assert mse < 0.7 * best, (f"{net.name} sigma {sigma}: MSE {mse:.3g}, identity "
                                  f"{ident:.3g}, mean image {mean_mse:.3g}")


def test_top_of_the_range_predicts_the_mean_image(net, heldout, mean_image):
    """At sigma_max the posterior mean is (nearly) the data mean: D is far
    closer to the mean image than the digits are, and no worse a denoiser."""
    gen = torch.Generator().manual_seed(8)
    x0 = heldout[:HELD]
    mse, _ = _denoise_mse(net, x0, net.sigma_max, gen)
    mean_mse = float(((mean_image - x0) ** 2).mean())
    assert mse < 1.1 * mean_mse
    a = 1.0 if net.process == "ve" else 1.0 - net.sigma_max
    x = a * x0 + net.sigma_max * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    d = net(x, torch.full((x0.shape[0],), net.sigma_max, dtype=torch.float64))
    spread = float(((d - mean_image) ** 2).mean())
    assert spread < 0.25 * mean_mse, f"{net.name}: D at sigma_max spreads {spread:.3g}"


def test_euler_20_steps_gives_digit_statistics(net, heldout):
    """20 Euler steps of dx/dsigma = (x - D)/sigma from pure noise, uniform in
    the model's timestep: the samples' pixel statistics (mean, std, share of
    inked pixels > 0) are the held-out digits' within a loose band."""
    gen = torch.Generator().manual_seed(9)
    n = 64
    if net.kind == "eps":
        sig = net.sigma_of(torch.linspace(999, 0, 20, dtype=torch.float64))
    else:
        t = torch.linspace(1, 0.001, 20, dtype=torch.float64)
        sig = 3 * t / (1 + 2 * t)
    sig = torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
    x = torch.randn(n, 1, 28, 28, generator=gen, dtype=torch.float64) * sig[0]
    for s, s_next in zip(sig[:-1], sig[1:]):
        x = x + (s_next - s) * (x - net(x, s)) / s
    assert bool(torch.isfinite(x).all())
    ref = heldout
    assert abs(float(x.mean() - ref.mean())) < 0.08
    assert abs(float(x.std() / ref.std()) - 1) < 0.15
    ink = float((x > 0).double().mean())
    ink_ref = float((ref > 0).double().mean())
    assert abs(ink / ink_ref - 1) < 0.3
    assert float(x.min()) > -1.6 and float(x.max()) < 1.6


def test_shipped_metrics_agree_with_a_fresh_measurement(net, heldout, mean_image):
    """The metadata's held-out numbers are what the weights do now."""
    row = next(r for r in net.metrics["denoise"] if r["sigma"] == 0.3)
    mse, _ = _denoise_mse(net, heldout, row["sigma"], torch.Generator().manual_seed(11))
    assert mse == pytest.approx(row["mse"], rel=0.1)


TINY = dict(tn.CONFIGS["digits-eps"], arch=dict(tn.ARCH, channels=[8, 16], emb_dim=16,
                                                  groups=4, heads=2),
            steps=3, batch=4, warmup=2)


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_training_is_deterministic(kind):
    cfg = dict(TINY, kind=kind, shift=3.0)
    data = nw.mnist_digits("train")[:64]
    a, loss_a = tn.train(cfg, data)
    b, loss_b = tn.train(cfg, data)
    c, _ = tn.train(dict(cfg, seed=1), data)
    assert loss_a == loss_b and math.isfinite(loss_a)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_training_cli_writes_loadable_weights(tmp_path, monkeypatch):
    """The command line end to end on a tiny configuration: the file it writes
    loads through load_network with its config and metrics."""
    monkeypatch.setitem(tn.CONFIGS, "digits-flow", dict(TINY, kind="flow", shift=3.0))
    out = tmp_path / "digits-flow.safetensors"
    assert tn.main(["--model", "digits-flow", "--steps", "2", "--out", str(out),
                    "--eval-samples", "4", "--eval-heldout", "8"]) == 0
    net = nw.load_network("digits-flow", weights_dir=tmp_path)
    assert net.config["steps"] == 2 and net.config["arch"]["channels"] == [8, 16]
    assert len(net.metrics["denoise"]) == len(tn.EVAL_SIGMAS["flow"])


def test_reference_solution_converges():
    """RK4 in log sigma on the smooth (interpolated-timestep) eps network:
    halving the step count changes the answer far less than the path moves."""
    net = nw.load_network("digits-eps", interpolate_timesteps=True)
    gen = torch.Generator().manual_seed(5)
    x = net.noisy(4, 2.0, gen, torch.float64)
    fine = net.reference_solution(x, 2.0, 0.2, steps=32)
    coarse = net.reference_solution(x, 2.0, 0.2, steps=16)
    moved = float((fine - x).norm())
    assert float((fine - coarse).norm()) < 1e-3 * moved
    with pytest.raises(ValueError, match="sigma_end"):
        net.reference_solution(x, 0.1, 0.2)


# ------------------------------------------------------------ digits-cond

@pytest.fixture(scope="module")
def cond_net():
    return nw.load_network("digits-cond")


@pytest.fixture(scope="module")
def heldout_labels():
    return nw.mnist_labels("heldout")


def test_labels_match_the_images(heldout, heldout_labels):
    """mnist_labels is aligned with mnist_digits: the shipped digit classifier
    (trained separately, bench/classifier.py) reads the held-out images as
    their labels; 50 of each class are held out."""
    from sampler_lab.bench.classifier import load_classifier
    classifier, _ = load_classifier()
    with torch.no_grad():
        read = classifier(heldout.float()).argmax(1)
    assert float((read == heldout_labels).double().mean()) > 0.9
    assert torch.bincount(heldout_labels).tolist() == [50] * 10
    assert nw.mnist_labels("train").shape == (4500,)


def test_class_halves_and_labels():
    assert set(nw.CALIBRATION_CLASSES).isdisjoint(nw.HELDOUT_CLASSES)
    assert sorted(nw.CALIBRATION_CLASSES + nw.HELDOUT_CLASSES) == list(range(10))
    assert nw.class_labels(5, (5, 6)).tolist() == [5, 6, 5, 6, 5]
    assert nw.class_labels(12).tolist() == list(range(10)) + [0, 1]
    for bad in [dict(n=0), dict(n=3, classes=(10,)), dict(n=3, classes=())]:
        with pytest.raises(ValueError, match="classes"):
            nw.class_labels(**bad)


def test_cond_loader_and_metadata(cond_net):
    assert isinstance(cond_net, nw.ConditionalDenoiser)
    cfg = cond_net.config
    assert cfg["arch"]["num_classes"] == 10 and cfg["p_uncond"] == pytest.approx(0.1)
    assert cfg["kind"] == "eps" and cond_net.null_class == 10
    rows = cond_net.metrics["cfg_samples"]
    assert [r["cfg"] for r in rows] == list(tn.EVAL_CFG)
    assert all("mse_uncond" in r for r in cond_net.metrics["denoise"])


def _noisy(x0, sigma, seed):
    gen = torch.Generator().manual_seed(seed)
    return x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)


def test_the_label_helps_on_heldout_digits(cond_net, heldout, heldout_labels):
    """Told the right digit, the network denoises held-out digits (never
    trained on) better than without a label where the noise hides the digit
    (sigma >= 3: below it the noisy image itself says which digit it is),
    and a wrong label makes it worse than no label; the conditional and
    unconditional predictions differ clearly."""
    x0, y = heldout[::2], heldout_labels[::2]   # 25 of each class
    for sigma in (3.0, 8.0):
        x = _noisy(x0, sigma, 21)
        s = torch.full((len(x0),), sigma, dtype=torch.float64)
        d_c = cond_net(x, s, y)
        d_u = cond_net(x, s)
        d_w = cond_net(x, s, (y + 5) % 10)
        mse = {k: float(((d - x0) ** 2).mean()) for k, d in
               dict(cond=d_c, uncond=d_u, wrong=d_w).items()}
        assert mse["cond"] < 0.9 * mse["uncond"] and mse["uncond"] < mse["wrong"], (sigma, mse)
        gap = float(((d_c - d_u) ** 2).mean())
        assert gap > 0.05 * mse["uncond"], (sigma, gap, mse)


def test_cfg_combines_the_two_predictions(cond_net):
    """D = D_u + cfg (D_c - D_u) (Ho & Salimans 2022, eq. 6 in the denoised
    form), with D_c and D_u from separate calls; cfg 1 is the conditional
    denoiser and cfg 0 the unconditional one; guided() is the same."""
    x = _noisy(torch.zeros(6, 1, 28, 28, dtype=torch.float64), 2.0, 3)
    s = torch.full((6,), 2.0, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 7, 8, 9])
    d_c, d_u = cond_net(x, s, y), cond_net(x, s)
    assert torch.equal(cond_net(x, s, y, cfg=1.0), d_c)
    torch.testing.assert_close(cond_net(x, s, y, cfg=0.0), d_u, rtol=0, atol=1e-5)
    torch.testing.assert_close(cond_net(x, s, y, cfg=3.5), d_u + 3.5 * (d_c - d_u),
                               rtol=0, atol=1e-5)
    g = cond_net.guided(y, 3.5)
    assert torch.equal(g(x, s), cond_net(x, s, y, cfg=3.5)) and g.evals_per_call == 2
    assert cond_net.guided(y, 1.0).evals_per_call == 1
    # a prefix of the batch: refused, or (prefix=True) the first labels
    with pytest.raises(ValueError, match="labels"):
        g(x[:2], s[:2])
    gp = cond_net.guided(y, 3.5, prefix=True)
    assert torch.equal(gp(x[:2], s[:2]), cond_net(x[:2], s[:2], y[:2], cfg=3.5))
    assert torch.equal(cond_net(x, s, 7), cond_net(x, s, torch.full((6,), 7)))
    # the null class by number is the unconditional denoiser
    assert torch.equal(cond_net(x, s, 10), d_u)


def test_cond_bad_inputs_name_the_input(cond_net):
    x = torch.zeros(2, 1, 28, 28)
    for labels in (11, -1, torch.tensor([1, 2, 3]), torch.tensor([1.5, 2.0])):
        with pytest.raises(ValueError, match="labels"):
            cond_net(x, 1.0, labels)
    with pytest.raises(ValueError, match="cfg"):
        cond_net(x, 1.0, 3, cfg=float("nan"))
    with pytest.raises(ValueError, match="cfg"):
        cond_net.guided(3, float("inf"))


def test_guided_samples_are_the_digits_asked_for(cond_net):
    """20 Euler steps with CFG 3 from noise, labels of the held-out half of
    the classes (5..9): the shipped classifier (independent of the network)
    reads most samples as the digit asked for, far above chance (20% among
    five classes; 10% over all ten), and better than without guidance (cfg 1)."""
    from sampler_lab.bench.classifier import load_classifier
    classifier, _ = load_classifier()
    y = nw.class_labels(60, nw.HELDOUT_CLASSES)
    acc = {}
    for cfg in (1.0, 3.0):
        gen = torch.Generator().manual_seed(31)
        x = tn.euler_samples(cond_net, len(y), 20, gen, cond_net.guided(y, cfg))
        assert bool(torch.isfinite(x).all())
        with torch.no_grad():
            read = classifier(x.float().clamp(-1, 1)).argmax(1)
        acc[cfg] = float((read == y).double().mean())
    assert acc[3.0] >= 0.8 and acc[3.0] >= acc[1.0], acc


def test_conditional_training_is_deterministic_and_needs_labels():
    cfg = dict(TINY, arch=dict(TINY["arch"], num_classes=10), p_uncond=0.1)
    data = nw.mnist_digits("train")[:64]
    labels = nw.mnist_labels("train")[:64]
    a, loss_a = tn.train(cfg, data, labels=labels)
    b, loss_b = tn.train(cfg, data, labels=labels)
    assert loss_a == loss_b and math.isfinite(loss_a)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert "label_emb.weight" in a.state_dict()
    with pytest.raises(ValueError, match="labels"):
        tn.train(cfg, data)
    with pytest.raises(ValueError, match="labels"):
        tn.train(TINY, data, labels=labels)


def test_bench_row_of_the_conditional_network():
    """bench/tuned.py's digits-cond row: calibration asks for classes 0-4,
    the held-out and Frechet splits for 5-9 only, and the Frechet reference
    holds only held-out digits of 5-9; a prefix of a split keeps its labels."""
    from sampler_lab.bench import tuned as bt
    net = bt.NETWORKS["digits-cond"]()
    cond = nw.load_network("digits-cond")
    x = _noisy(torch.zeros(10, 1, 28, 28, dtype=torch.float64), 3.0, 5)
    s = torch.full((10,), 3.0, dtype=torch.float64)
    for split, classes in (("calib", nw.CALIBRATION_CLASSES), ("held", nw.HELDOUT_CLASSES),
                           ("fd", nw.HELDOUT_CLASSES)):
        y = nw.class_labels(10, classes)
        assert torch.equal(net.denoiser(split, 10)(x, s), cond(x, s, y, cfg=bt.COND_CFG))
        assert torch.equal(net.denoiser(split, 10)(x[:3], s[:3]),
                           cond(x[:3], s[:3], y[:3], cfg=bt.COND_CFG))
    images = net.heldout_images()
    held, labels = nw.mnist_digits("heldout"), nw.mnist_labels("heldout")
    assert torch.equal(images, held[labels >= 5]) and len(images) == 250
    assert net.start_scale == pytest.approx((1 + net.sigma_max ** 2) ** 0.5)


def test_conditional_cli_writes_loadable_weights_and_re_measures(tmp_path, monkeypatch):
    """digits-cond's command line on a tiny configuration: a ConditionalDenoiser
    with the CFG sample metrics; --eval-only rewrites the metrics, not the weights."""
    tiny = dict(TINY, arch=dict(TINY["arch"], num_classes=10), p_uncond=0.1)
    monkeypatch.setitem(tn.CONFIGS, "digits-cond", tiny)
    out = tmp_path / "digits-cond.safetensors"
    args = ["--model", "digits-cond", "--out", str(out), "--eval-samples", "4",
            "--eval-heldout", "8"]
    assert tn.main(args + ["--steps", "2"]) == 0
    net = nw.load_network("digits-cond", weights_dir=tmp_path)
    assert isinstance(net, nw.ConditionalDenoiser)
    assert [r["cfg"] for r in net.metrics["cfg_samples"]] == list(tn.EVAL_CFG)
    weights = {k: v.clone() for k, v in net.diffusion_model.state_dict().items()}
    assert tn.main(args + ["--eval-only"]) == 0
    again = nw.load_network("digits-cond", weights_dir=tmp_path)
    assert all(torch.equal(weights[k], v) for k, v in again.diffusion_model.state_dict().items())
    with pytest.raises(SystemExit, match="eval-only"):
        tn.main(["--model", "digits-cond", "--out", str(tmp_path / "x.safetensors"),
                 "--eval-only"])
