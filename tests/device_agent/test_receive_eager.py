"""`push-receive`'s eager bytes: the first bytes of a blob right after the planning header,
kept where the plan has that blob wholly missing, read and dropped otherwise."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from device_agent.errors import AgentError
from device_agent.manifest import build_manifest
from device_agent.protocol import PUSH_FRAME, Manifest
from device_agent.receive import MAX_EAGER, PIECE, receive
from device_agent.store import RANGES_SUFFIX, BlobStore
from edge.agent.package import build_zipapp


def _model(tmp_path: Path, size: int = 300_000) -> Tuple[Manifest, bytes, str]:
    src = tmp_path / "src"
    src.mkdir()
    data = b"".join(
        hashlib.sha256(bytes([i % 251, i // 251])).digest() for i in range(size // 32 + 1)
    )
    data = data[:size]
    (src / "weights.bin").write_bytes(data)
    (src / "saved_model.pb").write_bytes(b"graph" * 100)
    return build_manifest(str(src), name="m"), data, hashlib.sha256(data).hexdigest()


def _planning(
    manifest: Manifest, sha: str, eager: bytes, ranged_min: Optional[int] = None
) -> bytes:
    header = {
        "manifest": manifest.to_dict(),
        "plan": {"ranged_min": ranged_min},
        "eager": {"sha256": sha, "bytes": len(eager)},
    }
    return json.dumps(header).encode() + b"\n" + eager


def _go(commit: bool = True) -> bytes:
    return json.dumps({"commit": commit}).encode() + b"\n"


def _frames(index: int, data: bytes, start: int, step: int = 65536) -> bytes:
    return b"".join(
        PUSH_FRAME.pack(index, o, len(data[o : o + step])) + data[o : o + step]
        for o in range(start, len(data), step)
    )


class _Host(io.BytesIO):
    """The host's side of a stream: what it sends once it has read the plan."""

    def append(self, data: bytes) -> None:
        pos = self.tell()
        self.seek(0, os.SEEK_END)
        self.write(data)
        self.seek(pos)


def _index(plan: Dict[str, Any], sha: str) -> int:
    return [n["sha256"] for n in plan["missing"]].index(sha)


def _rest_of_plan(plan: Dict[str, Any], src: Path, manifest: Manifest) -> bytes:
    """The frames of every blob the plan asks for, from where it says."""
    by_sha = {e.sha256: (src / e.path).read_bytes() for e in manifest.entries}
    out = []
    for i, need in enumerate(plan["missing"]):
        data = by_sha[need["sha256"]]
        spans = need["ranges"] or [[need["offset"], need["size"]]]
        out += [_frames(i, data[:end], start) for start, end in spans]
    return b"".join(out)


def test_eager_bytes_of_a_missing_blob_are_kept_and_the_plan_asks_for_the_rest(
    tmp_path: Path,
) -> None:
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    n = 100_001
    said: List[Dict[str, Any]] = []
    partial = Path(BlobStore(root).blob_path(sha) + ".partial")
    sizes: List[int] = []

    def say(obj: Dict[str, Any]) -> None:  # the bytes are on disk before the plan goes out
        said.append(obj)
        sizes.append(partial.stat().st_size)

    receive(root, io.BytesIO(_planning(manifest, sha, data[:n], ranged_min=1 << 30)), say)
    (plan,) = said
    need = plan["missing"][_index(plan, sha)]
    assert sizes == [n]
    assert plan["eager_bytes"] == n and need["offset"] == n and need["ranges"] == []
    assert plan["bytes_missing"] == sum(e.size for e in manifest.entries) - n
    # the process ended there (no go line): the next push resumes after the eager bytes
    (again,) = BlobStore(root).plan(manifest).missing[_index(plan, sha) : _index(plan, sha) + 1]
    assert again.offset == n
    said.clear()
    stream = _planning(manifest, sha, data[:n], ranged_min=1 << 30) + _go(commit=False)
    got = receive(root, io.BytesIO(stream), said.append)
    assert said[0]["eager_bytes"] == 0  # a part-sent blob: dropped, not written twice
    assert partial.stat().st_size == n and got.bytes_written == 0


def test_a_kept_blob_completed_on_the_same_stream_is_verified_and_committed(
    tmp_path: Path,
) -> None:
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    said: List[Dict[str, Any]] = []
    n = 70_000

    inp = _Host(_planning(manifest, sha, data[:n], ranged_min=1 << 30))

    def say(obj: Dict[str, Any]) -> None:
        said.append(obj)
        inp.append(_go() + _rest_of_plan(obj, tmp_path / "src", manifest))

    got = receive(root, inp, say)
    assert said[0]["eager_bytes"] == n
    assert sha in got.verified and not got.problems
    assert got.bytes_written == sum(e.size for e in manifest.entries)
    assert got.commit is not None
    tree = Path(got.commit.model_path)
    assert (tree / "weights.bin").read_bytes() == data


