"""The deep probe's cache: a second `info --deep` skips TensorFlow while the stack is the
same, and probes afresh when something is installed, or the cache is damaged."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from device_agent.deep_cache import Deep, cached_deep, stack_key
from device_agent.trt_types import BackendCheck, Capabilities
from edge.agent.package import build_zipapp


def _probe(calls: list[int]) -> Callable[[], Deep]:
    def probe() -> Deep:
        calls.append(1)
        return (
            True,
            "8.5.2",
            "8.5.2",
            Capabilities(tensorrt="8.5.2.2", backends=[BackendCheck("tftrt", True, "ok")]),
        )

    return probe


def test_the_answer_is_kept_until_the_stack_changes(tmp_path: Path) -> None:
    calls: list[int] = []
    installed = {"tensorflow": "2.12.0"}
    first = cached_deep(str(tmp_path), installed, _probe(calls))
    again = cached_deep(str(tmp_path), installed, _probe(calls))
    assert again == first and len(calls) == 1
    cached_deep(str(tmp_path), {**installed, "tensorrt": "8.5.2.2"}, _probe(calls))
    assert len(calls) == 2  # a new distribution: a fresh probe
    assert stack_key(installed) != stack_key({"tensorflow": "2.13.0"})


def test_a_damaged_cache_means_a_fresh_probe(tmp_path: Path) -> None:
    calls: list[int] = []
    cached_deep(str(tmp_path), {}, _probe(calls))
    path = tmp_path / "cache" / "deep-probe.json"
    for bad in ("{not json", json.dumps({"key": stack_key({}), "tensorrt": [1, 2]}), "[]"):
        path.write_text(bad)
        got = cached_deep(str(tmp_path), {}, _probe(calls))
        assert got[0] is True and got[3].tensorrt == "8.5.2.2"
    assert len(calls) == 4
    assert json.loads(path.read_text())["key"] == stack_key({})


def test_a_second_deep_info_imports_no_tensorflow(tmp_path: Path, device_python: Path) -> None:
    """A real agent on a Python with TensorFlow: the first `info --deep` imports it, the
    second answers the same from the cache without importing it."""
    pyz = build_zipapp(tmp_path / "agent")
    root = tmp_path / "root"
    out = []
    for _ in range(2):
        proc = subprocess.run(
            [str(device_python), "-I", "-X", "importtime", str(pyz), "--root", str(root),
             "info", "--deep"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        facts = json.loads(proc.stdout)
        imported = "| tensorflow\n" in proc.stderr or proc.stderr.rstrip().endswith("| tensorflow")
        out.append((facts["capabilities"], facts["tensorrt_enabled"], imported))
    assert out[0][2] and not out[1][2]  # TensorFlow imported the first time only
    assert out[0][:2] == out[1][:2]
