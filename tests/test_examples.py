"""The example workflows as the frontend's Templates dialog shows them: a
readable title (the file name), a thumbnail beside each (<name>.jpg, the
file the frontend asks for), current model families (SDXL, a flow model
through ModelSamplingSD3/Flux, the optimizer), and nodes laid out without
overlaps, with room below the nodes that grow (our nodes grow with the
options of the chosen sampler or schedule and with the plot after a run;
SaveImage with the image)."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "example_workflows"
WORKFLOWS = sorted(FOLDER.glob("*.json"))
TITLE_HEIGHT = 30  # the frontend draws a node's title above its pos
GROWS = 600        # room kept below a growing node in its column


def _boxes(workflow):
    out = []
    for n in workflow["nodes"]:
        x, y = n["pos"]
        w, h = n["size"]
        grows = n["type"].startswith("SamplerLab") or n["type"] == "SaveImage"
        out.append((n["id"], n["type"], x, y - TITLE_HEIGHT, x + w, y + h + (GROWS if grows else 0)))
    return out


def test_the_examples_cover_current_families():
    types = {p.name: {n["type"] for n in json.loads(p.read_text())["nodes"]} for p in WORKFLOWS}
    names = " ".join(types)
    assert "SDXL" in names and "flow" in names
    assert any({"ModelSamplingSD3", "ModelSamplingFlux"} & t for t in types.values())
    assert any("SamplerLabOptimizeSchedule" in t for t in types.values())
    assert all(any(x.startswith("SamplerLab") for x in t) for t in types.values())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_has_a_title_and_a_thumbnail(path):
    assert " " in path.stem and "_" not in path.stem  # the title the dialog shows
    thumb = path.with_suffix(".jpg")
    assert thumb.is_file(), f"the frontend asks for {thumb.name}"
    data = thumb.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and 5_000 < len(data) < 300_000  # a JPEG, small


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_example_nodes_do_not_overlap(path):
    boxes = _boxes(json.loads(path.read_text()))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            apart = a[4] <= b[2] or b[4] <= a[2] or a[5] <= b[3] or b[5] <= a[3]
            assert apart, f"{a[1]} (id {a[0]}) and {b[1]} (id {b[0]}) overlap (growth included)"
