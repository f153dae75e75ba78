"""Sampler Lab Tune Sampler inside a real ComfyUI: the fit runs through the
host's sampling pipeline on the suite's exact Gaussian models (eps: SD1.5's
table; flow: SD3's, newest host), its SAMPLER + SIGMAS drive the core's
SamplerCustom (and SamplerCustomAdvanced where the host has it), the result
is cached in the user folder and embedded in the workflow (the tuned_table
widget), the host's Cancel leaves nothing behind, and bad tables are refused
naming the input.

The accuracy oracle is the closed-form solution of the Gaussian's
probability-flow ODE (as in test_optimize_node.py), on seeds the fit never
saw."""
import json

import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)

CALLS = 6
MAX_EVALS = 600
BATCH = 4


@pytest.fixture
def user_dir(comfy, tmp_path, monkeypatch):
    import folder_paths
    if hasattr(folder_paths, "get_user_directory"):
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    monkeypatch.setattr(folder_paths, "user_directory", str(tmp_path), raising=False)
    return tmp_path / "sampler_lab" / "tuned"


def _latent(channels=4, batch=BATCH):
    return {"samples": torch.zeros(batch, channels, 8, 8)}


def _tune(comfy, model, pos, neg, channels=4, **kw):
    args = dict(cfg=1.0, calls=CALLS, max_evals=MAX_EVALS, calibration_seed=3)
    args.update(kw)
    with torch.inference_mode():
        return comfy.lab.LabTuneSampler().tune(model, pos, neg, latent_image=_latent(channels),
                                               **args)


def _custom(comfy, model, pos, neg, sampler, sigmas, seed=11, channels=4, batch=4):
    latent = {"samples": torch.zeros(batch, channels, 8, 8)}
    with torch.inference_mode():
        return comfy.nodes_custom_sampler.SamplerCustom().sample(
            model, True, seed, 1.0, pos, neg, sampler, sigmas, latent)[0]["samples"]


def _exact(comfy, model, sigmas, seed=11, channels=4, batch=4):
    """The closed-form result of the Gaussian (N(0.1, 0.5^2)) model's ODE from
    the host's own start (see test_optimize_node._core_error)."""
    latent = torch.zeros(batch, channels, 8, 8)
    ms = model.model.model_sampling
    noise = comfy.sample.prepare_noise(latent, seed)
    x_start = ms.noise_scaling(sigmas[0], noise, latent, max_denoise=True)
    mean, std = 0.1, 0.5
    flow = getattr(comfy.model_sampling, "CONST", None) is not None and \
        isinstance(ms, comfy.model_sampling.CONST)
    if flow:
        # x = (1 - s) x0 + s n: x - (1 - s) mean scales by sqrt((1-s)^2 std^2 + s^2);
        # at s = 0 the data itself.
        s0 = float(sigmas[0])
        scale0 = ((1 - s0) ** 2 * std ** 2 + s0 ** 2) ** 0.5
        exact = mean + std / scale0 * (x_start - (1 - s0) * mean)
    else:
        s_max = float(sigmas[0])
        s_min = float(ms.sigma_min)
        gain = std ** 2 / ((std ** 2 + s_min ** 2) * (std ** 2 + s_max ** 2)) ** 0.5
        exact = mean + gain * (x_start - mean)
    return model.model.process_latent_out(exact)


def _rmse(a, b):
    return float(((a.double() - b.double()) ** 2).mean().sqrt())


def _core_best(comfy, model, pos, neg, calls, channels=4):
    """The core's best error at `calls` model calls over a few of its strongest
    deterministic samplers (one call per step) and its schedulers."""
    ms = model.model.model_sampling
    best = (float("inf"), None)
    names = [n for n in ("euler", "dpmpp_2m", "ipndm", "deis", "res_multistep")
             if n in comfy.samplers.KSampler.SAMPLERS]
    for sched in ("normal", "karras", "exponential", "simple", "sgm_uniform"):
        if hasattr(comfy.samplers, "calculate_sigmas_scheduler"):
            sigmas = comfy.samplers.calculate_sigmas_scheduler(model.model, sched, calls)
        else:
            sigmas = comfy.samplers.calculate_sigmas(ms, sched, calls)
        sigmas = sigmas.float()
        exact = _exact(comfy, model, sigmas, channels=channels)
        for name in names:
            out = _custom(comfy, model, pos, neg, comfy.samplers.sampler_object(name), sigmas,
                          channels=channels)
            err = _rmse(out, exact)
            if err < best[0]:
                best = (err, f"{name}+{sched}")
    return best