def test_eager_bytes_of_a_ranged_upload_are_recorded_as_a_done_range(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    n = 50_000
    record = Path(BlobStore(root).blob_path(sha) + ".partial" + RANGES_SUFFIX)
    records: List[Any] = []
    said: List[Dict[str, Any]] = []

    def say(obj: Dict[str, Any]) -> None:
        said.append(obj)
        records.append(json.loads(record.read_text())["done"])

    receive(root, io.BytesIO(_planning(manifest, sha, data[:n], ranged_min=1000)), say)
    need = said[0]["missing"][_index(said[0], sha)]
    assert need["ranges"] == [[n, len(data)]] and records == [[[0, n]]]
    (again,) = [m for m in BlobStore(root).plan(manifest).missing if m.sha256 == sha]
    assert again.ranges == [[n, len(data)]]


def test_a_whole_blob_sent_eagerly_needs_no_frame(tmp_path: Path) -> None:
    manifest, data, sha = _model(tmp_path, size=4000)
    root = str(tmp_path / "root")
    said: List[Dict[str, Any]] = []
    inp = _Host(_planning(manifest, sha, data))

    def say(obj: Dict[str, Any]) -> None:
        said.append(obj)
        inp.append(_go() + _rest_of_plan(obj, tmp_path / "src", manifest))

    got = receive(root, inp, say)
    need = said[0]["missing"][_index(said[0], sha)]
    assert need["offset"] == need["size"] == len(data)
    assert sha in got.verified and got.commit is not None


def test_eager_bytes_of_a_stored_blob_are_dropped_and_the_go_line_still_read(
    tmp_path: Path,
) -> None:
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    store = BlobStore(root)
    os.makedirs(store.store_dir)
    Path(store.blob_path(sha)).write_bytes(data)
    before = Path(store.blob_path(sha)).stat().st_mtime_ns
    said: List[Dict[str, Any]] = []
    stream = _planning(manifest, sha, b"\xff" * 9000) + b'{"ping": true}\n'
    receive(root, io.BytesIO(stream), said.append)
    plan, pong = said
    assert plan["eager_bytes"] == 0 and sha not in [m["sha256"] for m in plan["missing"]]
    assert pong == {"pong": 1}  # read past the eager bytes to the ping line
    assert Path(store.blob_path(sha)).read_bytes() == data
    assert Path(store.blob_path(sha)).stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("eager", "match"),
    [
        ({"sha256": "0" * 64, "bytes": 10}, "not of a blob"),
        ("big", "bad header"),
        ({"sha256": "S", "bytes": True}, "bad header"),
        ({"sha256": "S", "bytes": 0}, "bad header"),
        ({"sha256": "S", "bytes": MAX_EAGER + 1}, "bad header"),
        ({"sha256": "S", "bytes": 300_001}, "not of a blob"),
        ({"sha256": "S"}, "bad header"),
    ],
)
def test_hostile_eager_headers_are_agent_errors_that_write_nothing(
    tmp_path: Path, eager: Any, match: str
) -> None:
    manifest, data, sha = _model(tmp_path)
    root = tmp_path / "root"
    if isinstance(eager, dict) and eager.get("sha256") == "S":
        eager = {**eager, "sha256": sha}
    header = {"manifest": manifest.to_dict(), "plan": {"ranged_min": None}, "eager": eager}
    stream = json.dumps(header).encode() + b"\n" + data[:1000]
    with pytest.raises(AgentError, match=match):
        receive(str(root), io.BytesIO(stream), lambda obj: None)
    assert not list(root.rglob("*.partial")) or all(
        p.stat().st_size == 0 for p in root.rglob("*.partial")
    )


@pytest.mark.parametrize("stored", [False, True])
def test_a_stream_that_ends_inside_the_eager_bytes_is_an_agent_error(
    tmp_path: Path, stored: bool
) -> None:
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    store = BlobStore(root)
    if stored:
        os.makedirs(store.store_dir)
        Path(store.blob_path(sha)).write_bytes(data)
    cut = _planning(manifest, sha, data[: PIECE + 5000])[:-1000]
    with pytest.raises(AgentError, match="ended inside"):
        receive(root, io.BytesIO(cut), lambda obj: None)
    if not stored:  # its whole pieces count for the resume, as a frame's do
        (need,) = [m for m in store.plan(manifest).missing if m.sha256 == sha]
        assert need.offset == PIECE


def test_eager_bytes_through_a_real_agent_process(tmp_path: Path) -> None:
    """The agent zipapp in an isolated Python: header and eager bytes written at once,
    before the plan is read back (as the host does)."""
    manifest, data, sha = _model(tmp_path)
    pyz = build_zipapp(tmp_path / "agent")
    proc = subprocess.Popen(
        [
            "/usr/bin/python3",
            "-I",
            "-S",
            str(pyz),
            "--root",
            str(tmp_path / "root"),
            "push-receive",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(tmp_path),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(_planning(manifest, sha, data[:200_000]))
    proc.stdin.flush()
    plan = json.loads(proc.stdout.readline())
    assert plan["eager_bytes"] == 200_000
    proc.stdin.write(_go() + _rest_of_plan(plan, tmp_path / "src", manifest))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    reply = json.loads(out)
    assert sha in reply["verified"] and reply["commit"]["files"] == 2
    assert (Path(reply["commit"]["model_path"]) / "weights.bin").read_bytes() == data


def test_a_plan_whose_tree_is_there_ends_the_command_without_reading_on(
    tmp_path: Path,
) -> None:
    """A re-push: the plan says the tree is there and the command returns at once, with
    the eager bytes (and whatever follows) left unread."""
    manifest, data, sha = _model(tmp_path)
    root = str(tmp_path / "root")
    first = _Host(_planning(manifest, sha, data[:1000]))

    def say(obj: Dict[str, Any]) -> None:
        first.append(_go() + _rest_of_plan(obj, tmp_path / "src", manifest))

    assert receive(root, first, say).commit is not None
    said: List[Dict[str, Any]] = []
    stream = io.BytesIO(_planning(manifest, sha, data[:1000]) + b"junk that is no line")
    got = receive(root, stream, said.append)
    (plan,) = said
    assert plan["model_path"] and plan["missing"] == [] and got.bytes_written == 0
    assert stream.read() == data[:1000] + b"junk that is no line"
