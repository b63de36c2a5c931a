"""Concurrent pushes of one blob to one device root: two hosts (or `edge push --to a,b`
with two names for one board) upload, plan and commit the same `store/<sha>.partial` at
the same time. The partial is shared on purpose (an interrupted push resumes from it, by
size or by range), but every temporary name beside it is unique and created exclusively,
and a commit that loses the race to promote the blob takes the winner's."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import agent_cmd, agent_env
from sshfleet import SshFleet

from device_agent.manifest import build_manifest
from device_agent.protocol import PUSH_FRAME, SUCCEEDED, PushPlan
from device_agent.receive import receive
from device_agent.store import RANGES_SUFFIX, BlobStore
from edge.fleet.devices import Device
from edge.ops.push import push

BLOB = 6 << 20


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    src = tmp_path / "payload"
    (src / "variables").mkdir(parents=True)
    for i in range(3):
        (src / "variables" / f"part{i}.bin").write_bytes(os.urandom(BLOB))
    (src / "saved_model.pb").write_bytes(os.urandom(5000))
    return src


def check_store(root: Path, payload: Path) -> None:
    """Every blob verified in store/, the tree materialized, no temporary file left."""
    manifest = build_manifest(str(payload))
    store = root / "store"
    for e in manifest.entries:
        blob = store / e.sha256
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == e.sha256
    leftovers = [p.name for p in store.iterdir() if len(p.name) != 64]
    assert leftovers == []
    models = root / "models"
    assert [p.name for p in models.iterdir() if p.name.startswith(".")] == []


def test_two_concurrent_pushes_of_one_payload(
    tmp_path: Path, payload: Path, device_python: Path
) -> None:
    """Two names for one board, pushed at once (threads, each with its own agent
    processes), several rounds: every push succeeds and the store stays clean."""
    for round_ in range(4):
        root = tmp_path / f"root{round_}"
        devices = [Device(name=n, python=str(device_python), root=str(root)) for n in "ab"]
        run = push(payload, devices)
        failed = [(r.device, r.error) for r in run.results if r.status != SUCCEEDED]
        assert failed == [], f"round {round_}: {failed}"
        assert len({r.model_path for r in run.results}) == 1
        check_store(root, payload)


def test_two_concurrent_ranged_pushes_over_ssh(
    ssh_env: SshFleet, tmp_path: Path, device_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same over real sshd, with blobs big enough to go out as parallel byte ranges
    on several streams (a LAN's round trip alone asks for one), each push recording its
    finished ranges beside the partial."""
    monkeypatch.setenv("EDGE_PUSH_CHANNELS", "3")
    src = tmp_path / "big"
    src.mkdir()
    for i in range(2):
        (src / f"blob{i}.bin").write_bytes(os.urandom(20 << 20))
    for round_ in range(2):
        root = tmp_path / f"sshroot{round_}"
        devices = [
            Device(name=n, host="d1", python=str(device_python), root=str(root)) for n in "ab"
        ]
        run = push(src, devices)
        failed = [(r.device, r.error) for r in run.results if r.status != SUCCEEDED]
        assert failed == [], f"round {round_}: {failed}"
        check_store(root, src)


def _at_once(root: Path, n: int, *args: str, stdin: str) -> list[subprocess.CompletedProcess[str]]:
    """Start `n` agent processes with the same command and input together; wait for all."""
    procs = [
        subprocess.Popen(
            agent_cmd(root) + list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=agent_env(),
        )
        for _ in range(n)
    ]
    outs = [p.communicate(stdin, timeout=120) for p in procs]
    return [
        subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip(procs, outs)
    ]


def test_concurrent_ranged_plans_and_commits(tmp_path: Path, payload: Path) -> None:
    """Several agent processes plan a ranged upload of the same blobs at once (each one
    writes the range record beside the partial), then the bytes arrive and several commit
    at once: every plan and commit succeeds, and the range record is never torn."""
    manifest = build_manifest(str(payload))
    text = manifest.to_json()
    by_sha = {e.sha256: payload / e.path for e in manifest.entries}
    for round_ in range(3):
        root = tmp_path / f"root{round_}"
        results = _at_once(root, 6, "push-plan", "--ranged-min", "0", stdin=text)
        assert [r.returncode for r in results] == [0] * 6, [r.stderr[-1500:] for r in results]
        plan = PushPlan.from_dict(json.loads(results[0].stdout))
        store = BlobStore(str(root))
        for need in plan.missing:
            record = Path(store.blob_path(need.sha256) + ".partial.ranges")
            assert json.loads(record.read_text()) == {"done": []}  # whole, not interleaved
            with open(store.blob_path(need.sha256) + ".partial", "r+b") as f:
                f.write(by_sha[need.sha256].read_bytes())
        results = _at_once(root, 6, "push-commit", stdin=text)
        assert [r.returncode for r in results] == [0] * 6, [r.stderr[-1500:] for r in results]
        check_store(root, payload)


