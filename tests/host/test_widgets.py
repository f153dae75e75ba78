"""What the web widget reads from the nodes and the server, in a real host:
FLOAT widgets show their default exactly (and the arrows come back to it);
the sampling nodes report the family, process and shift of the model they
ran; a checkpoint's family is read from its header alone; the Sigmas
Preview node plots any SIGMAS and passes them on; the routes answer."""
import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hostlib import comfy, cond, sd3_model, sd15_model  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")


def _float_widgets(comfy):
    for name, cls in comfy.lab.NODE_CLASS_MAPPINGS.items():
        for group in cls.INPUT_TYPES().values():
            for key, decl in group.items():
                if decl[0] == "FLOAT":
                    yield f"{name}.{key}", decl[1]


def test_float_defaults_are_shown_exactly_and_reached_by_the_arrows(comfy):
    """The frontend shows `precision` digits (old frontend: the option; the
    current one: digits of `step`), snaps values to `round` and steps by
    `step`: the default must be a multiple of the step and of the rounding,
    and shown without loss at that precision."""
    seen = 0
    for where, opts in _float_widgets(comfy):
        default, step = float(opts["default"]), float(opts["step"])
        digits = max(0, -math.floor(math.log10(step) + 1e-12))  # the current frontend's
        precision = opts.get("precision", digits)
        assert precision >= digits, where
        k = default / step
        assert abs(k - round(k)) < 1e-6, f"{where}: default {default} is not a multiple of step {step}"
        assert round(default, precision) == default, f"{where}: {default} shown at {precision} digits"
        assert round(default, digits) == default, f"{where}: {default} at the step's {digits} digits"
        if "round" in opts:
            r = default / float(opts["round"])
            assert abs(r - round(r)) < 1e-6, f"{where}: default {default} off the rounding grid"
        seen += 1
    assert seen > 15
    eps = dict(_float_widgets(comfy))["SamplerLabScheduler.vp_eps_s"]
    assert eps["default"] == 1e-3 and eps["step"] == 1e-3 and eps["precision"] == 3


def test_sigmas_preview_node_passes_sigmas_on_and_reports_them(comfy):
    cls = comfy.lab.NODE_CLASS_MAPPINGS["SamplerLabSigmasPreview"]
    assert cls.OUTPUT_NODE and cls.RETURN_TYPES == ("SIGMAS",)
    sigmas = torch.tensor([9.0, 3.5, 0.75, 0.0])
    result = cls().preview(sigmas)
    assert result["result"][0] is sigmas
    assert result["ui"]["sampler_lab_sigmas"] == [9.0, 3.5, 0.75, 0.0]


def test_sampling_nodes_report_the_model_they_ran(comfy, sd15_model, cond):
    pos, neg = cond
    with torch.inference_mode():
        result = comfy.lab.LabKSampler().sample(
            sd15_model, seed=1, steps=3, cfg=1.0, sampler_name="euler", scheduler="karras",
            positive=pos, negative=neg, latent_image={"samples": torch.zeros(1, 4, 8, 8)})
    [model] = result["ui"]["sampler_lab_model"]
    assert model["family"] == "sd15" and model["process"] == "ve" and model["shift"] is None
    ms = sd15_model.model.model_sampling
    assert model["sigma_max"] == pytest.approx(float(ms.sigma_max))
    json.dumps(result["ui"])  # what the server sends
    sched = comfy.lab.LabScheduler().get_sigmas(sd15_model, "karras", 4, 1.0)
    assert sched["ui"]["sampler_lab_model"][0]["family"] == "sd15"


@pytest.mark.parametrize("shift", [3.0, 1.7])
def test_flow_model_reports_flow_and_its_shift(comfy, sd3_model, shift):
    from sampler_lab.nodes import host
    patched = sd3_model
    if shift != 3.0:  # the host's own ModelSamplingSD3 node sets it
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3
        patched = ModelSamplingSD3().patch(sd3_model, shift)[0]
    found = host.model_family(patched)
    assert found["family"] == "flow" and found["process"] == "flow"
    assert found["shift"] == pytest.approx(shift, rel=1e-5)
    # the SD3 form the preview draws: sigma(t) = s t / (1 + (s - 1) t)
    ms = host.model_sampling(patched)
    for t in (0.2, 0.7):
        want = shift * t / (1 + (shift - 1) * t)
        assert float(ms.percent_to_sigma(1 - t)) == pytest.approx(want, rel=1e-5)


