"""Push a tree (SavedModel or calibration data) to devices: content-addressed, resumable,
verified on the device, materialized atomically.

1. The host hashes the tree once into a manifest.
2. Each device answers which blobs it lacks, and how much of each is already there
   (a `.partial` left by an interrupted push); it refuses when the disk cannot hold them.
3. Only the missing byte ranges travel, into `store/<sha256>.partial`.
4. The device verifies every blob's sha256 and hard-links the tree into place.
"""

from __future__ import annotations

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
from .transport import Transport


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
    sent = 0
    transport: Transport = client.transport
    for need in plan.missing:
        remote = posixpath.join(plan.store_dir, need.sha256 + ".partial")
        local = payload.local_file(by_sha[need.sha256])
        sent += transport.upload(local, remote, offset=need.offset,
                                 progress=(lambda n: progress.advance(name, n))
                                 if progress else None)
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
