"""`push-receive`: a framed byte stream on stdin, written into a real BlobStore."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tracemalloc
from pathlib import Path
from typing import List, Tuple

import pytest

from device_agent.errors import AgentError
from device_agent.manifest import build_manifest
from device_agent.protocol import PUSH_COMMIT_INDEX, PUSH_FRAME, Manifest
from device_agent.receive import MAX_FRAME, PIECE, receive
from device_agent.store import RANGES_SUFFIX, BlobStore, file_mode
from device_agent.upload import WRITE_BEHIND
from edge.agent.package import build_zipapp

Frame = Tuple[int, int, bytes]


def _model(tmp_path: Path, size: int = 300_000, seed: int = 1) -> Tuple[Manifest, bytes, str]:
    src = tmp_path / f"src{seed}"
    src.mkdir()
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    (src / "weights.bin").write_bytes(data)
    os.chmod(src / "weights.bin", 0o755)
    manifest = build_manifest(str(src), name="m")
    return manifest, data, hashlib.sha256(data).hexdigest()


def _stream(
    manifest: Manifest, blobs: List[str], frames: List[Frame], commit: bool = False
) -> bytes:
    header = {"manifest": manifest.to_dict(), "blobs": blobs, "commit": commit}
    out = [json.dumps(header).encode() + b"\n"]
    for index, offset, data in frames:
        out.append(PUSH_FRAME.pack(index, offset, len(data)) + data)
    return b"".join(out)


def _chunks(data: bytes, start: int = 0, step: int = 65536) -> List[Frame]:
    return [(0, o, data[o : o + step]) for o in range(start, len(data), step)]


def _files(root: Path) -> List[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_whole_blob_in_order_is_promoted(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data))))
    blob = Path(store.blob_path(sha))
    assert got.verified == [sha] and got.bytes_verified == len(data)
    assert got.bytes_written == len(data) and not got.problems
    assert blob.read_bytes() == data
    assert not Path(str(blob) + ".partial").exists()
    assert stat.S_IMODE(blob.stat().st_mode) == file_mode(manifest.entries[0])
    assert got.commit is None


def test_resumed_blob_is_hashed_with_its_prefix(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    os.makedirs(store.store_dir)
    cut = 100_003
    Path(store.blob_path(sha) + ".partial").write_bytes(data[:cut])
    (need,) = store.plan(manifest, ranged_min=1 << 30).missing
    assert need.offset == cut
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data, cut))))
    assert got.verified == [sha] and got.bytes_written == len(data) - cut
    assert Path(store.blob_path(sha)).read_bytes() == data


def test_wrong_bytes_are_a_problem_and_the_partial_goes(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    bad = bytearray(data)
    bad[1234] ^= 0xFF
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(bytes(bad)))))
    assert got.verified == [] and len(got.problems) == 1 and sha in got.problems[0]
    assert not Path(store.blob_path(sha)).exists()
    assert not Path(store.blob_path(sha) + ".partial").exists()


def test_out_of_order_frames_are_left_to_the_commit(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    frames = list(reversed(_chunks(data)))
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], frames)))
    assert got.verified == [] and not got.problems and got.bytes_written == len(data)
    assert not Path(store.blob_path(sha)).exists()
    commit = store.commit(manifest)
    assert commit.bytes_verified == len(data)
    assert (Path(commit.model_path) / "weights.bin").read_bytes() == data


def test_two_receivers_merge_their_ranges_and_plan_resumes_the_gaps(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path, size=400_000)
    store = BlobStore(str(tmp_path / "root"))
    (need,) = store.plan(manifest, ranged_min=1000).missing
    assert need.ranges == [[0, len(data)]]
    record = Path(store.blob_path(sha) + ".partial" + RANGES_SUFFIX)
    assert record.exists()
    a, b = (0, 100_000), (200_000, 300_000)
    for start, end in (b, a):  # two streams, one after the other, disjoint ranges
        frames = [(0, start, data[start:end])]
        got = receive(store.root, io.BytesIO(_stream(manifest, [sha], frames)))
        assert got.verified == [] and got.bytes_written == end - start
    assert json.loads(record.read_text())["done"] == [[0, 100_000], [200_000, 300_000]]
    (need,) = store.plan(manifest).missing
    assert need.ranges == [[100_000, 200_000], [300_000, len(data)]]
    for start, end in need.ranges:
        receive(store.root, io.BytesIO(_stream(manifest, [sha], [(0, start, data[start:end])])))
    commit = store.commit(manifest)
    assert (Path(commit.model_path) / "weights.bin").read_bytes() == data


def test_commit_in_header_materializes_the_tree(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    stream = _stream(manifest, [sha], _chunks(data), commit=True)
    got = receive(store.root, io.BytesIO(stream))
    assert got.commit is not None
    assert (Path(got.commit.model_path) / "weights.bin").read_bytes() == data
    assert store.plan(manifest).model_path == got.commit.model_path


def _header_only(manifest: Manifest, blobs: List[str]) -> bytes:
    return _stream(manifest, blobs, [])


@pytest.mark.parametrize(
    "case",
    [
        "no_header", "bad_json", "foreign_blob", "index", "too_long", "past_end",
        "bad_ranged_min", "go_not_an_object", "go_bad_record_every", "commit_frame_with_bytes",
    ],
)  # fmt: skip
def test_hostile_streams_are_agent_errors(tmp_path: Path, case: str) -> None:
    manifest, data, sha = _model(tmp_path)
    root = tmp_path / "root"
    store = BlobStore(str(root))
    store.plan(manifest, ranged_min=1 << 30)
    before = _files(tmp_path)

    def planning(ranged_min: int | None) -> bytes:  # a first stream's header
        header = {"manifest": manifest.to_dict(), "plan": {"ranged_min": ranged_min}}
        return json.dumps(header).encode() + b"\n"

    streams = {
        "no_header": b"\x00\x01no newline at all",
        "bad_json": b"{not json\n",
        "foreign_blob": _header_only(manifest, ["0" * 64]),
        "index": _header_only(manifest, [sha]) + PUSH_FRAME.pack(1, 0, 4) + b"abcd",
        "too_long": _header_only(manifest, [sha]) + PUSH_FRAME.pack(0, 0, MAX_FRAME + 1),
        "past_end": _header_only(manifest, [sha]) + PUSH_FRAME.pack(0, len(data) - 2, 4) + b"abcd",
        "bad_ranged_min": planning(-1),
        "go_not_an_object": planning(None) + b"[1]\n",
        "go_bad_record_every": planning(None) + b'{"record_every": "soon"}\n',
        "commit_frame_with_bytes": _header_only(manifest, [sha])
        + PUSH_FRAME.pack(PUSH_COMMIT_INDEX, 0, 4)
        + b"abcd",
    }
    said: list[dict[str, object]] = []
    with pytest.raises(AgentError):
        receive(str(root), io.BytesIO(streams[case]), said.append)
    assert _files(tmp_path) == before
    assert Path(store.blob_path(sha) + ".partial").stat().st_size == 0


def test_truncated_frame_keeps_the_bytes_before(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    stream = _stream(manifest, [sha], _chunks(data)[:2])
    stream += PUSH_FRAME.pack(0, 131072, 65536) + data[131072:131100]
    with pytest.raises(AgentError):
        receive(store.root, io.BytesIO(stream))
    partial = Path(store.blob_path(sha) + ".partial")
    assert partial.read_bytes() == data[:131072]
    assert not Path(store.blob_path(sha)).exists()
    (need,) = store.plan(manifest).missing
    assert need.offset == 131072


def test_a_truncated_frame_keeps_its_whole_pieces(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path, size=4 * PIECE)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    cut = 2 * PIECE + PIECE // 2  # the frame is the whole blob; the stream ends inside it
    stream = _header_only(manifest, [sha]) + PUSH_FRAME.pack(0, 0, len(data)) + data[:cut]
    with pytest.raises(AgentError):
        receive(store.root, io.BytesIO(stream))
    assert Path(store.blob_path(sha) + ".partial").read_bytes() == data[: 2 * PIECE]
    (need,) = store.plan(manifest).missing
    assert need.offset == 2 * PIECE


def test_the_largest_frames_are_received_in_bounded_memory(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path, size=2 * MAX_FRAME)
    store = BlobStore(str(tmp_path / "root"))
    frames = [(0, o, data[o : o + MAX_FRAME]) for o in (0, MAX_FRAME)]
    inp = io.BytesIO(_stream(manifest, [sha], frames))
    del frames
    tracemalloc.start()
    try:
        out = receive(store.root, inp)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.verified == [sha]
    assert peak < 4 * PIECE < MAX_FRAME  # one piece's buffer, not a frame's bytes


def test_the_disk_writes_start_every_write_behind_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So the blob's fsync finds little still in memory (the devices of a fan-out end
    together); the fsync itself still comes before the blob is promoted."""
    manifest, data, sha = _model(tmp_path, size=3 * WRITE_BEHIND + 12345)
    store = BlobStore(str(tmp_path / "root"))
    calls: list[tuple[int, int, int]] = []
    real = os.posix_fadvise

    def spy(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append((offset, length, advice))
        real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", spy)
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data, step=1 << 20))))
    assert got.verified == [sha] and Path(store.blob_path(sha)).read_bytes() == data
    dontneed = os.POSIX_FADV_DONTNEED
    assert calls == [(i * WRITE_BEHIND, WRITE_BEHIND, dontneed) for i in range(3)]