def test_eps_fit_runs_in_samplercustom_is_cached_and_embedded(comfy, sd15_model, cond,
                                                              user_dir):
    pos, neg = cond
    model = sd15_model
    net = model.model.diffusion_model
    calls0 = net.calls
    first = _tune(comfy, model, pos, neg)
    sampler, sigmas = first["result"]
    fit_calls = net.calls - calls0
    assert fit_calls > 0
    ui = first["ui"]
    outcome = ui["sampler_lab_outcome"][0]
    print("\n" + ui["sampler_lab_summary"][0])
    # outputs: SIGMAS of calls + 1 levels from sigma_max to 0, a SAMPLER
    assert len(sigmas) == CALLS + 1 and float(sigmas[-1]) == 0.0
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    assert abs(float(sigmas[0]) - float(model.model.model_sampling.sigma_max)) < 1e-3
    assert isinstance(sampler, comfy.samplers.KSAMPLER)
    assert ui["sampler_lab_sigmas"] == [float(v) for v in sigmas]
    # what the widget shows
    assert outcome["source"] == "new" and not outcome["cached"]
    assert 0 < outcome["calls"] <= MAX_EVALS and outcome["calls_per_image"] == CALLS
    assert len(outcome["ranking"]) == 3
    assert outcome["error_after"] <= outcome["error_before"]

    # SamplerCustom with the outputs: the model is called CALLS times per run,
    # and on seeds the fit never saw the result is at least as close to the
    # exact solution as the core's best sampler x scheduler with the same calls.
    before = net.calls
    out = _custom(comfy, model, pos, neg, sampler, sigmas)
    assert net.calls - before == CALLS
    ours = _rmse(out, _exact(comfy, model, sigmas))
    core, core_name = _core_best(comfy, model, pos, neg, CALLS)
    print(f"tuned, {CALLS} calls: RMSE {ours:.3e}; core best {core_name}: {core:.3e}")
    assert ours <= core, (ours, core, core_name)

    # the cache: one file, and the second run costs no model call
    files = list(user_dir.glob("*.json"))
    assert len(files) == 1
    before = net.calls
    again = _tune(comfy, model, pos, neg)
    assert net.calls == before
    assert again["ui"]["sampler_lab_outcome"][0]["source"] == "cache"
    assert torch.equal(again["result"][1], sigmas)
    assert torch.equal(_custom(comfy, model, pos, neg, again["result"][0], sigmas), out)

    # the workflow: with the cache gone, the embedded table alone reproduces
    # the same latent, without a model call
    table = ui["sampler_lab_tuned_table"][0]
    assert isinstance(table, str) and len(table) < 20000
    json.loads(table)
    for f in files:
        f.unlink()
    before = net.calls
    embedded = _tune(comfy, model, pos, neg, tuned_table=table)
    assert net.calls == before
    assert embedded["ui"]["sampler_lab_outcome"][0]["source"] == "workflow"
    assert not list(user_dir.glob("*.json"))
    assert torch.equal(embedded["result"][1], sigmas)
    assert torch.equal(_custom(comfy, model, pos, neg, embedded["result"][0], sigmas), out)

    # a table for other settings (another cfg) is replaced by a new fit
    before = net.calls
    other = _tune(comfy, model, pos, neg, cfg=2.0, tuned_table=table)
    assert net.calls > before and other["ui"]["sampler_lab_outcome"][0]["source"] == "new"
    assert other["ui"]["sampler_lab_tuned_table"][0] != table

    # the tuned sampler refuses sigmas it was not fitted on
    with pytest.raises(ValueError, match="sigmas"):
        _custom(comfy, model, pos, neg, sampler, sigmas[1:])


def _table(comfy, sd15_model, cond, user_dir):
    pos, neg = cond
    return _tune(comfy, sd15_model, pos, neg)["ui"]["sampler_lab_tuned_table"][0]


def test_bad_tables_are_refused_naming_the_input(comfy, sd15_model, cond, user_dir):
    pos, neg = cond
    node = comfy.lab.LabTuneSampler
    good = _table(comfy, sd15_model, cond, user_dir)
    data = json.loads(good)
    corrupt = json.loads(good)
    corrupt["tuned"]["weights"][1] = [1.0]  # a row of the wrong length
    nan = json.loads(good)
    nan["tuned"]["sigmas"][2] = "NaN"
    foreign = {"format": "somebody.else", "key": data["key"], "tuned": data["tuned"]}
    inner_foreign = json.loads(good)
    inner_foreign["tuned"]["format"] = "k_diffusion"
    cases = {"{not json": "JSON", json.dumps(foreign): "format",
             json.dumps(corrupt): "weights", json.dumps(nan): "sigmas",
             json.dumps(inner_foreign): "format", "[1, 2]": "format"}
    for text, what in cases.items():
        msg = node.VALIDATE_INPUTS(tuned_table=text)
        assert isinstance(msg, str) and "tuned_table" in msg and what in msg, (text, msg)
        with pytest.raises(ValueError, match="tuned_table") as exc:
            _tune(comfy, sd15_model, pos, neg, tuned_table=text)
        assert what in str(exc.value)
    assert node.VALIDATE_INPUTS(tuned_table=good) is True
    assert node.VALIDATE_INPUTS(tuned_table="") is True


