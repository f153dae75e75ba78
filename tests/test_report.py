"""The report's pieces on small sizes: the digit classifier and its Frechet
distance (closed-form cases), the image grid and convergence measure on the
trained networks, the Markdown -> HTML page, and one whole small report run.
Accuracy and speed numbers come from the report itself, not from here."""
import math
import re

import numpy as np
import pytest
import torch

from sampler_lab.bench import classifier, engine_report, trained_report as T
from sampler_lab.bench.networks import mnist_digits


# ---------------------------------------------------------------- classifier

def test_classifier_loads_and_knows_the_held_out_digits():
    model, metrics = classifier.load_classifier()
    held = mnist_digits("heldout")
    labels = torch.from_numpy(classifier._labels("heldout"))
    with torch.no_grad():
        pred = model(held.float()).argmax(dim=1)
    acc = (pred == labels).double().mean().item()
    assert acc > 0.9, f"held-out accuracy {acc:.3f}"
    assert abs(metrics["heldout_accuracy"] - acc) < 0.05, (metrics, acc)
    feats = classifier.features(held[:10])
    assert feats.shape == (10, 64) and feats.dtype == torch.float64


def test_frechet_distance_closed_form():
    # N(0, I) against N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d
    gen = np.random.default_rng(0)
    d, n = 6, 200000
    a = gen.standard_normal((n, d))
    m = np.arange(d) / d
    b = m + 2 * gen.standard_normal((n, d))
    want = float(m @ m) + d
    assert classifier.frechet_distance(a, b) == pytest.approx(want, rel=0.02)
    assert abs(classifier.frechet_distance(a, a)) < 1e-8


def test_frechet_distance_matches_scipy_sqrtm():
    # the eigenvalue route against scipy's matrix square root on unequal covariances
    from scipy.linalg import sqrtm
    gen = np.random.default_rng(1)
    a = gen.standard_normal((500, 5)) @ gen.standard_normal((5, 5))
    b = gen.standard_normal((400, 5)) @ gen.standard_normal((5, 5)) + 0.3
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    dm = a.mean(0) - b.mean(0)
    want = dm @ dm + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb)))
    assert classifier.frechet_distance(a, b) == pytest.approx(want, rel=1e-8)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="N >= 2"):
        classifier.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        classifier.frechet_distance(np.ones((4, 3)) * np.arange(4)[:, None],
                                    np.ones((4, 2)) * np.arange(4)[:, None])


# ------------------------------------------------------------ trained pages

@pytest.fixture(scope="module")
def eps_net():
    return T._load("digits-eps")


def test_grid_converges_to_the_samplers_own_image(eps_net, monkeypatch):
    names = (("euler", "deterministic"), ("euler_ancestral", "ancestral"))
    steps = (4, 16, 64)
    # A clock that advances by 1 at each reading: every run is timed on its
    # own (one reading before, one after), so each entry is exactly 1 second.
    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(T.time, "perf_counter", lambda: float(next(ticks)))
    imgs, secs = T.run_grid(eps_net, 2, seed=3, steps=steps, names=names)
    monkeypatch.undo()
    assert set(secs) == set(imgs) == {name for name, _ in names}
    for name, _ in names:
        assert set(secs[name]) == set(imgs[name]) == set(steps)
        for n in steps:
            assert imgs[name][n].shape == (2, 1, 28, 28)
            assert torch.isfinite(imgs[name][n]).all()
            assert secs[name][n] == 1.0
    conv = T.convergence(imgs, steps)
    # the deterministic sampler converges to its own 64-step image
    assert conv["euler"][1] < conv["euler"][0] < 1
    # the same seed gives the same Brownian path: ancestral images repeat
    again, _ = T.run_grid(eps_net, 2, seed=3, steps=(4,), names=names[1:])
    assert torch.equal(again["euler_ancestral"][4], imgs["euler_ancestral"][4])


def test_tile_maps_minus_one_to_black_and_one_to_white():
    imgs = torch.stack([-torch.ones(1, 28, 28), torch.ones(1, 28, 28), torch.zeros(1, 28, 28)])
    pic = T.tile(imgs, cols=2)
    assert pic.shape == (2 * 30 - 2, 2 * 30 - 2)
    assert pic[:28, :28].max() == 0 and pic[:28, 30:].min() == 255
    assert pic[30:, :28].min() in (127, 128)


def test_distribution_scores_are_finite_and_the_floor_is_lower(eps_net):
    fd, floor, secs = T.distribution(eps_net, 40, seed=0, steps=6,
                                     names=(("dpmpp_2m", "deterministic"),))
    assert math.isfinite(fd["dpmpp_2m"]) and fd["dpmpp_2m"] > 0
    # 40 training digits are closer to the held-out set than 6-step samples
    assert 0 < floor < fd["dpmpp_2m"]


# ---------------------------------------------------------------- HTML

def test_markdown_to_html_tables_images_and_escapes():
    md = "\n".join(["# Title", "", "Some `code` and **bold** <b>x</b>.", "",
                    "| a | b |", "|---|---|", "| 1 | 2 |", "", "![cap](pic.png)", "",
                    "- one", "- two"])
    page = engine_report.markdown_to_html(md, "T")
    assert "<h1>Title</h1>" in page
    assert "<code>code</code>" in page and "<b>bold</b>" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page  # raw HTML in the text is escaped
    assert "<tr><th>a</th><th>b</th></tr>" in page and "<tr><td>1</td><td>2</td></tr>" in page
    assert "---" not in page
    assert "<img src='pic.png' alt='cap'>" in page
    assert page.count("<li>") == 2


def test_small_report_writes_html_with_every_picture(tmp_path):
    text = engine_report.write_report(
        tmp_path, budgets=(4,), batch=2, seed=0, images=2, samples=12, trained_batch=2,
        reference_steps=16, grid_steps=(2, 4), call_budgets=(4,), nets=("digits-flow",),
        exact=False)
    page = (tmp_path / "index.html").read_text()
    pictures = re.findall(r"<img src='([^']+)'", page)
    assert {"grid-flow.png", "convergence-flow.png", "calls-flow.png",
            "distribution.png"} <= set(pictures)
    for pic in pictures:
        data = (tmp_path / pic).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", pic
    assert "Time per image" in text and "Frechet distance" in text
    assert (tmp_path / "index.md").read_text() == text


def test_report_cli_rejects_bad_options(capsys):
    with pytest.raises(SystemExit):
        engine_report.main(["--images", "0"])
    assert "--images must be in [1, 64]" in capsys.readouterr().err