def test_a_blob_the_commit_verifies_keeps_its_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes out of order are not hashed on the way in: the commit reads them back, so
    they are not dropped from memory first."""
    manifest, data, sha = _model(tmp_path, size=3 * WRITE_BEHIND)
    store = BlobStore(str(tmp_path / "root"))
    calls: list[int] = []
    monkeypatch.setattr(os, "posix_fadvise", lambda fd, offset, length, advice: calls.append(1))
    frames = _chunks(data, step=1 << 20)[::-1]
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], frames)))
    assert got.verified == [] and got.bytes_written == len(data)
    assert Path(store.blob_path(sha) + ".partial").read_bytes() == data
    assert calls == []


def test_a_system_without_fadvise_still_receives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, data, sha = _model(tmp_path, size=WRITE_BEHIND + 1)
    store = BlobStore(str(tmp_path / "root"))
    monkeypatch.delattr(os, "posix_fadvise")
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data, step=1 << 20))))
    assert got.verified == [sha] and Path(store.blob_path(sha)).read_bytes() == data


def test_symlink_at_partial_is_not_written_through(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    os.makedirs(store.store_dir)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    os.symlink(victim, store.blob_path(sha) + ".partial")
    with pytest.raises(AgentError):  # a clean agent error, not a raw OSError traceback
        receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data))))
    assert victim.read_bytes() == b"keep me"
    assert not Path(store.blob_path(sha)).exists()


def test_agent_cli_push_receive_in_an_isolated_python(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    root = tmp_path / "root"
    BlobStore(str(root)).plan(manifest, ranged_min=1 << 30)
    pyz = build_zipapp(tmp_path / "agent")
    proc = subprocess.run(
        ["/usr/bin/python3", "-I", str(pyz), "--root", str(root), "push-receive"],
        input=_stream(manifest, [sha], _chunks(data), commit=True),
        capture_output=True,
        cwd=str(tmp_path),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    reply = json.loads(proc.stdout)
    assert reply["verified"] == [sha] and reply["bytes_written"] == len(data)
    model = Path(reply["commit"]["model_path"])
    assert (model / "weights.bin").read_bytes() == data


def test_wrong_bytes_of_a_ranged_upload_leave_no_stale_record(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1000)
    record = Path(store.blob_path(sha) + ".partial" + RANGES_SUFFIX)
    assert record.exists()
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(bytes(bad)))))
    assert got.problems and not Path(store.blob_path(sha) + ".partial").exists()
    assert not record.exists()  # else a later plan trusts ranges of deleted bytes


def test_a_first_stream_plans_then_receives_in_one_process(tmp_path: Path) -> None:
    """The push's first stream in a real agent: the plan line comes out while the command
    waits; each ping line gets its pong at once; the go line and the frames follow, and
    the one process commits."""
    manifest, data, sha = _model(tmp_path)
    root = tmp_path / "root"
    pyz = build_zipapp(tmp_path / "agent")
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-I", "-S", str(pyz), "--root", str(root), "push-receive"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    header = {"manifest": manifest.to_dict(), "plan": {"ranged_min": None}}
    proc.stdin.write(json.dumps(header).encode() + b"\n")
    proc.stdin.flush()
    plan = json.loads(proc.stdout.readline())
    assert [n["sha256"] for n in plan["missing"]] == [sha]
    for n in (1, 2):
        proc.stdin.write(b'{"ping": true}\n')
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"pong": n}
    proc.stdin.write(json.dumps({"commit": True}).encode() + b"\n")
    proc.stdin.write(b"".join(PUSH_FRAME.pack(i, o, len(d)) + d for i, o, d in _chunks(data)))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    reply = json.loads(out)
    assert reply["verified"] == [sha] and reply["commit"]["files"] == 1
    assert (Path(reply["commit"]["model_path"]) / "weights.bin").read_bytes() == data


def test_a_first_stream_with_nothing_to_send_ends_cleanly(tmp_path: Path) -> None:
    """Every blob already there: the host ends the input after the plan; nothing is
    written and the command succeeds."""
    manifest, data, sha = _model(tmp_path)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1 << 30)
    receive(store.root, io.BytesIO(_stream(manifest, [sha], _chunks(data), commit=True)))
    said: list[dict[str, object]] = []
    header = {"manifest": manifest.to_dict(), "plan": {"ranged_min": 0}}
    got = receive(store.root, io.BytesIO(json.dumps(header).encode() + b"\n"), said.append)
    (plan,) = said
    assert plan["missing"] == [] and plan["model_path"]
    assert got.bytes_written == 0 and got.commit is None


def test_a_commit_frame_ends_the_frames_and_commits(tmp_path: Path) -> None:
    """Two streams of byte ranges: the second ends with the commit frame, which makes it
    commit the push (verifying the ranged blob), and nothing after that frame is read."""
    from device_agent.protocol import PUSH_COMMIT_INDEX

    manifest, data, sha = _model(tmp_path, size=400_000)
    store = BlobStore(str(tmp_path / "root"))
    store.plan(manifest, ranged_min=1000)
    half = len(data) // 2
    first = receive(store.root, io.BytesIO(_stream(manifest, [sha], [(0, 0, data[:half])])))
    assert first.commit is None
    tail = _stream(manifest, [sha], _chunks(data, half))
    tail += PUSH_FRAME.pack(PUSH_COMMIT_INDEX, 0, 0) + b"never read"
    got = receive(store.root, io.BytesIO(tail))
    assert got.commit is not None and got.commit.bytes_verified == len(data)
    assert (Path(got.commit.model_path) / "weights.bin").read_bytes() == data


def test_bytes_the_commit_verifies_start_their_disk_writes_and_stay_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces of a ranged blob, as several streams send them: each run of written bytes
    starts its disk writes (kept in memory for the commit's read-back) once WRITE_BEHIND
    long or when a write elsewhere ends it, so that the commit's fsync finds little."""
    import device_agent.upload as upload_mod

    wb = WRITE_BEHIND
    manifest, data, sha = _model(tmp_path, size=3 * wb + 12345)
    store = BlobStore(str(tmp_path / "root"))
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(upload_mod, "start_writeback", lambda fd, a, n: calls.append((a, n)))
    monkeypatch.setattr(os, "posix_fadvise", lambda *a: pytest.fail("dropped from memory"))
    pieces = [(2 * wb, 3 * wb), (3 * wb, len(data)), (0, wb), (wb, 2 * wb)]
    frames = [f for a, b in pieces for f in _chunks(data[:b], a, 1 << 20)]
    got = receive(store.root, io.BytesIO(_stream(manifest, [sha], frames)))
    assert got.bytes_written == len(data)
    assert calls == [(2 * wb, wb), (3 * wb, 12345), (0, wb), (wb, wb)]
    assert Path(store.blob_path(sha) + ".partial").read_bytes() == data
