"""`push-receive`'s commit-when-whole frame: the push's first stream, its own pieces sent,
commits as soon as the other streams' range records say the device has every byte, with
no word from the host; more frames or the end of input still work as before."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from device_agent.errors import AgentError
from device_agent.manifest import build_manifest
from device_agent.protocol_core import PUSH_COMMIT_INDEX, PUSH_FRAME, PUSH_WHOLE_OFFSET, Manifest
from device_agent.receive import receive
from device_agent.store import RANGES_SUFFIX, BlobStore

SIZE = 400_000
WHOLE = PUSH_FRAME.pack(PUSH_COMMIT_INDEX, PUSH_WHOLE_OFFSET, 0)
COMMIT = PUSH_FRAME.pack(PUSH_COMMIT_INDEX, 0, 0)


def _model(tmp_path: Path) -> Tuple[Manifest, Dict[str, bytes]]:
    src = tmp_path / "src"
    src.mkdir()
    big = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE // 32))
    (src / "weights.bin").write_bytes(big)
    (src / "saved_model.pb").write_bytes(b"graph" * 100)
    manifest = build_manifest(str(src), name="m")
    return manifest, {e.sha256: (src / e.path).read_bytes() for e in manifest.entries}


def _frames(index: int, data: bytes, start: int, end: int, step: int = 65536) -> bytes:
    return b"".join(
        PUSH_FRAME.pack(index, o, min(step, end - o)) + data[o : min(o + step, end)]
        for o in range(start, end, step)
    )


class _Push:
    """A push of the model in two streams: the planning one through a real pipe (as sshd
    gives it), whose write end the test keeps open, and a spare one."""

    def __init__(self, tmp_path: Path) -> None:
        self.manifest, self.blobs = _model(tmp_path)
        self.root = str(tmp_path / "root")
        missing = BlobStore(self.root).plan(self.manifest, 1000).missing
        self.order = [need.sha256 for need in missing]
        self.big = next(s for s, b in self.blobs.items() if len(b) == SIZE)
        self.small = next(s for s in self.blobs if s != self.big)
        read, self.w = os.pipe()
        fcntl.fcntl(self.w, 1031, 1 << 20)  # F_SETPIPE_SZ: the test writes before it reads
        self.inp = os.fdopen(read, "rb")
        self.said: List[Dict[str, Any]] = []
        self.got: List[Any] = []
        header = {"manifest": self.manifest.to_dict(), "plan": {"ranged_min": 1000}}
        self.write(json.dumps(header).encode() + b"\n" + b'{"commit": false}\n')

    def frames(self, sha: str, start: int, end: int) -> bytes:
        return _frames(self.order.index(sha), self.blobs[sha], start, end)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.w, view) :]

    def start(self) -> threading.Thread:
        def run() -> None:
            try:
                self.got.append(receive(self.root, self.inp, self.said.append))
            except BaseException as exc:  # the test reports it
                self.got.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def spare(self, start: int, end: int) -> None:
        header = {"manifest": self.manifest.to_dict(), "blobs": [self.big]}
        frames = _frames(0, self.blobs[self.big], start, end)
        got = receive(self.root, io.BytesIO(json.dumps(header).encode() + b"\n" + frames))
        assert got.bytes_written == end - start and got.commit is None

    def tree(self) -> Dict[str, bytes]:
        (got,) = self.got
        assert not isinstance(got, BaseException), got
        assert got.commit is not None
        top = Path(got.commit.model_path)
        return {e.sha256: (top / e.path).read_bytes() for e in self.manifest.entries}

    def close(self) -> None:
        os.close(self.w)
        self.inp.close()


@pytest.fixture
def push(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = _Push(tmp_path)
    yield p
    try:
        os.close(p.w)
    except OSError:
        pass


def test_it_commits_once_the_other_stream_ends_with_its_input_still_open(push: _Push) -> None:
    half = SIZE // 2
    push.write(push.frames(push.small, 0, 500) + push.frames(push.big, 0, half) + WHOLE)
    thread = push.start()
    time.sleep(0.2)
    assert thread.is_alive()  # half the bytes are not there: it waits
    push.spare(half, SIZE)
    thread.join(10)
    assert not thread.is_alive()  # committed: the host never sent the commit frame
    assert push.tree() == push.blobs
    assert not Path(BlobStore(push.root).blob_path(push.big) + ".partial").exists()


def test_frames_after_it_are_still_written_and_the_commit_frame_commits(push: _Push) -> None:
    """Where a stream was refused, the host sends what it left, then the commit frame."""
    push.write(push.frames(push.small, 0, 500) + push.frames(push.big, 0, 1000) + WHOLE)
    thread = push.start()
    time.sleep(0.2)
    assert thread.is_alive()
    push.write(push.frames(push.big, 1000, SIZE) + COMMIT)
    thread.join(10)
    assert not thread.is_alive() and push.tree() == push.blobs


def test_frames_right_behind_it_are_read_and_the_commit_frame_commits(push: _Push) -> None:
    """The last frames and the commit frame are in the pipe with it (partly in the
    reader's buffer: see test_stream_io for that alone)."""
    rest = push.frames(push.big, SIZE - 3000, SIZE)
    push.write(
        push.frames(push.small, 0, 500) + push.frames(push.big, 0, SIZE - 3000) + WHOLE + rest
    )
    push.write(COMMIT)
    thread = push.start()
    thread.join(10)
    assert not thread.is_alive() and push.tree() == push.blobs


def test_the_end_of_input_commits_what_is_whole(push: _Push) -> None:
    push.write(push.frames(push.small, 0, 500) + push.frames(push.big, 0, SIZE) + WHOLE)
    os.close(push.w)
    thread = push.start()
    thread.join(10)
    assert not thread.is_alive() and push.tree() == push.blobs


def test_the_end_of_input_before_every_byte_commits_nothing_and_keeps_the_ranges(
    push: _Push,
) -> None:
    push.write(push.frames(push.small, 0, 500) + push.frames(push.big, 0, 100_000) + WHOLE)
    thread = push.start()
    time.sleep(0.1)
    os.close(push.w)
    thread.join(10)
    assert not thread.is_alive()
    (got,) = push.got
    assert not isinstance(got, BaseException) and got.commit is None
    partial = BlobStore(push.root).blob_path(push.big) + ".partial"
    assert json.loads(Path(partial + RANGES_SUFFIX).read_text()) == {"done": [[0, 100_000]]}
    need = next(n for n in BlobStore(push.root).plan(push.manifest, 1000).missing)
    assert need.sha256 == push.big and need.ranges == [[100_000, SIZE]]


def test_a_stream_that_did_not_plan_refuses_it(tmp_path: Path) -> None:
    manifest, blobs = _model(tmp_path)
    root = str(tmp_path / "root")
    BlobStore(root).plan(manifest, 1000)
    header = {"manifest": manifest.to_dict(), "blobs": sorted(blobs)}
    with pytest.raises(AgentError, match="spare stream"):
        receive(root, io.BytesIO(json.dumps(header).encode() + b"\n" + WHOLE))
