"""A hostile saved_model.pb costs the protobuf reader bounded memory and time."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from device_agent.errors import AgentError
from device_agent.savedmodel_meta import read_signatures


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _bounded(tmp_path: Path, data: bytes, match: str) -> None:
    (tmp_path / "saved_model.pb").write_bytes(data)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AgentError, match=match) as err:
            read_signatures(str(tmp_path))
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "saved_model.pb" in err.value.message and err.value.hint
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB for a {len(data) / 2**20:.1f} MiB file"
    assert elapsed < 10, f"{elapsed:.1f}s"


def test_deeply_nested_groups_are_refused(tmp_path: Path) -> None:
    n = 1_000_000  # well-formed: every group is closed, innermost first
    _bounded(tmp_path, _tag(90, 3) * n + _tag(90, 4) * n, "nested deeper than 100")


def test_nested_groups_inside_a_meta_graph_are_refused(tmp_path: Path) -> None:
    n = 100_000
    meta_graph = _len(1, _len(4, b"serve")) + _tag(90, 3) * n + _tag(90, 4) * n
    _bounded(tmp_path, _len(2, meta_graph), "nested deeper than 100")


def test_millions_of_tiny_entries_are_refused(tmp_path: Path) -> None:
    # 2 bytes per empty signature_def entry: 2M of them would be ~2M kept tuples
    entries = _len(5, b"") * 2_000_000
    _bounded(tmp_path, _len(2, _len(1, _len(4, b"serve")) + entries), "more than")


def test_shallow_groups_still_parse(tmp_path: Path) -> None:
    group = _tag(90, 3) * 100 + _tag(1, 0) + _varint(7) + _tag(90, 4) * 100
    sig = _len(1, _len(1, b"x") + _len(2, _len(1, b"x:0") + _tag(2, 0) + _varint(1)))
    meta_graph = _len(1, _len(4, b"serve")) + group + _len(5, _len(1, b"s") + _len(2, sig))
    (tmp_path / "saved_model.pb").write_bytes(_len(2, meta_graph))
    sigs = read_signatures(str(tmp_path))
    assert [(t.name, t.dtype) for t in sigs["s"].inputs] == [("x", "float32")]