def test_range_record_temp_names_are_not_shared(tmp_path: Path, payload: Path) -> None:
    """A plan never writes through another writer's temporary file: one left beside the
    partial (another push in the middle of writing its record) is not touched."""
    manifest = build_manifest(str(payload))
    store = BlobStore(str(tmp_path / "root"))
    os.makedirs(store.store_dir)
    sha = manifest.entries[0].sha256
    theirs = Path(store.blob_path(sha) + ".partial.ranges.tmp")
    theirs.write_text('{"done": [[0, 1')  # half written by the other push
    store.plan(manifest, ranged_min=0)
    assert theirs.read_text() == '{"done": [[0, 1'


def _frames(sha_index: int, data: bytes, start: int, end: int) -> bytes:
    step = 1 << 20
    return b"".join(
        PUSH_FRAME.pack(sha_index, o, min(step, end - o)) + data[o : min(o + step, end)]
        for o in range(start, end, step)
    )


def test_a_push_that_loses_the_race_leaves_no_upload(tmp_path: Path, payload: Path) -> None:
    """Push A commits the blobs while push B still sends its byte ranges: B's streams that
    begin after A promoted a blob drop its bytes instead of opening a new `.partial`, and
    B's commit removes an upload made again at the promoted name (the SFTP path's, here
    written by hand), its range record too."""
    manifest = build_manifest(str(payload))
    store = BlobStore(str(tmp_path / "root"))
    plan = store.plan(manifest, ranged_min=0)
    blobs = [n.sha256 for n in plan.missing]
    data = {e.sha256: (payload / e.path).read_bytes() for e in manifest.entries}
    header = json.dumps({"manifest": manifest.to_dict(), "blobs": blobs}).encode() + b"\n"

    def stream(part: int) -> bytes:  # push B's stream `part` of 2: one half of each blob
        body = b""
        for i, sha in enumerate(blobs):
            half = len(data[sha]) // 2
            body += _frames(i, data[sha], *((0, half) if part == 0 else (half, len(data[sha]))))
        return header + body

    first = receive(store.root, io.BytesIO(stream(0)))  # B's first stream, before A
    assert first.bytes_written == sum(len(data[s]) // 2 for s in blobs)
    for sha in blobs:  # push A: every blob whole and in place, then its commit
        Path(store.blob_path(sha) + ".partial").write_bytes(data[sha])
    store.commit(manifest)
    later = receive(store.root, io.BytesIO(stream(1)))  # B's second stream, after A
    assert later.bytes_written == 0 and not later.problems
    sha = blobs[0]
    Path(store.blob_path(sha) + ".partial").write_bytes(data[sha][:1000])
    Path(store.blob_path(sha) + ".partial" + RANGES_SUFFIX).write_text('{"done": [[0, 1000]]}')
    store.commit(manifest)  # B's commit
    check_store(tmp_path / "root", payload)


def test_a_commit_never_promotes_a_newer_upload_it_did_not_verify(
    tmp_path: Path, payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a commit's hash of a `.partial` and its rename, another push may promote
    that file and a third create a new, short one at the same name: the commit renames
    only the file it verified, and the short one stays an upload, not a blob."""
    manifest = build_manifest(str(payload))
    store = BlobStore(str(tmp_path / "root"))
    plan = store.plan(manifest, ranged_min=0)
    data = {e.sha256: (payload / e.path).read_bytes() for e in manifest.entries}
    for need in plan.missing:
        Path(need.upload_path).write_bytes(data[need.sha256])
    real_fsync = os.fsync
    swapped: list[str] = []

    def fsync(fd: int) -> None:  # at the commit's fsync of a verified upload: the race
        real_fsync(fd)
        path = f"/proc/self/fd/{fd}"
        target = os.readlink(path) if os.path.exists(path) else ""
        if target.endswith(".partial") and not swapped:
            sha = os.path.basename(target)[: -len(".partial")]
            os.replace(target, store.blob_path(sha))  # the other push's promotion
            Path(target).write_bytes(data[sha][:10])  # the third push's new upload
            swapped.append(sha)

    monkeypatch.setattr(os, "fsync", fsync)
    store.commit(manifest)
    monkeypatch.undo()
    (sha,) = swapped
    assert hashlib.sha256(Path(store.blob_path(sha)).read_bytes()).hexdigest() == sha
    assert Path(store.blob_path(sha) + ".partial").read_bytes() == data[sha][:10]
