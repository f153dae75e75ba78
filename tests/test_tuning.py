"""The tuned sampler (tuning/): judged on seeds it never saw, against the
exact probability-flow ODE solution of Gaussian data (bench/models.py)."""
import json
import math

import pytest
import torch

from sampler_lab import samplers
from sampler_lab.bench.models import GaussianData
from sampler_lab.tuning import Interrupted, TunedSampler, tune
from sampler_lab.tuning.linear import linear_form

# Per-channel statistics: the ODE is linear per channel but the tuned
# coefficients are shared by all channels, so no table is exact.
MEAN = torch.tensor([0.3, -0.2, 0.1, 0.0]).reshape(4, 1, 1)
STD = torch.tensor([0.2, 0.5, 1.0, 2.0]).reshape(4, 1, 1)
RANGE = {"ve": (0.0292, 14.6146), "flow": (0.003, 1.0)}
SAMPLERS = ("euler", "dpmpp_2m", "ipndm", "uni_pc", "deis", "res_3m")
SCHEDULES = ("karras", "exponential", "kl_optimal", "linear_quadratic")


def _data(process):
    return GaussianData(MEAN, STD, process)


def _noise(n, seed):
    return torch.randn(n, 4, 6, 6, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def _exact(data, noise, process):
    """The ODE's end from start_scale x noise: transport to sigma_min, then
    the denoise there (what the tuner and every sampler ending in 0 aim at)."""
    smin, smax = RANGE[process]
    x = data.ode_solution(noise * smax, smax, smin)
    return data.denoiser(x, smin)


def _rmse(a, b):
    return float(((a - b) ** 2).mean().sqrt())


def _tune(process, calls=5, n=8, **kw):
    smin, smax = RANGE[process]
    kw.setdefault("sampler_names", SAMPLERS)
    kw.setdefault("schedule_names", SCHEDULES)
    kw.setdefault("max_evals", 1000)
    return tune(_data(process).denoiser, _noise(n, 0), process, calls, sigma_min=smin,
                sigma_max=smax, **kw)


@pytest.fixture(scope="module", params=["ve", "flow"])
def tuned(request):
    return request.param, _tune(request.param)


def test_tuned_beats_its_start_on_held_out_seeds(tuned):
    process, ts = tuned
    data = _data(process)
    held = _noise(64, 1)
    ref = _exact(data, held, process)
    err = _rmse(ts.sample(data.denoiser, held), ref)
    base = samplers.get_sampler(ts.base["sampler"]).fn(
        data.denoiser, held * ts.start_scale, ts.sigmas_tensor(torch.float64), process=process,
        eta=0.0)
    err_base = _rmse(base, ref)
    assert err < 0.5 * err_base, (err, err_base, ts.base)
    # held-out error near the calibration error (both against the exact ODE)
    calib = _noise(8, 0)
    err_cal = _rmse(ts.sample(data.denoiser, calib), _exact(data, calib, process))
    assert 0.5 * err_cal < err < 2.0 * err_cal, (err, err_cal)


def test_never_worse_than_the_start(tuned):
    process, ts = tuned
    assert ts.errors["after"] <= ts.errors["before"]
    # the start is a ranked sampler that runs one call per step, on its
    # schedule or on step times searched from it
    assert ts.base["sampler"] in SAMPLERS
    assert ts.base["schedule"].replace("+searched", "") in SCHEDULES
    errs = [e for _, _, e in ts.ranking]
    assert errs == sorted(errs)


def test_start_table_reproduces_the_sampler():
    """The table read off a sampler's arithmetic reproduces its run on a
    real (nonlinear in sigma) denoiser to rounding."""
    from sampler_lab.tuning.tuner import _Combo, _table_of
    data = _data("ve")
    x = _noise(3, 5) * RANGE["ve"][1]
    sig = torch.tensor([14.6146, 5.0, 1.5, 0.4, 0.1, 0.0292, 0.0], dtype=torch.float64)
    for name in ("uni_pc", "deis", "ipndm", "sa_solver", "res_3m", "dpmpp_2m"):
        fn = samplers.get_sampler(name).fn
        form = linear_form(fn, sig, "ve", 6)
        combo = _Combo(name, "custom", sig.tolist(), form)
        c, w = _table_of(combo, samplers.get_process("ve"))
        ts = TunedSampler("ve", sig.tolist(), c, w, 1.0)
        ours = ts.sampler_function()(data.denoiser, x, sig)
        real = fn(data.denoiser, x, sig, eta=0.0)
        assert torch.allclose(ours, real, rtol=0, atol=1e-12), name


def test_round_trip_is_bit_identical(tuned):
    process, ts = tuned
    text = json.dumps(ts.to_dict())
    assert len(text) < 8000
    back = TunedSampler.from_dict(json.loads(text))
    data = _data(process)
    held = _noise(4, 2)
    assert torch.equal(back.sample(data.denoiser, held), ts.sample(data.denoiser, held))
    assert back.ranking == ts.ranking and back.base == ts.base


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(format="other"), "format"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.pop("sigmas"), "sigmas"),
    (lambda d: d.update(sigmas=d["sigmas"][::-1]), "sigmas"),
    (lambda d: d["x0"].__setitem__(0, float("nan")), "x0[0]"),
    (lambda d: d["weights"][2].append(0.5), "weights[2]"),
    (lambda d: d["weights"].pop(), "weights"),
    (lambda d: d.update(process="vp"), "process"),
    (lambda d: d.update(ranking=[["euler", 3, 0.1]]), "ranking[0]"),
    (lambda d: d.update(start_scale=-1.0), "start_scale"),
])
def test_corrupt_or_foreign_tables_name_the_field(tuned, edit, field):
    d = json.loads(json.dumps(tuned[1].to_dict()))
    edit(d)
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        TunedSampler.from_dict(d)


