"""Smoke test of the overhead benchmark: it runs end to end on the smallest
settings and its table has the expected rows, columns and numbers. No timing
assertions: speed is shown by the benchmark, not by tests."""
import math

import pytest

from conftest import import_host_kdiffusion


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_overhead_smoke(tmp_path, capsys):
    import_host_kdiffusion()  # skips where the PyPI host is missing
    from sampler_lab.bench import overhead

    out = tmp_path / "overhead.md"
    text, rows, mem_rows = overhead.main([
        "--shapes", "1x4x8x8", "--steps", "3", "--repeat", "1",
        "--samplers", "euler,dpmpp_2m_sde", "--out", str(out)])
    assert out.read_text() == text
    assert text in capsys.readouterr().out

    lines = text.splitlines()
    head = lines.index(next(l for l in lines if l.startswith("| sampler | shape |")))
    assert _cells(lines[head]) == ["sampler", "shape", "ours µs/step", "host µs/step",
                                   "ours/host", "rel. Δ"]
    body = lines[head + 2:head + 4]
    assert [(_cells(l)[0], _cells(l)[1]) for l in body] == [
        ("euler", "1x4x8x8"), ("dpmpp_2m_sde", "1x4x8x8")]
    for line in body:
        ours, host, ratio, delta = (float(c) for c in _cells(line)[2:6])
        for v in (ours, host, ratio):
            assert math.isfinite(v) and v > 0
        assert 0 <= delta < 1e-3  # both sides ran the same algorithm
    assert lines[head + 4] == ""  # exactly two rows

    assert [r["sampler"] for r in rows] == ["euler", "dpmpp_2m_sde"]
    for r in rows:
        assert r["ratio"] == pytest.approx(r["ours_us"] / r["host_us"])

    mem_head = lines.index("| sampler | buffers ours | buffers host |")
    mem_body = lines[mem_head + 2:mem_head + 4]
    assert [_cells(l)[0] for l in mem_body] == ["euler", "dpmpp_2m_sde"]
    for line in mem_body:
        for v in (float(c) for c in _cells(line)[1:3]):
            assert math.isfinite(v) and v >= 1  # at least the model's input