@pytest.fixture(scope="module")
def header_models(comfy, tmp_path_factory):
    out = tmp_path_factory.mktemp("header_models")
    run = subprocess.run([sys.executable, str(ROOT / "tests" / "header_models.py"),
                          str(comfy.host_dir), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    names = json.loads(run.stdout.strip().splitlines()[-1])
    return {k: out / v for k, v in names.items()}


def test_checkpoint_family_from_the_header_alone(comfy, header_models):
    from sampler_lab.nodes import host
    sd15 = header_models["sd15"]
    assert sd15.stat().st_blocks * 512 < 10 ** 7 < sd15.stat().st_size  # a sparse file
    found = host.checkpoint_family(str(sd15))
    assert found["family"] == "sd15" and found["process"] == "ve" and found["model"] == "SD15"
    assert found["sigma_max"] == pytest.approx(14.6146, rel=1e-4)
    if "sd3" not in header_models:
        pytest.skip("this host has no flow models")
    found = host.checkpoint_family(str(header_models["sd3"]))
    assert found["family"] == "flow" and found["shift"] == pytest.approx(3.0)
    # not a model the host knows: None, no exception
    odd = header_models["sd15"].parent / "odd.safetensors"
    from header_models import write_header_only
    write_header_only(odd, {"foo.weight": torch.empty(3, 4, device="meta")})
    assert host.checkpoint_family(str(odd)) is None


def _fetch(paths):
    import server
    from aiohttp.test_utils import TestClient, TestServer

    from sampler_lab.nodes import routes

    async def go():
        ps = server.PromptServer(asyncio.get_running_loop())
        routes.register(ps)
        ps.add_routes()
        out = []
        async with TestClient(TestServer(ps.app)) as client:
            for p in paths:
                r = await client.get(p)
                out.append((r.status, await r.json()))
        return out
    return asyncio.run(go())


def test_routes_noise_fraction_info_and_model(comfy, header_models, monkeypatch):
    import folder_paths

    from sampler_lab import samplers
    from sampler_lab.schedules.widget_info import widget_info
    real = folder_paths.get_full_path
    monkeypatch.setattr(folder_paths, "get_full_path", lambda folder, name: (
        str(header_models["sd15"]) if name == "mine.safetensors" else real(folder, name)))
    results = _fetch([
        "/sampler_lab/sigmas?scheduler=karras&steps=8&sampler=dpmpp_2m_sde&eta=0.5&s_noise=1",
        "/sampler_lab/sigmas?scheduler=karras&steps=8&sampler=nope&soft=1",
        "/sampler_lab/info",
        "/sampler_lab/model?ckpt_name=mine.safetensors",
        "/sampler_lab/model?ckpt_name=absent.safetensors",
        "/sampler_lab/model?ckpt_name=absent.safetensors&soft=1",
    ])
    (s1, b1), (s2, b2), (s3, b3), (s4, b4), (s5, b5), (s6, b6) = results
    assert s1 == 200
    want = samplers.noise_fractions("dpmpp_2m_sde", b1["sigmas"], eta=0.5)
    assert b1["noise_fraction"] == pytest.approx(want, rel=1e-12)
    assert s2 == 200 and "unknown sampler" in b2["error"]
    assert s3 == 200 and b3 == json.loads(json.dumps(widget_info()))
    assert s4 == 200 and b4["family"] == "sd15" and b4["source"] == "ckpt_name: mine.safetensors"
    assert s5 == 404 and "absent" in b5["error"]
    assert s6 == 200 and b6 == b5


def test_sampling_node_family_runs_the_hosts_own_node(comfy, header_models, monkeypatch):
    import comfy_extras.nodes_model_advanced as advanced
    import nodes

    from sampler_lab.nodes import host
    # the server loads these extra nodes at start; in-process we add them
    for name, cls in advanced.NODE_CLASS_MAPPINGS.items():
        monkeypatch.setitem(nodes.NODE_CLASS_MAPPINGS, name, cls)
    found = host.sampling_node_family("ModelSamplingDiscrete", {"sampling": "eps", "zsnr": "false"})
    assert found["family"] == "sd15" and found["process"] == "ve"
    with pytest.raises(ValueError, match="ModelSampling"):
        host.sampling_node_family("KSampler", {})
    with pytest.raises(ValueError, match="sampling"):
        host.sampling_node_family("ModelSamplingDiscrete", {"sampling": "nope"})
    if "ModelSamplingFlux" not in nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this host has no flow-model nodes")
    found = host.sampling_node_family("ModelSamplingSD3", {"shift": "5"},
                                      str(header_models["sd3"]))
    assert found["family"] == "flow" and found["shift"] == pytest.approx(5.0)
    assert found["model"] == "SD3"
    # Flux: mu grows linearly with the image tokens, from base_shift at 256 to
    # max_shift at 4096 (1024 x 1024); sigma(t) is the SD3 form with shift e^mu
    found = host.sampling_node_family("ModelSamplingFlux", {
        "max_shift": "1.15", "base_shift": "0.5", "width": "1024", "height": "1024"})
    assert found["shift"] == pytest.approx(math.exp(1.15), rel=1e-5)
    found = host.sampling_node_family("ModelSamplingFlux", {
        "max_shift": "1.15", "base_shift": "0.5", "width": "256", "height": "256"})
    assert found["shift"] == pytest.approx(math.exp(0.5), rel=1e-5)


def test_optimize_reports_its_outcome(comfy, sd15_model, cond, tmp_path, monkeypatch):
    import folder_paths
    if hasattr(folder_paths, "get_user_directory"):
        monkeypatch.setattr(folder_paths, "get_user_directory", lambda: str(tmp_path))
    monkeypatch.setattr(folder_paths, "user_directory", str(tmp_path), raising=False)
    pos, neg = cond
    args = dict(sampler_name="dpmpp_2m", steps=4, cfg=1.0, calibration_seed=5, budget_calls=300)
    node = comfy.lab.LabOptimizeSchedule()
    with torch.inference_mode():
        new = node.optimize(sd15_model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, **args)
        again = node.optimize(sd15_model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, **args)
    [first], [second] = new["ui"]["sampler_lab_outcome"], again["ui"]["sampler_lab_outcome"]
    assert first["cached"] is False and second["cached"] is True
    assert 0 < first["calls"] <= 300 and first["budget_calls"] == 300
    assert first["error_after"] <= first["error_before"]
    for key in ("calls", "error_before", "error_after", "start"):
        assert second[key] == first[key]
    assert new["ui"]["sampler_lab_model"][0]["family"] == "sd15"
    json.dumps(new["ui"])
