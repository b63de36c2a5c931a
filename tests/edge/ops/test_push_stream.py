"""edge.ops.push_stream's frames, read back by the agent's own frame format."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

from device_agent.manifest import build_manifest
from device_agent.protocol_core import PUSH_FRAME, Manifest
from edge.ops.push_stream import (
    FRAME_BUF,
    FRAME_BYTES,
    Piece,
    Spares,
    _send,
    eager_bytes,
    plan_header,
)
from edge.transport.base import SessionRefused


class _Collect:
    """A Stream that keeps what it is sent (as bytes: the view it gets is reused)."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.writes = 0

    def write(self, data: bytes | memoryview) -> None:
        self.sent += data
        self.writes += 1


def _frames(raw: bytes) -> list[tuple[int, int, bytes]]:
    out, pos = [], 0
    while pos < len(raw):
        index, offset, length = PUSH_FRAME.unpack_from(raw, pos)
        pos += PUSH_FRAME.size
        out.append((index, offset, raw[pos : pos + length]))
        pos += length
    return out


def test_a_piece_goes_as_frames_of_its_bytes(tmp_path: Path) -> None:
    data = os.urandom(3 * FRAME_BYTES + 777)
    (tmp_path / "blob").write_bytes(data)
    start, end = 1000, len(data) - 5
    out = _Collect()
    progress: list[int] = []
    piece = Piece(3, tmp_path / "blob", start, end)
    sent = _send(out, piece, progress.append)  # type: ignore[arg-type]
    frames = _frames(bytes(out.sent))
    assert sent == end - start == sum(progress) == sum(len(b) for _, _, b in frames)
    assert all(i == 3 for i, _, _ in frames) and len(frames) == out.writes == 3
    assert b"".join(b for _, _, b in frames) == data[start:end]
    assert [o for _, o, _ in frames] == [start, start + FRAME_BYTES, start + 2 * FRAME_BYTES]


def test_a_streams_frames_reuse_one_buffer(tmp_path: Path) -> None:
    """No new 1 MiB object and no header-plus-block copy per frame: a fan-out's client
    spent ~40% of its CPU on them."""
    (tmp_path / "blob").write_bytes(os.urandom(8 * FRAME_BYTES))
    buf = memoryview(bytearray(FRAME_BUF))
    piece = Piece(0, tmp_path / "blob", 0, 8 * FRAME_BYTES)

    class _Drop:
        def write(self, data: bytes | memoryview) -> None:
            pass

    tracemalloc.start()
    try:
        assert _send(_Drop(), piece, None, buf) == 8 * FRAME_BYTES  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 10


class _Opened:
    """A Stream that only knows whether it was aborted."""

    def __init__(self, argv: list[str]) -> None:
        self.argv, self.aborted = argv, False

    def abort(self) -> None:
        self.aborted = True


class _Transport:
    def __init__(self, refuse_after: int | None = None) -> None:
        self.opened: list[_Opened] = []
        self.refuse_after = refuse_after

    def open_stream(self, argv: list[str]) -> _Opened:
        if self.refuse_after is not None and len(self.opened) >= self.refuse_after:
            raise SessionRefused("d1")
        self.opened.append(_Opened(argv))
        return self.opened[-1]


class _Client:
    def __init__(self, transport: _Transport) -> None:
        self.transport = transport

    def argv(self, *args: str) -> list[str]:
        return ["agent", *args]


def test_spares_open_again_after_an_install_and_close_what_is_not_taken() -> None:
    transport = _Transport()
    spares = Spares(_Client(transport), 3)  # type: ignore[arg-type]
    spares.open()
    before = list(transport.opened)
    spares.open()  # the agent was installed meanwhile: the first ones found none
    assert len(transport.opened) == 6 and all(s.aborted for s in before)
    assert all(s.argv == ["agent", "push-receive"] for s in transport.opened)
    taken = spares.take()
    assert taken is transport.opened[5] and not taken.aborted
    spares.close(keep=1)  # the plan wants one more stream than the planning one
    assert [s.aborted for s in transport.opened[3:]] == [False, True, False]
    assert spares.take() is transport.opened[3] and spares.take() is None
    spares.close()
    assert not transport.opened[3].aborted  # taken streams are their taker's to end


def test_spares_stop_opening_where_sshd_refuses_a_session() -> None:
    transport = _Transport(refuse_after=2)
    spares = Spares(_Client(transport), 5)  # type: ignore[arg-type]
    spares.open()
    assert len(transport.opened) == 2
    assert spares.take() is not None and spares.take() is not None and spares.take() is None


def _manifest(tmp_path: Path, sizes: dict[str, int]) -> Manifest:
    src = tmp_path / "src"
    src.mkdir()
    for name, size in sizes.items():
        (src / name).write_bytes(os.urandom(size))
    return build_manifest(str(src), name="m")


def test_the_eager_bytes_are_the_head_of_the_largest_blob(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"a.pb": 5000, "variables.data": 90_000, "empty": 0})
    local = {e.sha256: tmp_path / "src" / e.path for e in manifest.entries}
    big = next(e for e in manifest.entries if e.path == "variables.data")
    sha, data = eager_bytes(manifest, local.__getitem__, 10_000) or ("", b"")
    assert sha == big.sha256 and data == local[sha].read_bytes()[:10_000]
    assert eager_bytes(manifest, local.__getitem__, 1 << 20) == (sha, local[sha].read_bytes())
    assert eager_bytes(manifest, local.__getitem__, 0) is None


def test_an_empty_payload_sends_nothing_eagerly(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"empty": 0})
    assert eager_bytes(manifest, lambda sha: tmp_path / "src" / "empty", 1 << 20) is None


def test_the_planning_header_names_its_eager_bytes(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, {"w.bin": 3000})
    raw = plan_header(manifest, 7, ("ab" * 32, b"\n\x00xyz"))
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # the bytes are the caller's tail
    header = json.loads(raw)
    assert header["eager"] == {"sha256": "ab" * 32, "bytes": 5}
    assert header["plan"] == {"ranged_min": 7}
    assert b"eager" not in plan_header(manifest, 7, None)
    assert b"eager" not in plan_header(manifest, 7, ("ab" * 32, b""))
