"""The protocol's types that the quick agent commands need: the device facts (`info`) and
the push (`push-plan`, `push-receive`, `push-commit`); and what every result shares (its
statuses and `DeviceResult`), which the host's quick commands (`edge fleet probe`) need.

They live apart from the job specs and results so that those commands start without
building the other ~35 dataclasses of `protocol` (about 15 ms of every start on this
machine's CPU, more on a board's). `protocol` re-exports every name here; the host's
modules on a quick command's path import them from here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Type, TypeVar

from .trt_types import Capabilities
from .wire import RANGE_CHECKS, JsonMixin, ProtocolError

PROTOCOL_VERSION = 1

# The agent commands its `serve` answers (the multiplexer's resident agent): short ones that
# answer and return. Part of the protocol: the host decides by it what it may send there.
SERVED = frozenset(
    {
        "info",
        "status",
        "result",
        "cancel",
        "jobs",
        "plan",
        "push-plan",
        "push-commit",
        "cache",
        "manifest",
        "gc",
    }
)

# Job statuses: a closed set. QUEUED waits for the GPU lock; the last three are terminal.
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
TERMINAL = (SUCCEEDED, FAILED, CANCELED)


R = TypeVar("R", bound="DeviceResult")


@dataclass
class DeviceResult(JsonMixin):
    """One device's answer to one operation: the device, `succeeded` or `failed`, and for
    a failure the error and the hint that names the fix. Every per-device result (convert,
    bench, validate, push, info, probe, trust, dry run, agent install, job listing) is one."""

    device: str
    status: str
    error: Optional[str] = None
    hint: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCEEDED

    @classmethod
    def failure(cls: Type[R], device: str, error: str, hint: Optional[str] = None) -> R:
        """A failed result of this type (every other field at its default)."""
        return cls(device=device, status=FAILED, error=error, hint=hint)


@dataclass
class JetsonInfo(JsonMixin):
    module: str
    l4t: Optional[str] = None
    jetpack: Optional[str] = None
    compute_capability: Optional[str] = None
    memory_mb: Optional[int] = None
    soc: Optional[str] = None
    device_tree_model: Optional[str] = None
    nvpmodel: Optional[str] = None
    device_class: Optional[str] = None  # recipe override key, e.g. "orin-nano-8gb"
    # jetson_clocks in effect (every CPU's and the GPU's minimum clock pinned to its maximum);
    # None where the clocks could not be read
    jetson_clocks: Optional[bool] = None


@dataclass
class DeviceFacts(JsonMixin):
    agent_version: str
    protocol: int
    python: str
    machine: str
    hostname: str
    memory_total_mb: int
    memory_available_mb: int
    swap_total_mb: int
    disk_free_mb: int
    tensorflow: Optional[str] = None
    numpy: Optional[str] = None
    jetson: Optional[JetsonInfo] = None
    # Filled by `info --deep` only (it imports TensorFlow).
    tensorrt_enabled: Optional[bool] = None
    tensorrt_linked: Optional[str] = None
    tensorrt_loaded: Optional[str] = None
    # The TensorRT stack (the tensorrt module, pycuda, DLA, trtexec, CUDA) and which
    # backends can run: `info --deep` and every plan.
    capabilities: Optional[Capabilities] = None


@dataclass
class ManifestEntry(JsonMixin):
    """One file of a pushed tree: a relative POSIX path, its size and sha256."""

    path: str
    size: int
    sha256: str
    mode: int = 0o644


@dataclass
class Manifest(JsonMixin):
    """A tree to push (a SavedModel, or calibration data). `name` is for people only."""

    entries: List[ManifestEntry] = field(default_factory=list)
    name: str = ""
    kind: str = "model"  # "model" | "calib"

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@dataclass
class BlobNeed(JsonMixin):
    """A blob the device lacks: send bytes [offset, size) to `upload_path`."""

    sha256: str
    size: int
    offset: int = 0
    # A parallel (multi-channel) upload that was interrupted: the byte ranges [start, end)
    # still to send; when set, `offset` is unused.
    ranges: List[List[int]] = field(default_factory=list)
    # Where the host writes this blob's bytes, and (for ranges) its record of the finished
    # ones: the device names them, so its store layout stays its own.
    upload_path: str = ""
    record_path: str = ""


@dataclass
class PushPlan(JsonMixin):
    """The device's answer to a manifest: what it lacks, and whether it fits."""

    tree_digest: str
    missing: List[BlobNeed] = field(default_factory=list)
    bytes_missing: int = 0
    bytes_present: int = 0
    disk_free_bytes: int = 0
    store_dir: str = ""
    model_path: Optional[str] = None  # set when the tree is already materialized
    prepared: bool = False  # `.partial` files and range records were created by the plan
    # push-receive's plan: seconds since sshd started the agent (the host takes them out
    # of its wait for this answer to learn the round trip)
    agent_seconds: float = 0.0
    # push-receive's plan: the first bytes the header sent before it, written (`missing`
    # already asks only for the rest of that blob)
    eager_bytes: int = 0


@dataclass
class PushCommit(JsonMixin):
    """The device verified every blob and materialized the tree at `model_path`."""

    tree_digest: str
    model_path: str
    files: int = 0
    bytes_verified: int = 0


# A `push-receive` frame header: blob index (in the stream header's list), offset, length.
PUSH_FRAME = struct.Struct(">HQI")
# A frame with this blob index (and no bytes) ends a stream's frames and asks it to commit
# the push: the host sends it on the first stream once every other stream has ended.
PUSH_COMMIT_INDEX = 0xFFFF
# With this offset (and no bytes), it asks the push's first stream to commit as soon as
# the device has every byte (the other streams' range records say so), instead of when
# the host has seen them end: the host sends it once this stream's own pieces are sent.
PUSH_WHOLE_OFFSET = 1


@dataclass
class PushReceived(JsonMixin):
    """What one `push-receive` stream wrote: bytes, and the blobs it verified on the way
    in and moved into the store (the commit need not read those again)."""

    bytes_written: int = 0
    bytes_verified: int = 0
    verified: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    commit: Optional[PushCommit] = None  # the stream was the push's only one: committed


def non_negative(*names: str) -> Callable[[Any, str], None]:
    """A range check: these fields, where set, are not negative."""

    def check(obj: Any, where: str) -> None:
        for name in names:
            value = getattr(obj, name)
            if value is not None and value < 0:
                raise ProtocolError(f"{where}.{name}: must not be negative, got {value}")

    return check


def _check_blob_need(need: BlobNeed, where: str) -> None:
    non_negative("size", "offset")(need, where)
    if need.offset > need.size:
        raise ProtocolError(f"{where}.offset: {need.offset} is past the blob's size {need.size}")
    for i, span in enumerate(need.ranges):
        if len(span) != 2 or not 0 <= span[0] < span[1] <= need.size:
            raise ProtocolError(
                f"{where}.ranges[{i}]: {span} is not a byte range "
                f"[start, end) within 0..{need.size}"
            )


# Sizes, offsets and counts a broken or hostile peer could send negative.
RANGE_CHECKS.update(
    {
        ManifestEntry: non_negative("size", "mode"),
        BlobNeed: _check_blob_need,
        PushPlan: non_negative("bytes_missing", "bytes_present", "disk_free_bytes"),
        PushCommit: non_negative("files", "bytes_verified"),
        DeviceFacts: non_negative(
            "memory_total_mb", "memory_available_mb", "swap_total_mb", "disk_free_mb"
        ),
    }
)