def test_cancel_leaves_no_cache_entry(comfy, sd15_model, cond, user_dir, monkeypatch):
    """The host's interrupt flag, raised while the fit runs, ends it with the
    host's own InterruptProcessingException and nothing written."""
    pos, neg = cond
    mm = comfy.model_management
    net = sd15_model.model.diffusion_model
    start = net.calls
    real_forward = type(net).forward

    def forward(self, *args, **kwargs):
        if self.calls - start == 5:
            mm.interrupt_current_processing(True)
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(type(net), "forward", forward)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            _tune(comfy, sd15_model, pos, neg)
    finally:
        mm.interrupt_current_processing(False)
    assert not mm.processing_interrupted()
    assert not user_dir.exists() or not list(user_dir.iterdir())
    assert net.calls - start < 40  # stopped early, not after the whole fit


def test_budget_and_nan_errors_name_the_input(comfy, sd15_model, cond, user_dir, monkeypatch):
    pos, neg = cond
    with pytest.raises(ValueError, match="calls"):
        _tune(comfy, sd15_model, pos, neg, calls=65)
    with pytest.raises(ValueError, match="max_evals"):
        _tune(comfy, sd15_model, pos, neg, max_evals=8)
    assert not user_dir.exists() or not list(user_dir.iterdir())
    net = sd15_model.model.diffusion_model
    real_forward = type(net).forward

    def forward(self, *args, **kwargs):
        return real_forward(self, *args, **kwargs) * float("nan")

    monkeypatch.setattr(type(net), "forward", forward)
    with pytest.raises(ValueError, match="model: .*NaN"):
        _tune(comfy, sd15_model, pos, neg)
    assert not user_dir.exists() or not list(user_dir.iterdir())


def test_declaration(comfy):
    node = comfy.lab.LabTuneSampler
    decl = node.INPUT_TYPES()
    assert list(decl["required"]) == ["model", "positive", "negative", "cfg", "latent_image",
                                      "calls", "max_evals", "calibration_seed"]
    assert list(decl["optional"]) == ["tuned_table"]
    assert node.RETURN_TYPES == ("SAMPLER", "SIGMAS")
    assert all("tooltip" in spec[1] for g in decl.values() for spec in g.values())
    assert comfy.lab.NODE_DISPLAY_NAME_MAPPINGS["SamplerLabTuneSampler"] == \
        "Sampler Lab Tune Sampler"


def _flow_cond():
    c = torch.zeros(1, 1, 4096)
    extra = {"pooled_output": torch.zeros(1, 2048)}
    return [[c, dict(extra)]], [[c.clone(), dict(extra)]]


def test_flow_fit_in_samplercustom_and_advanced(comfy, sd3_model, user_dir):
    """A flow model (the fixture skips on hosts without one): the fit starts at
    sigma 1, beats the core's best at the same calls on unseen seeds, and the
    same SAMPLER + SIGMAS run in SamplerCustomAdvanced."""
    pos, neg = _flow_cond()
    model = sd3_model
    result = _tune(comfy, model, pos, neg, channels=16)
    sampler, sigmas = result["result"]
    print("\n" + result["ui"]["sampler_lab_summary"][0])
    assert abs(float(sigmas[0]) - 1.0) < 1e-6 and float(sigmas[-1]) == 0.0
    assert len(sigmas) == CALLS + 1
    out = _custom(comfy, model, pos, neg, sampler, sigmas, channels=16)
    ours = _rmse(out, _exact(comfy, model, sigmas, channels=16))
    core, core_name = _core_best(comfy, model, pos, neg, CALLS, channels=16)
    print(f"tuned flow, {CALLS} calls: RMSE {ours:.3e}; core best {core_name}: {core:.3e}")
    assert ours <= core, (ours, core, core_name)
    extras = comfy.nodes_custom_sampler
    if not hasattr(extras, "SamplerCustomAdvanced"):
        pytest.skip("this host has no SamplerCustomAdvanced")

    def call(node, *args):
        fn = getattr(node, getattr(node, "FUNCTION", "execute"), None) or node.execute
        out = fn(*args)
        return out.result if hasattr(out, "result") else out

    noise = call(extras.RandomNoise(), 11)[0]
    guider = call(extras.CFGGuider(), model, pos, neg, 1.0)[0]
    latent = {"samples": torch.zeros(4, 16, 8, 8)}
    with torch.inference_mode():
        adv = call(extras.SamplerCustomAdvanced(), noise, guider, sampler, sigmas, latent)[0]
    torch.testing.assert_close(adv["samples"], out, rtol=1e-5, atol=1e-5)
