"""Sampler Lab Tune Sampler end to end in a real ComfyUI server, from a saved
workflow (tests/host/data/tune_sampler_workflow.json: a model -> Tune
Sampler -> the core SamplerCustom -> SaveLatent), converted to a prompt with
the server's own /object_info and queued over HTTP as the frontend does.

The model is the suite's exact Gaussian denoiser inside a real BaseModel
(tests/host/server_kit, loaded as a second custom node package, eps on every
host and flow on the newest), since the header-only checkpoints have no
weights to sample with. Then, as web/tune_table.js does after a run, the
fitted table from the node's output is written into the workflow's
tuned_table widget, the user folder's cache is deleted, and the workflow is
queued again: the model is called only by SamplerCustom (no calibration)
and the saved latent is the same.

What this does not do: drive the browser (tests/host/test_browser.py does
that for the other nodes); the JS that fills the widget is exercised only
by its effect, reproduced here."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from test_browser import _free_port, _server_command, _wait_for, server_work

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKFLOW = HERE / "data" / "tune_sampler_workflow.json"
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")


@pytest.fixture(scope="module")
def server():
    kind, host_dir, work = server_work("sampler_lab_tune_server_")
    (work / "custom_nodes" / "sampler_lab_test_kit").symlink_to(HERE / "server_kit",
                                                                 target_is_directory=True)
    calls = work / "model_calls.txt"
    port = _free_port()
    log = work / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", SAMPLER_LAB_TEST_CALLS=str(calls),
               SAMPLER_LAB_TEST_USER_DIR=str(work / "user"),
               SAMPLER_LAB_TEST_SLOW_FILE=str(work / "slow"),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with open(log, "w") as out:
        proc = subprocess.Popen(_server_command(kind, host_dir, work, port), cwd=work / "run",
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        info = _wait_for(f"{base}/object_info", proc, log)
        for name in ("SamplerLabTuneSampler", "SamplerLabTestGaussian", "SamplerCustom",
                     "SaveLatent"):
            assert name in info, f"{name} missing:\n{log.read_text()[-4000:]}"
        yield type("Server", (), {"url": base, "kind": kind, "log": log, "work": work,
                                  "info": info, "calls": calls, "proc": proc})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def to_api(workflow, info):
    """The frontend's conversion of a saved workflow to a prompt, from the
    server's declarations: widget values in declaration order (a seed's
    control value after it), links as [node id, output slot]."""
    links = {l[0]: l for l in workflow["links"]}
    prompt = {}
    for n in workflow["nodes"]:
        decl = info[n["type"]]["input"]
        linked = {i["name"]: i["link"] for i in n.get("inputs", []) if i.get("link") is not None}
        values = list(n.get("widgets_values") or [])
        inputs = {}
        for group in ("required", "optional"):
            for name, spec in decl.get(group, {}).items():
                is_widget = isinstance(spec[0], list) or spec[0] in WIDGET_TYPES or \
                    spec[0] == "COMBO"
                if name in linked:
                    l = links[linked[name]]
                    inputs[name] = [str(l[1]), l[2]]
                elif is_widget and values:
                    inputs[name] = values.pop(0)
                    if values and isinstance(values[0], str) and values[0] in CONTROL_VALUES \
                            and name in ("seed", "noise_seed"):
                        values.pop(0)
        assert not values, f"{n['type']}: {values} left over"
        prompt[str(n["id"])] = {"class_type": n["type"], "inputs": inputs}
    return prompt


def _post(server, route, body):
    req = urllib.request.Request(server.url + route, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _get(server, route):
    with urllib.request.urlopen(server.url + route, timeout=30) as r:
        return json.loads(r.read())


def _queue(server, workflow, timeout=600):
    """Queue the workflow; wait for its history entry -> (outputs, status)."""
    prompt = to_api(workflow, server.info)
    answer = _post(server, "/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4()),
                                       "extra_data": {"extra_pnginfo": {"workflow": workflow}}})
    assert not answer.get("node_errors"), answer
    pid = answer["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        hist = _get(server, f"/history/{pid}")
        if pid in hist and (hist[pid].get("status", {}).get("completed") or
                            hist[pid].get("status", {}).get("status_str") == "error" or
                            hist[pid].get("outputs")):
            entry = hist[pid]
            status = entry.get("status", {})
            assert status.get("status_str", "success") == "success", \
                (status, server.log.read_text()[-4000:])
            return entry["outputs"], status
        if server.proc.poll() is not None:
            raise AssertionError(server.log.read_text()[-4000:])
        time.sleep(0.5)
    raise AssertionError(f"no result in {timeout} s:\n{server.log.read_text()[-4000:]}")


def _calls(server):
    if not server.calls.exists():
        return 0
    return sum(int(line) for line in server.calls.read_text().split())


def _latest_latent(server, prefix):
    import safetensors.torch
    files = sorted((server.work / "output").rglob(f"{prefix}*.latent"),
                   key=lambda p: p.stat().st_mtime)
    assert files, list((server.work / "output").rglob("*"))
    return safetensors.torch.load_file(str(files[-1]))["latent_tensor"]


def _cache_files(server):
    return [p for p in server.work.rglob("*.json") if p.parent.name == "tuned"
            and p.parent.parent.name == "sampler_lab"]


@pytest.mark.parametrize("kind", ["eps", "flow"])
def test_saved_workflow_runs_then_reproduces_from_the_embedded_table(server, kind):
    if kind == "flow" and server.kind != "newest":
        pytest.skip("flow models need the newest host (COMFYUI_DIR)")
    import torch
    workflow = json.loads(WORKFLOW.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    nodes[1]["widgets_values"] = [kind]
    nodes[5]["widgets_values"] = [f"latents/tuned_{kind}_a"]

    before = _calls(server)
    outputs, _ = _queue(server, workflow)
    first_calls = _calls(server) - before
    ui = outputs["3"]
    outcome = ui["sampler_lab_outcome"][0]
    assert outcome["source"] == "new" and outcome["calls_per_image"] == 6
    assert len(outcome["ranking"]) == 3
    assert len(ui["sampler_lab_sigmas"]) == 7
    table = ui["sampler_lab_tuned_table"][0]
    # the fit (its own evaluations) and SamplerCustom's 6 calls on the batch of 4
    assert first_calls == outcome["calls"] + 6 * 4, (first_calls, outcome["calls"])
    latent_a = _latest_latent(server, f"tuned_{kind}_a")
    assert latent_a.shape[0] == 4 and bool(torch.isfinite(latent_a).all())
    assert len(_cache_files(server)) >= 1

    # what web/tune_table.js does after the run, then a machine without the cache
    nodes[3]["widgets_values"][4] = table
    nodes[5]["widgets_values"] = [f"latents/tuned_{kind}_b"]
    for path in _cache_files(server):
        path.unlink()
    before = _calls(server)
    outputs, _ = _queue(server, workflow)
    assert outputs["3"]["sampler_lab_outcome"][0]["source"] == "workflow"
    assert _calls(server) - before == 6 * 4  # SamplerCustom only: no calibration
    assert not _cache_files(server)
    latent_b = _latest_latent(server, f"tuned_{kind}_b")
    assert torch.equal(latent_a, latent_b)

    # a corrupt embedded table is refused at validation, naming the widget
    nodes[3]["widgets_values"][4] = table[:-20]
    prompt = to_api(workflow, server.info)
    req = urllib.request.Request(server.url + "/prompt", data=json.dumps(
        {"prompt": prompt, "client_id": "x"}).encode(), headers={"Content-Type":
                                                                   "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    assert "tuned_table" in json.dumps(body.get("node_errors", body)), body


BROWSER_DIR = ROOT / "tests" / "browser"


def test_cancel_from_the_server_leaves_nothing(server):
    """POST /interrupt (the frontend's Cancel) while the fit runs: the prompt
    ends interrupted, no cache entry is written; the same prompt afterwards
    fits from scratch and succeeds."""
    workflow = json.loads(WORKFLOW.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    nodes[3]["widgets_values"][3] = 7  # a key no other test fits
    nodes[5]["widgets_values"] = ["latents/cancelled"]
    for path in _cache_files(server):
        path.unlink()
    slow = server.work / "slow"
    slow.write_text("1")
    try:
        start = _calls(server)
        answer = _post(server, "/prompt", {"prompt": to_api(workflow, server.info),
                                           "client_id": "cancel"})
        pid = answer["prompt_id"]
        deadline = time.time() + 120
        while _calls(server) - start < 40:  # the fit is under way
            assert time.time() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.1)
        req = urllib.request.Request(server.url + "/interrupt", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=30).read()
        while True:
            hist = _get(server, f"/history/{pid}")
            if pid in hist:
                break
            assert time.time() < deadline, server.log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        slow.unlink()
    status = hist[pid]["status"]
    events = [m[0] for m in status.get("messages", [])]
    assert status["status_str"] == "error" and "execution_interrupted" in events, status
    assert "3" not in hist[pid].get("outputs", {})
    assert not _cache_files(server)
    assert _calls(server) - start < 400  # stopped midway (the fit takes ~480)
    outputs, _ = _queue(server, workflow)
    assert outputs["3"]["sampler_lab_outcome"][0]["source"] == "new"
    assert len(_cache_files(server)) == 1


@pytest.mark.parametrize("renderer", ["classic", "vue"])
def test_frontend_keeps_the_table_in_the_saved_workflow(server, renderer):
    """The real frontend (headless Chromium): the tuned_table widget is
    hidden, a run from the browser writes the fit into it (web/tune_table.js)
    and the outcome line shows the ranking; the workflow the frontend then
    saves, queued on a server without the cache, reproduces the latent with
    no calibration."""
    from test_browser import CHROMIUM, _browser_ready
    import torch
    missing = _browser_ready()
    if missing:
        pytest.skip(missing)
    if renderer == "vue" and server.kind != "newest":
        pytest.skip("Vue nodes are a feature of the newest frontend")
    workflow = json.loads(WORKFLOW.read_text())
    nodes = {n["id"]: n for n in workflow["nodes"]}
    nodes[5]["widgets_values"] = [f"latents/browser_{renderer}_a"]
    nodes[3]["widgets_values"][3] = 5 if renderer == "classic" else 6  # a fresh key
    profile = Path(tempfile.mkdtemp(prefix="sampler_lab_chromium_"))
    env = dict(os.environ, COMFY_URL=server.url, CHROMIUM=CHROMIUM, PROFILE=str(profile),
               WORKFLOW=json.dumps(workflow), RENDERER=renderer,
               SHOT=os.environ.get("SAMPLER_LAB_TUNE_SHOT_DIR", "") and
               str(Path(os.environ["SAMPLER_LAB_TUNE_SHOT_DIR"]) / f"tune_{renderer}.png"))
    try:
        run = subprocess.run(["node", str(BROWSER_DIR / "tune_table.spec.mjs")],
                             cwd=BROWSER_DIR, env=env, text=True, capture_output=True,
                             timeout=500)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no report (rc {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    r = json.loads(lines[-1])
    if not r["ok"]:
        print(json.dumps({k: r.get(k) for k in ("error", "our_console_errors")}, indent=1))
    assert r["ok"], (r.get("error"), r["our_console_errors"], r["other_console_errors"][:5],
                     server.log.read_text()[-3000:])
    print(f"\n{renderer} ({r['frontend']}): hidden {r['before']['hidden']} "
          f"(height {r['before']['height']}); head: {r['after']['head']}")
    assert not r["our_console_errors"], r["our_console_errors"]
    assert r["before"]["value"] == "" and r["before"]["hidden"]
    table = json.loads(r["after"]["value"])
    assert table["format"] == "sampler_lab.tune_sampler.workflow"
    if r["after"]["head"] is not None:  # the outcome line (schedule_preview.js)
        assert "top:" in r["after"]["head"]
    saved = r["saved"]
    tune = next(n for n in saved["nodes"] if n["type"] == "SamplerLabTuneSampler")
    assert r["after"]["value"] in tune["widgets_values"]
    latent_a = _latest_latent(server, f"browser_{renderer}_a")

    for path in _cache_files(server):
        path.unlink()
    save = next(n for n in saved["nodes"] if n["type"] == "SaveLatent")
    save["widgets_values"] = [f"latents/browser_{renderer}_b"]
    before = _calls(server)
    outputs, _ = _queue(server, saved)
    assert outputs[str(tune["id"])]["sampler_lab_outcome"][0]["source"] == "workflow"
    assert _calls(server) - before == 6 * 4
    assert torch.equal(latent_a, _latest_latent(server, f"browser_{renderer}_b"))
