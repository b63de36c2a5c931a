"""`gc` on a real device store: pushed models, job directories, the converted-model cache
and TensorRT caches made by the agent's own functions; gc run as the agent's command."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import agent, agent_json

from device_agent import worker_lock
from device_agent.convert import ModelCache, link_tree
from device_agent.durable import atomic_write
from device_agent.jobs import JobStore
from device_agent.manifest import build_manifest, tree_digest
from device_agent.protocol import (
    RUNNING,
    SUCCEEDED,
    BenchSpec,
    ConversionSummary,
    ConvertResult,
    ConvertSpec,
    GcResult,
    Manifest,
)
from device_agent.serve import answer
from device_agent.store import BlobStore

HOUR = 3600.0
SHARED = b"the same variables.index in both models\n"


def make_model(path: Path, seed: int) -> Path:
    """A SavedModel-like tree: its own bytes, plus one file every model here shares."""
    rnd = hashlib.sha256(str(seed).encode()).digest()
    files = {
        "saved_model.pb": rnd * (1000 + seed),
        "variables/variables.data-00000-of-00001": os.urandom(50_000 + seed),
        "variables/variables.index": SHARED,
    }
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    return path


def push(root: Path, src: Path) -> tuple[Manifest, str]:
    """Push `src` into the store as the host does: plan (prepared), write the partials at
    their offsets, commit."""
    manifest = build_manifest(str(src))
    store = BlobStore(str(root))
    plan = store.plan(manifest, ranged_min=1 << 30)
    by_sha = {e.sha256: src / e.path for e in manifest.entries}
    for need in plan.missing:
        with open(need.upload_path, "r+b") as f:
            f.seek(need.offset)
            f.write(by_sha[need.sha256].read_bytes()[need.offset :])
    return manifest, store.commit(manifest).model_path


def finished_job(jobs: JobStore, spec: ConvertSpec | BenchSpec, output: str | None) -> str:
    job_id = jobs.create(spec)
    if output is not None:
        result = ConvertResult(device="dev", status=SUCCEEDED, output_model=output)
        atomic_write(os.path.join(jobs.jobs_dir, job_id, "result.json"), result.to_json())
    jobs.set_status(job_id, SUCCEEDED)
    return job_id


def cache_entry(root: Path, key: str, model_path: str) -> str:
    """A converted-model cache entry the way a convert job files a prebuilt model."""
    cache = ModelCache(str(root))
    staging = cache.staging(key)
    link_tree(model_path, os.path.join(staging, "model"))
    return cache.commit(key, staging, ConversionSummary())


def age(top: Path, seconds: float) -> None:
    """Make everything under `top` (not what a symlink points to) `seconds` old."""
    when = time.time() - seconds
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            os.utime(os.path.join(dirpath, name), (when, when), follow_symlinks=False)
    os.utime(top, (when, when))


def usage(top: Path) -> int:
    """Bytes of every non-directory under `top`, a hard-linked file once."""
    sizes = {}
    for dirpath, dirs, files in os.walk(top):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            sizes[(st.st_dev, st.st_ino)] = st.st_size
    return sum(sizes.values())


def snapshot(top: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, top)] = (st.st_ino, st.st_size)
    return out


def run_gc(root: Path, *args: str) -> GcResult:
    return GcResult.from_dict(agent_json(root, "gc", *args))


def blobs_of(root: Path, manifest: Manifest) -> set[Path]:
    return {root / "store" / e.sha256 for e in manifest.entries}


@pytest.fixture
def device(tmp_path: Path) -> Iterator[dict]:
    """A device root holding: an old finished bench job (model m1, cache entry A), a newer
    finished convert job (model m2, cache entry B), an older job still running (m3, its
    worker.lock held by this process), an unused model m4, two timing caches, two calib
    caches, a staging leftover; all two hours old."""
    root = tmp_path / "root"
    jobs = JobStore(str(root))
    m = {}
    for i in (1, 2, 3, 4):
        m[i] = push(root, make_model(tmp_path / f"src{i}", i))
    key_a, key_b = "a" * 64, "b" * 64
    running = jobs.create(BenchSpec(model=m[3][1]))
    jobs.set_status(running, RUNNING)
    old = finished_job(jobs, BenchSpec(model=m[1][1]), cache_entry(root, key_a, m[1][1]))
    new = finished_job(jobs, ConvertSpec(model=m[2][1]), cache_entry(root, key_b, m[2][1]))
    for sub in ("timing", "calib"):
        (root / "trt" / sub).mkdir(parents=True)
    for name, data in (("old.cache", b"o" * 300), ("new.cache", b"n" * 500)):
        atomic_write(str(root / "trt" / "timing" / name), data)
    for key in (key_a, key_b):
        (root / "trt" / "calib" / f"{key}.cache").write_bytes(key.encode() * 10)
    (root / "models" / ".tmp-leftover").mkdir()
    (root / "models" / ".tmp-leftover" / "half").write_bytes(b"x" * 77)
    age(root, 2 * HOUR)
    newer = time.time() - HOUR - 60  # still older than the grace, newer than old.cache
    os.utime(root / "trt" / "timing" / "new.cache", (newer, newer))
    fd = worker_lock.take(os.path.join(jobs.jobs_dir, running))
    assert fd is not None
    worker_lock.record(fd, os.getpid())
    yield dict(root=root, m=m, jobs=(old, new, running), keys=(key_a, key_b))
    os.close(fd)


def test_keep_one_removes_the_old_and_keeps_what_kept_jobs_use(device: dict) -> None:
    root, m = device["root"], device["m"]
    old, new, running = device["jobs"]
    key_a, key_b = device["keys"]
    before = snapshot(root)
    dry = run_gc(root, "--keep", "1", "--dry-run")
    assert snapshot(root) == before, "a dry run deleted something"
    assert dry.dry_run and dry.bytes_freed > 0

    used = usage(root)
    res = run_gc(root, "--keep", "1")
    freed = used - usage(root)
    assert res.bytes_freed == freed == sum(i.bytes for i in res.removed)
    assert res.bytes_freed == dry.bytes_freed
    assert sorted(i.name for i in res.removed) == sorted(i.name for i in dry.removed)
    assert sum(c.bytes_freed for c in res.categories) == freed

    names = {i.name for i in res.removed}
    unique1 = blobs_of(root, m[1][0]) - blobs_of(root, m[2][0]) - blobs_of(root, m[3][0])
    assert f"jobs/{old}" in names and not (root / "jobs" / old).exists()
    assert f"models/{tree_digest(m[1][0])}" in names
    assert f"models/{tree_digest(m[4][0])}" in names  # used by no job at all
    assert f"cache/{key_a}" in names and f"trt/calib/{key_a}.cache" in names
    assert "trt/timing/old.cache" in names and "models/.tmp-leftover" in names
    assert {f"store/{p.name}" for p in unique1} <= names
    assert not any(p.exists() for p in unique1)
    # kept: the newest finished job, the running one, what they use, the newest timing cache
    assert set(res.kept_jobs) == {new, running}
    for job in (new, running):
        assert (root / "jobs" / job / "status.json").is_file()
    assert (root / "trt" / "timing" / "new.cache").read_bytes() == b"n" * 500
    assert (root / "trt" / "calib" / f"{key_b}.cache").is_file()
    store = BlobStore(str(root))
    for i in (2, 3):
        manifest, path = m[i]
        plan = store.plan(manifest)
        assert plan.model_path == path and plan.bytes_missing == 0
        on_device = {(e.path, e.size, e.sha256) for e in build_manifest(path).entries}
        assert on_device == {(e.path, e.size, e.sha256) for e in manifest.entries}
        for blob in blobs_of(root, manifest):  # the blobs survive and verify
            assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert ModelCache(str(root)).lookup(key_b) is not None
    # a push of m1 again needs exactly the blobs gc removed
    again = store.plan(m[1][0])
    assert {n.sha256 for n in again.missing} == {p.name for p in unique1}
    assert not any(
        n.startswith(".gc-") for d in ("jobs", "models", "cache") for n in os.listdir(root / d)
    )


def test_keep_zero_keeps_live_jobs_and_what_a_conversion_may_read(device: dict) -> None:
    root, m = device["root"], device["m"]
    _, _, running = device["jobs"]
    jobs = JobStore(str(root))
    converting = jobs.create(ConvertSpec(model=m[4][1]))
    jobs.set_status(converting, RUNNING)
    fd = worker_lock.take(os.path.join(jobs.jobs_dir, converting))
    assert fd is not None
    worker_lock.record(fd, os.getpid())
    try:
        res = run_gc(root, "--keep", "0")
    finally:
        os.close(fd)  # its worker is gone now: the job is dead, no longer live
    assert sorted(res.kept_jobs) == sorted([running, converting])
    assert sorted(os.listdir(root / "jobs")) == sorted([running, converting])
    assert BlobStore(str(root)).plan(m[3][0]).model_path == m[3][1]
    assert BlobStore(str(root)).plan(m[4][0]).model_path == m[4][1]
    assert not (root / "models" / tree_digest(m[2][0])).exists()
    # while a convert job runs it may read any cache entry: cache/ and trt/calib stay
    keys = device["keys"]
    assert all((root / "cache" / k).is_dir() for k in keys)
    assert all((root / "trt" / "calib" / f"{k}.cache").is_file() for k in keys)
    age(root / "jobs", 2 * HOUR)
    res = run_gc(root, "--keep", "0")
    assert res.kept_jobs == [running]
    assert f"jobs/{converting}" in {i.name for i in res.removed}
    assert not any((root / "cache" / k).exists() for k in keys)
    assert not (root / "models" / tree_digest(m[4][0])).exists()


def test_fresh_upload_survives_and_protects_blobs(device: dict, tmp_path: Path) -> None:
    root, m = device["root"], device["m"]
    stale = root / "store" / ("c" * 64 + ".partial")
    stale.write_bytes(b"s" * 1000)
    (root / "store" / ("c" * 64 + ".partial.ranges")).write_text('{"done": []}')
    age(root / "store", 2 * HOUR)
    fresh = root / "store" / ("d" * 64 + ".partial")
    fresh.write_bytes(b"f" * 1000)  # a push uploading now
    res = run_gc(root, "--keep", "0")
    assert fresh.read_bytes() == b"f" * 1000
    assert not stale.exists() and not stale.with_name(stale.name + ".ranges").exists()
    assert all(p.exists() for p in blobs_of(root, m[1][0]))  # the push may commit them
    assert not (root / "models" / tree_digest(m[1][0])).exists()
    assert "blobs" not in {c.category for c in res.categories if c.removed}


def test_symlinks_and_hostile_names_never_lead_outside(device: dict, tmp_path: Path) -> None:
    root = device["root"]
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "dir" / "precious").write_bytes(b"p" * 4096)
    (outside / "file").write_bytes(b"q" * 4096)
    (root / "models" / ("e" * 64)).symlink_to(outside / "dir")
    (root / "store" / ("f" * 64)).symlink_to(outside / "file")
    (root / "jobs" / device["jobs"][0] / "artifacts" / "out").symlink_to(outside)
    (root / "calib").symlink_to(outside)
    hostile = root / "models" / "$(touch x)\n..;rm -rf"
    hostile.mkdir()
    (hostile / "f").write_bytes(b"h")
    age(root, 2 * HOUR)
    before = snapshot(outside)
    used = usage(root)
    res = run_gc(root, "--keep", "0")
    assert snapshot(outside) == before
    assert (outside / "dir" / "precious").read_bytes() == b"p" * 4096
    assert not os.path.lexists(root / "models" / ("e" * 64))
    assert not os.path.lexists(root / "store" / ("f" * 64))
    assert not os.path.lexists(hostile)
    assert (root / "calib").is_symlink()  # a category that is a symlink is not entered
    assert any(n.startswith("calib:") for n in res.notes)
    assert res.bytes_freed == used - usage(root)


def test_served_and_refuses_bad_arguments(device: dict) -> None:
    from device_agent.__main__ import main

    root = device["root"]
    reply = answer(main, str(root), {"id": 1, "argv": ["gc", "--keep", "1", "--dry-run"]})
    assert reply["exit"] == 0, reply["stderr"]
    assert GcResult.from_json(reply["stdout"]).dry_run
    proc = agent(root, "gc", "--keep", "-1")
    assert proc.returncode == 3 and "negative" in proc.stdout


def test_a_push_that_starts_during_gc_keeps_the_blobs(
    device: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: gc planned with no upload in flight, then a push began before the blobs
    went (its plan may count on them): the blobs stay, the trees still go."""
    import device_agent.gc as gc_mod

    root, m = device["root"], device["m"]
    real_plan = gc_mod.plan

    def plan_then_push(*args: object, **kwargs: object) -> object:
        scan = real_plan(*args, **kwargs)  # type: ignore[arg-type]
        (root / "store" / ("9" * 64 + ".partial")).write_bytes(b"new upload")
        return scan

    monkeypatch.setattr(gc_mod, "plan", plan_then_push)
    used = usage(root) + len(b"new upload")
    res = gc_mod.gc(str(root), keep=0)
    assert res.bytes_freed == used - usage(root) > 0  # what did go, not what was planned
    assert all(p.exists() for p in blobs_of(root, m[1][0]))
    assert not (root / "models" / tree_digest(m[1][0])).exists()
    assert not any(i.category == "blobs" for i in res.removed)
    assert any("push started" in n for n in res.notes)
