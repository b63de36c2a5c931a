"""Resume of a parallel (multi-channel) upload: the device plans the missing ranges."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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
            f.write(data[start:start + quarter])
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
