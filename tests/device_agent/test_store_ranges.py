"""Resume of a parallel (multi-channel) upload: the device plans the missing ranges."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from device_agent import store as store_mod
from device_agent.durable import DiskUsage
from device_agent.protocol import Manifest, ManifestEntry
from device_agent.store import BlobStore


def test_plan_resumes_by_range_and_commit_verifies(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    sha = hashlib.sha256(data).hexdigest()
    manifest = Manifest([ManifestEntry("weights.bin", len(data), sha)])
    store = BlobStore(str(tmp_path / "root"))
    (need,) = store.plan(manifest).missing
    assert (need.offset, need.ranges) == (0, [])
    partial = Path(store.blob_path(sha) + ".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    # two of four ranges arrived, out of order, and were recorded by the host
    quarter = len(data) // 4
    with open(partial, "wb") as f:
        for start in (quarter, 3 * quarter):
            f.seek(start)
            f.write(data[start : start + quarter])
    done = [[3 * quarter, 4 * quarter], [quarter, 2 * quarter]]
    Path(str(partial) + ".ranges").write_text(json.dumps({"done": done}))
    plan = store.plan(manifest)
    (need,) = plan.missing
    assert need.ranges == [[0, quarter], [2 * quarter, 3 * quarter]]
    assert plan.bytes_missing == 2 * quarter
    with open(partial, "r+b") as f:  # the host sends exactly those ranges
        for start, end in need.ranges:
            f.seek(start)
            f.write(data[start:end])
    commit = store.commit(manifest)
    assert (Path(commit.model_path) / "weights.bin").read_bytes() == data
    assert not Path(str(partial) + ".ranges").exists()
    assert store.plan(manifest).missing == []


def test_plan_prepares_uploads_only_when_they_fit(tmp_path: Path) -> None:
    big, small = b"\x01" * (3 << 20), b"\x02" * 100
    entries = [
        ManifestEntry("big.bin", len(big), hashlib.sha256(big).hexdigest()),
        ManifestEntry("small.bin", len(small), hashlib.sha256(small).hexdigest()),
    ]
    manifest = Manifest(entries)
    store = BlobStore(str(tmp_path / "root"))
    plan = store.plan(manifest, ranged_min=1 << 20)
    assert plan.prepared
    needs = {n.sha256: n for n in plan.missing}
    big_need, small_need = needs[entries[0].sha256], needs[entries[1].sha256]
    assert big_need.ranges == [[0, len(big)]] and small_need.ranges == []
    big_partial = Path(store.blob_path(big_need.sha256) + ".partial")
    small_partial = Path(store.blob_path(small_need.sha256) + ".partial")
    assert big_partial.stat().st_size == 0 and small_partial.exists()
    assert json.loads(Path(str(big_partial) + ".ranges").read_text()) == {"done": []}
    # half of the big blob lands through the ranges; a second plan asks for the rest
    big_partial.write_bytes(big[: len(big) // 2])
    Path(str(big_partial) + ".ranges").write_text(json.dumps({"done": [[0, len(big) // 2]]}))
    again = {n.sha256: n for n in store.plan(manifest, ranged_min=1 << 20).missing}
    assert again[big_need.sha256].ranges == [[len(big) // 2, len(big)]]
    assert big_partial.stat().st_size == len(big) // 2  # never truncated


def test_plan_prepares_nothing_when_the_disk_is_short(tmp_path: Path, monkeypatch) -> None:

    from device_agent.errors import AgentError

    data = b"\x03" * (2 << 20)
    manifest = Manifest([ManifestEntry("w.bin", len(data), hashlib.sha256(data).hexdigest())])
    store = BlobStore(str(tmp_path / "root"))
    monkeypatch.setattr(store_mod, "disk_usage", lambda p: DiskUsage(1 << 30, 1 << 20))
    try:
        store.plan(manifest, ranged_min=0)
    except AgentError as exc:
        assert "disk space" in exc.message
    else:
        raise AssertionError("a push that cannot fit must be refused")
    assert not any(Path(store.store_dir).iterdir())


def test_uploaded_says_whether_a_commit_needs_more_bytes(tmp_path: Path) -> None:
    """A push's first stream commits once this says so: every missing blob stored,
    whole in that stream, or ranged with a record that covers it."""
    blobs = {name: bytes([i]) * (1000 * (i + 1)) for i, name in enumerate("abc")}
    shas = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    manifest = Manifest([ManifestEntry(n, len(b), shas[n]) for n, b in blobs.items()])
    store = BlobStore(str(tmp_path / "root"))
    missing = store.plan(manifest, ranged_min=1500).missing  # b and c get range records
    assert {bool(need.ranges) for need in missing} == {False, True}
    record = {n: Path(store.blob_path(shas[n]) + ".partial.ranges") for n in "bc"}
    assert not store.uploaded(missing, set())
    assert not store.uploaded(missing, {shas["a"]})  # records with nothing done
    record["b"].write_text(json.dumps({"done": [[0, 2000]]}))
    record["c"].write_text(json.dumps({"done": [[0, 1000], [2000, 3000]]}))
    assert not store.uploaded(missing, {shas["a"]})  # c lacks [1000, 2000)
    record["c"].write_text(json.dumps({"done": [[0, 1000], [1000, 3000]]}))
    assert store.uploaded(missing, {shas["a"]})
    assert not store.uploaded(missing, set())  # a: no record, not stored, not whole here
    Path(store.blob_path(shas["a"])).write_bytes(blobs["a"])  # a concurrent push stored it
    assert store.uploaded(missing, set())
    record["b"].write_text("torn")
    assert not store.uploaded(missing, set())
