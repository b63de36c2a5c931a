"""Push a tree (SavedModel or calibration data) to devices: content-addressed, resumable,
verified on the device, materialized atomically.

1. The host hashes the tree once into a manifest.
2. Each device answers which blobs it lacks, and how much of each is already there
   (a `.partial` left by an interrupted push); it refuses when the disk cannot hold them.
3. Only the missing byte ranges travel, to the paths the device's plan names (the store's
   layout is the agent's own: the host composes no path in it).
4. The device verifies every blob's sha256 and hard-links the tree into place.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from device_agent.manifest import build_manifest, gaps
from device_agent.protocol_core import (
    SUCCEEDED,
    DeviceResult,
    Manifest,
    PushCommit,
    PushPlan,
    PushReceived,
)
from device_agent.trt_types import ENGINE_FILES
from edge.agent.client import AgentClient
from edge.agent.replies import check_plan, decode, malformed
from edge.agent.transports import EarlyTransports
from edge.core.errors import DeviceError, EdgeError, ModelError, UserError
from edge.core.settings import settings
from edge.core.trace import mark, span
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out
from edge.ops.hashcache import HashCache
from edge.ops.push_links import (
    MAX_STREAMS,
    channels_by_rtt,
    channels_for,
    plan_round_trip,
    spare_streams,
)
from edge.ops.push_stream import (
    STREAM_MIN_BYTES,
    Spares,
    eager_bytes,
    plan_header,
    round_trip,
    send_streams,
    split,
)
from edge.transport import RangeTask, Transport
from edge.transport.base import SessionRefused, Stream
from edge.transport.deadlink import DeadLinkError


def check_model_artifact(path: Path) -> Path:
    """A SavedModel, or a TensorRT engine directory that `edge convert` made (what bench
    and validate run): checked on the host before anything is sent."""
    p = path.expanduser()
    if p.is_dir() and all((p / name).is_file() for name in ENGINE_FILES):
        return p.resolve()
    return check_saved_model(path)


def check_saved_model(path: Path) -> Path:
    """The host-side check before anything is sent: a directory with saved_model.pb."""
    path = path.expanduser()
    hint = "Pass the directory written by model.save(dir) or tf.saved_model.save(obj, dir)."
    if not path.exists():
        raise ModelError(f"Model path {path} does not exist.", hint)
    if not path.is_dir():
        raise ModelError(f"{path} is a file, not a SavedModel directory.", hint)
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelError(f"{path} is not a SavedModel: it has no saved_model.pb.", hint)
    return path.resolve()


class PushProgress(Protocol):
    """Callbacks a progress display implements (all may be called from worker threads)."""

    def start(self, device: str, total_bytes: int) -> None: ...

    def advance(self, device: str, nbytes: int) -> None: ...

    def finish(self, device: str, ok: bool) -> None: ...


@dataclass
class PushResult(DeviceResult):
    files_total: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    seconds: float = 0.0
    model_path: str | None = None
    tree_digest: str | None = None


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
    cache = HashCache()
    manifest = build_manifest(str(source), name=source.name, kind=kind, hash_file=cache.hash_file)
    cache.save()
    return Payload(source, manifest)


def push_to(
    client: AgentClient, payload: Payload, progress: PushProgress | None = None, concurrent: int = 1
) -> PushResult:
    """Push one payload to one device over an open client (`concurrent`: how many
    devices are being pushed at the same time)."""
    spares = Spares(client, 0)
    try:
        return _push_to(client, payload, progress, concurrent, spares)
    finally:
        spares.close()


def _push_to(
    client: AgentClient,
    payload: Payload,
    progress: PushProgress | None,
    concurrent: int,
    spares: Spares,
) -> PushResult:
    started = time.monotonic()
    name = client.device.name
    manifest = payload.manifest
    transport: Transport = client.transport
    by_sha: dict[str, str] = {}
    for entry in manifest.entries:
        by_sha.setdefault(entry.sha256, entry.path)

    def eager() -> tuple[str, bytes] | None:
        return eager_bytes(
            manifest, lambda sha: payload.local_file(by_sha[sha]), settings().push_eager
        )

    with span("push-plan", name):
        plan, first, channels = _plan(client, manifest, transport, concurrent, spares, eager)
    if plan.eager_bytes:
        mark(f"{plan.eager_bytes} bytes sent with the plan request were kept", name)
    missing_shas = {need.sha256 for need in plan.missing}
    if progress:
        progress.start(name, plan.bytes_missing)
    sent = 0
    commit: PushCommit | None = None
    if not plan.missing and first is not None:  # every blob there: at most a commit
        commit = _commit_only(client, first, plan)
    if plan.missing:
        advance = (lambda n: progress.advance(name, n)) if progress else None
        with span("upload", name):
            if settings().push_via == "sftp":
                sent = _upload_sftp(transport, payload, plan, by_sha, channels, advance)
            else:
                received = send_streams(
                    client, manifest, plan, lambda sha: payload.local_file(by_sha[sha]),
                    channels, advance, first, spares,
                )  # fmt: skip
                if received.problems:
                    raise DeviceError(
                        f"{name}: push verification failed: " + "; ".join(received.problems),
                        "push again: the host re-sends the missing or corrupted blobs",
                    )
                sent, commit = received.bytes_written, received.commit
    if commit is None and plan.model_path and not plan.missing:  # verified when it was made
        commit = PushCommit(
            tree_digest=plan.tree_digest, model_path=plan.model_path, files=len(manifest.entries)
        )
    elif commit is None:  # unless the push's one stream committed it
        with span("push-commit", name):
            commit = client.call_as(
                PushCommit, "push-commit", input=manifest.to_json().encode(), timeout=600
            )
    if progress:
        progress.finish(name, True)
    return PushResult(
        device=name,
        status=SUCCEEDED,
        files_total=len(manifest.entries),
        files_sent=sum(1 for e in manifest.entries if e.sha256 in missing_shas),
        bytes_sent=sent,
        bytes_skipped=manifest.total_bytes() - sent,
        seconds=round(time.monotonic() - started, 3),
        model_path=commit.model_path,
        tree_digest=commit.tree_digest,
    )


def _plan(
    client: AgentClient,
    manifest: Manifest,
    transport: Transport,
    concurrent: int,
    spares: Spares,
    eager: Callable[[], tuple[str, bytes] | None] | None = None,
) -> tuple[PushPlan, Stream | None, int]:
    """The device's push plan, the stream that asked for it (None on the paths that plan
    with a command of its own) and how many channels to use (the window rule on the
    measured round trip, unless EDGE_PUSH_CHANNELS fixes it). On a link whose login took
    long, `spares` opens streams beside the planning one. Else, for a push to one device,
    `eager` gives the bytes to send with the plan request (push_stream.eager_bytes).
    Measured: at 50 ms they only delayed the spares (opened once the request is written);
    to 16 devices, whose other pushes keep the links and the host's CPU busy anyway, an
    unchanged re-push paid for them (~5%)."""
    name = client.device.name
    channels = channels_for(transport, concurrent)
    ranged_min = PARALLEL_MIN if channels > 1 else manifest.total_bytes() + 1
    if settings().push_via == "sftp" or hasattr(transport, "serve_request"):
        # the old path, or a resident agent (`edge mux`) that plans with no Python start
        plan = client.call_as(
            PushPlan, "push-plan", "--ranged-min", str(ranged_min),
            input=manifest.to_json().encode(),
        )  # fmt: skip
        check_plan(name, plan, manifest)
        _check_paths(name, plan, "push-plan")
        return plan, None, channels
    # the first stream plans, then carries bytes: one command less per device
    spares.count = spare_streams(transport, manifest, concurrent)
    early = eager() if eager and concurrent == 1 and not spares.count else None
    header = plan_header(manifest, ranged_min, early)
    tail = early[1] if early else b""  # written while the plan is awaited
    try:
        data, first, waited = client.start_call(
            "push-receive", input=header, timeout=120,
            beside=spares.open if spares.count else None, tail=tail,
        )  # fmt: skip
    except SessionRefused:
        if not spares.count:
            raise
        # on a board that allows fewer sessions than sshd's 10, a spare's channel may have
        # taken the planning stream's: plan alone (the others then open as needed)
        spares.close()
        spares.count = 0
        data, first, waited = _plan_alone(client, header, transport.login_round_trip() or 0.0)
    try:
        plan = decode(name, "push-receive", PushPlan, data)
        check_plan(name, plan, manifest, "push-receive")
        _check_paths(name, plan, "push-receive")
        many = channels > 1 and plan.bytes_missing > 2 * STREAM_MIN_BYTES
        if many and not settings().push_channels:
            rtt, how = plan_round_trip(transport, waited, plan), "plan"
            if rtt is None:
                rtt, how = round_trip(client, first), "ping"
            channels = channels_by_rtt(rtt, channels_for(transport, concurrent, MAX_STREAMS))
            mark(
                f"round trip {rtt * 1000:.1f} ms ({how}): {channels} channels, "
                f"{spares.count} opened beside the plan", name,
            )  # fmt: skip
    except BaseException:
        first.abort()
        raise
    return plan, first, channels


def _plan_alone(client: AgentClient, header: bytes, rtt: float) -> tuple[Any, Stream, float]:
    """The planning stream again, once the device has seen the spares close (their
    sessions are free a round trip after), waiting twice as long after each refusal."""
    for attempt in range(PLAN_ALONE_TRIES):
        time.sleep(max(2 * rtt, 0.01) * 2**attempt)
        try:
            return client.start_call("push-receive", input=header, timeout=120)
        except SessionRefused:
            if attempt == PLAN_ALONE_TRIES - 1:
                raise
    raise AssertionError("unreachable")


PLAN_ALONE_TRIES = 4


def _commit_only(client: AgentClient, first: Stream, plan: PushPlan) -> PushCommit | None:
    """End the planning stream of a push that sends no bytes; where the tree is not
    there yet, its go line asks for the commit (no second command)."""
    name = client.device.name
    try:
        if not plan.model_path:
            first.write(json.dumps({"commit": True}).encode() + b"\n")
    except BrokenPipeError:  # the command ended early: its output says why
        pass
    except BaseException:
        first.abort()
        raise
    with span("push-commit", name):
        data = client.decode_result(first.finish(timeout=600), "push-receive")
    return decode(name, "push-receive", PushReceived, data).commit


def _upload_sftp(
    transport: Transport,
    payload: Payload,
    plan: PushPlan,
    by_sha: dict[str, str],
    channels: int,
    advance: Callable[[int], None] | None,
) -> int:
    """The SFTP path (EDGE_PUSH_VIA=sftp): byte ranges written by paramiko, the finished
    ones recorded from the host."""
    tasks = _tasks(payload, plan, by_sha)
    saver = _SidecarSaver(transport, tasks.sidecars, tasks.records)
    try:
        sent = transport.upload_ranges(
            tasks.ranges, channels, advance, saver.done if tasks.sidecars else None
        )
    except BaseException as exc:  # keep every finished range for the resume, unless
        # the link is dead: saving would only wait for a new connection to time out
        saver.stop(final_save=not isinstance(exc, DeadLinkError))
        raise
    saver.stop()
    return sent


def _check_paths(device: str, plan: PushPlan, command: str) -> None:
    """Every missing blob comes with the path to write it to (and its range record's)."""
    for i, need in enumerate(plan.missing):
        if (
            not need.upload_path
            or (need.ranges and not need.record_path)
            or "\x00" in need.upload_path + need.record_path
        ):
            raise malformed(device, command, f"missing[{i}]: no usable upload path")


PARALLEL_MIN = 16 << 20  # blobs with more than this left go out in ranges on channels
SIDECAR_EVERY_S = 1.0


class _SidecarSaver:
    """Records finished byte ranges on the device (`<blob>.partial.ranges`) from a thread
    of its own, at most once a second, so that the data channels never wait for it; an
    interrupted push resumes from the last record (redoing at most ~1 s of ranges)."""

    def __init__(
        self, transport: Transport, sidecars: dict[str, list[list[int]]], records: dict[str, str]
    ) -> None:
        self.transport = transport
        self.sidecars = sidecars
        self.records = records  # upload path -> where the device keeps its range record
        self.lock = threading.Lock()
        self.dirty: set[str] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        if sidecars:
            self.thread.start()

    def done(self, task: RangeTask) -> None:
        with self.lock:
            ranges = self.sidecars.get(task.remote)
            if ranges is not None:
                ranges.append([task.start, task.end])
                self.dirty.add(task.remote)

    def _save(self) -> None:
        with self.lock:
            todo = {r: json.dumps({"done": self.sidecars[r]}).encode() for r in self.dirty}
            self.dirty.clear()
        for remote, data in todo.items():
            self.transport.write_bytes(self.records[remote], data)

    def _loop(self) -> None:
        try:
            while not self.stopping.wait(max(SIDECAR_EVERY_S, 0.01)):
                self._save()
        except EdgeError:  # the data channels see a dead link too, and report it
            pass

    def stop(self, final_save: bool = False) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()
        if final_save and self.sidecars:
            try:
                self._save()
            except EdgeError:  # the link is gone: the last record on the device stands
                pass


@dataclass
class _Tasks:
    ranges: list[RangeTask]
    sidecars: dict[str, list[list[int]]]  # upload path -> finished ranges
    records: dict[str, str]  # upload path -> its range record's path


def _tasks(payload: Payload, plan: PushPlan, by_sha: dict[str, str]) -> _Tasks:
    """Byte-range tasks for every missing blob. A blob the device set up for ranges (big,
    or an interrupted parallel upload) is cut into ranges written in parallel, with the
    finished ones recorded beside it; the rest go whole, resumable by size."""
    out = _Tasks([], {}, {})
    for need in plan.missing:
        remote = need.upload_path
        local = payload.local_file(by_sha[need.sha256])
        if not need.ranges:
            out.ranges.append(RangeTask(local, remote, need.offset, need.size))
            continue
        todo = [piece for a, b in need.ranges for piece in split(a, b)]
        out.sidecars[remote] = gaps(need.ranges, need.size)  # what is already there
        out.records[remote] = need.record_path
        out.ranges.extend(RangeTask(local, remote, a, b) for a, b in todo)
    return out


def push(
    source: Path,
    devices: Sequence[Device],
    kind: str = "model",
    progress: PushProgress | None = None,
    max_parallel: int = 8,
    early: EarlyTransports | None = None,
) -> GroupResult:
    """Push `source` to every device concurrently (bounded); one PushResult per device.
    `early`: transports whose connections began before this was called."""
    from edge.agent.sessions import open_client

    if settings().push_via not in ("auto", "openssh") and any(not d.is_local for d in devices):
        # paramiko takes ~0.5 s to import: let that overlap the hashing (the system ssh's
        # path needs no paramiko, and would only wait for that import's lock)
        threading.Thread(
            target=importlib.import_module, args=("edge.transport.ssh",), daemon=True
        ).start()
    hashed: Future[Payload] = Future()

    def hash_payload() -> None:
        try:
            with span("hash payload"):
                hashed.set_result(make_payload(source, kind))
        except BaseException as exc:  # the error of the whole push, raised below
            hashed.set_exception(exc)

    # the devices' connections come up while the payload is hashed
    threading.Thread(target=hash_payload, name="hash payload", daemon=True).start()

    def work(device: Device) -> PushResult:
        with open_client(device, True, early.take(device) if early else None) as client:
            client.transport.prepare()
            payload = hashed.result()
            try:
                return push_to(client, payload, progress, min(len(devices), max_parallel))
            except UserError:
                if progress:
                    progress.finish(device.name, False)
                raise

    run = fan_out(devices, work, PushResult, max_parallel)
    payload = hashed.result()  # a payload that could not be hashed fails the push, once
    for result in run.failed:
        result.files_total = len(payload.manifest.entries)
    return run
