"""Push a tree (SavedModel or calibration data) to devices: content-addressed, resumable,
verified on the device, materialized atomically.

1. The host hashes the tree once into a manifest.
2. Each device answers which blobs it lacks, and how much of each is already there
   (a `.partial` left by an interrupted push); it refuses when the disk cannot hold them.
3. Only the missing byte ranges travel, into `store/<sha256>.partial`.
4. The device verifies every blob's sha256 and hard-links the tree into place.
"""

from __future__ import annotations

import json
import os
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from device_agent.errors import AgentError
from device_agent.protocol import FAILED, SUCCEEDED, JsonMixin, Manifest, PushCommit, PushPlan
from device_agent.store import build_manifest

from .client import AgentClient
from .devices import Device
from .errors import EdgeError
from .fleet_run import FleetRun, fan_out
from .transport import LocalTransport, RangeTask, Transport


class PushProgress(Protocol):
    """Callbacks a progress display implements (all may be called from worker threads)."""

    def start(self, device: str, total_bytes: int) -> None: ...

    def advance(self, device: str, nbytes: int) -> None: ...

    def finish(self, device: str, ok: bool) -> None: ...


@dataclass
class PushResult(JsonMixin):
    device: str
    status: str
    files_total: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0
    model_path: str | None = None
    tree_digest: str | None = None
    error: str | None = None
    hint: str | None = None


@dataclass
class Payload:
    """A local tree and its manifest, hashed once and pushed to many devices."""

    source: Path
    manifest: Manifest

    def local_file(self, rel: str) -> Path:
        return self.source / rel if self.source.is_dir() else self.source


def make_payload(source: Path, kind: str = "model") -> Payload:
    """Hash a directory (a SavedModel) or a single file (calibration data)."""
    source = source.expanduser().resolve()
    if not source.exists():
        raise EdgeError(f"{source} does not exist.", "Pass an existing file or directory.")
    try:
        return Payload(source, build_manifest(str(source), name=source.name, kind=kind))
    except AgentError as exc:  # the shared manifest code speaks the agent's error type
        raise EdgeError(exc.message, exc.hint) from exc


def push_to(client: AgentClient, payload: Payload,
            progress: PushProgress | None = None) -> PushResult:
    """Push one payload to one device over an open client."""
    started = time.monotonic()
    name = client.device.name
    manifest = payload.manifest
    plan = PushPlan.from_dict(client.call("push-plan", input=manifest.to_json().encode()))
    by_sha = {}
    for entry in manifest.entries:
        by_sha.setdefault(entry.sha256, entry.path)
    missing_shas = {need.sha256 for need in plan.missing}
    if progress:
        progress.start(name, plan.bytes_missing)
    transport: Transport = client.transport
    tasks = _tasks(transport, payload, plan, by_sha, channels_for(transport))
    sidecars: dict[str, list[list[int]]] = {}
    for remote, done in tasks.sidecars.items():
        sidecars[remote] = done
        transport.write_bytes(remote + ".ranges", json.dumps({"done": done}).encode())

    last_saved = [time.monotonic()]

    def on_done(task: RangeTask) -> None:  # runs under the transport's lock
        done = sidecars.get(task.remote)
        if done is None:
            return
        done.append([task.start, task.end])
        # Recording costs round trips: at most once a second (a resume may redo ~1 s).
        if time.monotonic() - last_saved[0] >= SIDECAR_EVERY_S:
            transport.write_bytes(task.remote + ".ranges", json.dumps({"done": done}).encode())
            last_saved[0] = time.monotonic()

    sent = transport.upload_ranges(tasks.ranges, tasks.channels,
                                   (lambda n: progress.advance(name, n)) if progress else None,
                                   on_done)
    commit = PushCommit.from_dict(client.call("push-commit", input=manifest.to_json().encode(),
                                              timeout=600))
    if progress:
        progress.finish(name, True)
    return PushResult(
        device=name, status=SUCCEEDED, files_total=len(manifest.entries),
        files_sent=sum(1 for e in manifest.entries if e.sha256 in missing_shas),
        bytes_sent=sent, bytes_skipped=manifest.total_bytes() - sent,
        seconds=round(time.monotonic() - started, 3), model_path=commit.model_path,
        tree_digest=commit.tree_digest,
    )


PARALLEL_MIN = 16 << 20  # blobs with more than this left go out in ranges on channels
RANGE_BYTES = 8 << 20
SIDECAR_EVERY_S = 1.0


def channels_for(transport: Transport) -> int:
    """SFTP channels per device: several over SSH (EDGE_PUSH_CHANNELS, default 4)."""
    if isinstance(transport, LocalTransport):
        return 1
    return max(1, int(os.environ.get("EDGE_PUSH_CHANNELS", "4")))


@dataclass
class _Tasks:
    ranges: list[RangeTask]
    channels: int
    sidecars: dict[str, list[list[int]]]


def _split(start: int, end: int) -> list[list[int]]:
    return [[a, min(a + RANGE_BYTES, end)] for a in range(start, end, RANGE_BYTES)] or \
        [[start, end]]


def _tasks(transport: Transport, payload: Payload, plan: PushPlan, by_sha: dict[str, str],
           channels: int) -> _Tasks:
    """Byte-range tasks for every missing blob. A big blob is cut into ranges written in
    parallel, with the finished ranges recorded beside it so an interruption resumes by
    range; the rest go whole, resumable by size."""
    out = _Tasks([], channels, {})
    for need in plan.missing:
        remote = posixpath.join(plan.store_dir, need.sha256 + ".partial")
        local = payload.local_file(by_sha[need.sha256])
        transport.ensure_file(remote)
        if need.ranges:  # an interrupted parallel upload
            spans, parallel = need.ranges, True
        else:
            spans = [[need.offset, need.size]]
            parallel = channels > 1 and need.size - need.offset > PARALLEL_MIN
        if not parallel:
            out.ranges.append(RangeTask(local, remote, need.offset, need.size))
            continue
        todo = [piece for a, b in spans for piece in _split(a, b)]
        done, pos = [], 0
        for a, b in sorted(spans):
            if a > pos:
                done.append([pos, a])
            pos = max(pos, b)
        if pos < need.size:
            done.append([pos, need.size])
        out.sidecars[remote] = done
        out.ranges.extend(RangeTask(local, remote, a, b) for a, b in todo)
    return out


def push(source: Path, devices: Sequence[Device], kind: str = "model",
         progress: PushProgress | None = None, max_parallel: int = 8) -> FleetRun:
    """Push `source` to every device concurrently (bounded); one PushResult per device."""
    from .connect import open_client

    payload = make_payload(source, kind)

    def work(device: Device) -> PushResult:
        with open_client(device) as client:
            client.ensure_agent()
            try:
                return push_to(client, payload, progress)
            except EdgeError:
                if progress:
                    progress.finish(device.name, False)
                raise

    def failed(device: Device, exc: EdgeError) -> PushResult:
        return PushResult(device=device.name, status=FAILED,
                          files_total=len(payload.manifest.entries), error=exc.message,
                          hint=exc.hint)

    return fan_out(devices, work, failed, max_parallel)