def test_other_sigmas_are_refused(tuned):
    process, ts = tuned
    data = _data(process)
    sig = ts.sigmas_tensor().clone()
    sig[1] *= 0.9
    with pytest.raises(ValueError, match="fitted on its own sigmas"):
        ts.sampler_function()(data.denoiser, _noise(2, 3) * ts.start_scale, sig)


def test_budget_below_the_minimum():
    with pytest.raises(ValueError, match="max_evals = 300"):
        _tune("ve", max_evals=300)
    with pytest.raises(ValueError, match="calls"):
        _tune("ve", calls=0)


def test_bad_calibration_batches():
    with pytest.raises(ValueError, match="empty calibration batch"):
        tune(_data("ve").denoiser, torch.zeros(0, 4, 6, 6), "ve", 4, sigma_min=0.03,
             sigma_max=14.6)
    with pytest.raises(ValueError, match="noise must be a finite"):
        tune(_data("ve").denoiser, torch.full((2, 4, 6, 6), float("nan")), "ve", 4,
             sigma_min=0.03, sigma_max=14.6)

    def wrong_shape(x, sigma):
        return x[:, :2]
    with pytest.raises(ValueError, match="shaped like its input"):
        tune(wrong_shape, _noise(2, 0), "ve", 4, sigma_min=0.03, sigma_max=14.6)


def test_nan_from_the_model():
    data = _data("ve")

    def broken(x, sigma):
        out = data.denoiser(x, sigma)
        return out * float("nan") if float(sigma[0]) < 1.0 else out
    with pytest.raises(ValueError, match="NaN or inf during calibration"):
        tune(broken, _noise(4, 0), "ve", 4, sigma_min=0.0292, sigma_max=14.6146)


@pytest.mark.parametrize("cap", [420, 700])
def test_max_evals_is_respected(cap):
    data = _data("ve")
    seen = []

    def counted(x, sigma):
        seen.append(x.shape[0])
        return data.denoiser(x, sigma)
    ts = tune(counted, _noise(6, 0), "ve", 5, sigma_min=0.0292, sigma_max=14.6146,
              max_evals=cap, sampler_names=SAMPLERS, schedule_names=SCHEDULES)
    assert sum(seen) <= cap
    assert sum(seen) == ts.cost["evals"]


def test_should_stop_interrupts():
    data = _data("flow")
    calls = []

    def counted(x, sigma):
        calls.append(1)
        return data.denoiser(x, sigma)
    progress = []
    with pytest.raises(Interrupted):
        tune(counted, _noise(4, 0), "flow", 4, sigma_min=0.003, sigma_max=1.0,
             progress=lambda done, total: progress.append((done, total)),
             should_stop=lambda: len(calls) >= 30)
    assert len(calls) == 30
    assert progress and progress[-1][1] == 2000
