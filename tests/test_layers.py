"""The package's floors, read from the source (ast, nothing imported):
the ground floor (sigma_tables.py, params.py) imports no part of the
package; samplers/ imports neither schedules/ nor anything above it;
schedules/ and tuning/ import nothing of nodes/ or bench/; and of the
package's own code only nodes/host*.py imports the host (comfy and its
top-level modules). A new arrow upward, or a host import outside the
adapter, fails here with the file and line."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("samplers", "schedules", "tuning", "nodes", "bench")
HOST_MODULES = ("comfy", "comfy_extras", "comfy_execution", "folder_paths", "latent_preview",
                "execution", "model_management")
# what each floor must not import (package-relative top names)
FORBIDDEN = {
    "sigma_tables.py": set(PACKAGES) | {"params"},
    "params.py": set(PACKAGES) | {"sigma_tables"},
    "samplers": {"schedules", "tuning", "nodes", "bench"},
    "schedules": {"tuning", "nodes", "bench"},
    "tuning": {"nodes", "bench"},
}


def _imports(path, root=ROOT):
    """(line, top name inside the package or None, absolute top name or None)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    depth = len(path.relative_to(root).parts) - 1  # 0 for the root's own files
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, None, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.lineno, None, (node.module or "").split(".")[0]
            elif node.level > depth:  # reaches the package root: ..x, or .x from the root
                if node.module:
                    yield node.lineno, node.module.split(".")[0], None
                else:
                    for alias in node.names:
                        yield node.lineno, alias.name, None
            elif node.level == depth and depth > 0 and node.module is None:
                continue  # "from . import x": the same package
            elif node.level == depth and depth == 0:
                yield node.lineno, (node.module or "").split(".")[0], None


def _files(floor):
    path = ROOT / floor
    return [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


@pytest.mark.parametrize("floor", sorted(FORBIDDEN))
def test_no_import_runs_upward(floor):
    files = _files(floor)
    assert files, f"{floor} has no source"
    bad = [f"{f.relative_to(ROOT)}:{line} imports {inner}"
           for f in files for line, inner, _ in _imports(f) if inner in FORBIDDEN[floor]]
    assert not bad, "\n".join(bad)


def test_only_the_host_adapter_imports_the_host():
    files = [f for floor in ("sigma_tables.py", "params.py", "__init__.py", "__main__.py",
                             "samplers", "schedules", "tuning", "nodes") for f in _files(floor)]
    bad = [f"{f.relative_to(ROOT)}:{line} imports {outer}"
           for f in files if not (f.parent.name == "nodes" and f.name.startswith("host"))
           for line, _, outer in _imports(f) if outer in HOST_MODULES]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The parser itself: a relative import two levels up from samplers/ is
    read as the package's schedules, an absolute one as itself."""
    fake = tmp_path / "samplers" / "probe.py"
    fake.parent.mkdir()
    fake.write_text("from ..schedules import get_sigmas\nimport comfy.samplers\n"
                    "from . import core\n")
    found = list(_imports(fake, root=tmp_path))
    assert len(found) == 2 and (1, "schedules", None) in found and (2, None, "comfy") in found
