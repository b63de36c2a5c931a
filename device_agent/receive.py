"""`push-receive`: the bytes of a push as one framed stream on stdin, written into the
store's uploads, hashed as they arrive.

Stream: one header line, JSON `{"manifest": Manifest, "blobs": [sha256, ...],
"record_every": seconds, "commit": bool}`, then frames until end of input: `FRAME` (blob
index into "blobs", offset, length) followed by `length` bytes. The push's first stream
may ask for the plan instead of naming blobs (see `receive`), which saves a command per
device. The host names no path: a blob's upload is `store/<sha>.partial`, as the push
plan made it. A blob whose bytes arrive in order from its resume offset is hashed on the
way in; when it is whole and its sha256 matches, it is fsynced and moved into the store,
so that `push-commit` need not read it again (the disk writes of every WRITE_BEHIND
bytes start as they are written, so the fsync has little left). Any other blob (byte
ranges from several streams) is verified by the commit, as before; its disk writes start
as its runs of bytes are written too, kept in memory for that read-back. Finished ranges
of a ranged upload are merged into its record (`.partial.ranges`) under a lock on the
upload, every `record_every` seconds (1 by default) and at the end, so an interrupted
push resumes by range; the push's first stream reads those records to commit as soon as
every byte is there. A blob that a concurrent push already stored is not written again.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from .durable import fsync_dir
from .errors import AgentError
from .manifest import manifest_from_json, validate_manifest
from .protocol_core import (
    PUSH_COMMIT_INDEX,
    PUSH_WHOLE_OFFSET,
    Manifest,
    ManifestEntry,
    PushPlan,
    PushReceived,
)
from .protocol_core import PUSH_FRAME as FRAME
from .store import BlobStore
from .stream_io import (
    options,
    read_exact,
    read_into,
    read_line,
    since_start,
    skip,
    wait_input,
    widen_pipe,
)
from .upload import Upload

MAX_FRAME = 16 << 20
MAX_PINGS = 8
MAX_EAGER = 4 << 20  # bytes a header may send before its plan
# A frame is read and written in pieces of one reused buffer: a fresh 1 MiB object per
# frame, filled over many pipe reads and copied out cold, cost the agent twice the system
# time in a 16-device fan-out.
PIECE = 256 << 10


def receive(
    root: str, inp: IO[bytes], say: Optional[Callable[[Dict[str, Any]], None]] = None
) -> PushReceived:
    """Read one push stream from `inp` into the store under `root`.

    A header with `"plan": {"ranged_min": N}` instead of "blobs" makes this the push's
    first stream: the push plan goes out through `say` (a line on stdout) while the command
    runs; then up to MAX_PINGS `{"ping": true}` lines, each answered at once with a
    `{"pong": n}` line (the host measures the round trip by them), then one go line
    `{"commit", "record_every"}`, then the frames of the plan's missing blobs, in its
    order. No go line (end of input): nothing to send. A commit frame (PUSH_COMMIT_INDEX)
    ends any stream's frames and makes it commit the push. On the first stream, a
    commit-when-whole frame (PUSH_WHOLE_OFFSET) makes it commit as soon as the other
    streams' records say every byte is there, unless more input comes first (frames a
    refused stream left, then a commit frame); at the end of input it commits what is
    whole.

    Such a header may also name `"eager": {"sha256": S, "bytes": N}`: the first N bytes of
    blob S follow it at once, sent before the plan so that the link is busy while this
    process starts. Where the plan has S wholly missing, they are written (before the plan
    goes out, which then asks for the rest: `eager_bytes` says so); else they are read
    and dropped after it. A plan whose tree is there already ends the command at once,
    with nothing more read: the host's end of input (and any eager bytes still on the
    way) is not waited for."""
    store = BlobStore(root)
    widen_pipe(inp)
    header = read_line(inp, "header")
    if header is None:
        raise AgentError("push-receive: no header line", "send the header line first")
    eager: Optional[Tuple[str, int]] = None
    try:
        manifest = manifest_from_json(json.dumps(header["manifest"]))
        asked = header.get("plan")
        if asked is None:
            blobs = [str(s) for s in header["blobs"]]
            commit, every = options(header)
        else:
            ranged_min = asked["ranged_min"]
            if ranged_min is not None and (not isinstance(ranged_min, int) or ranged_min < 0):
                raise ValueError(f"ranged_min {ranged_min!r}")
            if header.get("eager") is not None:
                eager = _eager(header["eager"])
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"push-receive: bad header: {exc}", "send the push's header") from None
    validate_manifest(manifest)
    by_sha: Dict[str, List[ManifestEntry]] = {}
    for e in manifest.entries:
        by_sha.setdefault(e.sha256, []).append(e)
    if eager is not None and (eager[0] not in by_sha or eager[1] > by_sha[eager[0]][0].size):
        raise AgentError("push-receive: the eager bytes are not of a blob of the manifest")
    out = PushReceived()
    plan: Optional[PushPlan] = None
    uploads: Dict[int, Upload] = {}
    buf = memoryview(bytearray(PIECE))
    try:
        if asked is not None:
            plan = store.plan(manifest, ranged_min)
            if say is None:
                raise AgentError("push-receive: nowhere to send the plan")
            read = eager is not None and _take_eager(
                store, plan, eager, by_sha, inp, buf, out, uploads
            )
            plan.agent_seconds = round(since_start(), 4)
            say(plan.to_dict())
            if plan.model_path:  # the tree is there: nothing that follows matters
                return out
            if eager is not None and not read and skip(inp, eager[1], buf) < eager[1]:
                raise AgentError("push-receive: the stream ended inside the eager bytes")
            go = read_line(inp, "go")
            pings = 0
            while go is not None and "ping" in go and pings < MAX_PINGS:  # the host times them
                pings += 1
                say({"pong": pings})
                go = read_line(inp, "go")
            if go is None:  # the host had nothing to send
                return _finish(store, manifest, uploads, out, False)
            try:
                commit, every = options(go)
            except (ValueError, TypeError) as exc:
                raise AgentError(f"push-receive: bad go line: {exc}", "send the go line") from None
            blobs = [need.sha256 for need in plan.missing]
        if any(s not in by_sha for s in blobs) or len(blobs) > 0xFFFF:
            raise AgentError("push-receive: the header names blobs outside its manifest")
        os.makedirs(store.store_dir, exist_ok=True)
        last_save = time.monotonic()
        whole: Optional[Callable[[], bool]] = None  # set by a commit-when-whole frame
        while True:
            head = read_exact(inp, FRAME.size)
            if not head:
                commit = commit or whole is not None and whole()
                break
            if len(head) < FRAME.size:
                raise AgentError("push-receive: the stream ended inside a frame header")
            index, offset, length = FRAME.unpack(head)
            if index == PUSH_COMMIT_INDEX and offset == length == 0:
                commit = True  # every other stream has ended: this one commits
                break
            if index == PUSH_COMMIT_INDEX and offset == PUSH_WHOLE_OFFSET and not length:
                if plan is None:
                    raise AgentError("push-receive: a commit-when-whole frame on a spare stream")
                whole = functools.partial(_whole, store, plan, uploads)
                if wait_input(inp, whole):
                    commit = True  # every byte is here: no word from the host needed
                    break
                continue
            if index >= len(blobs) or length > MAX_FRAME:
                raise AgentError(f"push-receive: bad frame (blob {index}, {length} bytes)")
            up = uploads.get(index)
            if up is None:
                up = uploads[index] = Upload(store, blobs[index], by_sha[blobs[index]])
            if offset + length > up.size:
                raise AgentError(
                    f"push-receive: a frame past the end of blob {up.sha} "
                    f"({offset}+{length} > {up.size})"
                )
            _write(inp, up, offset, length, buf, out)
            if time.monotonic() - last_save >= every:
                for u in uploads.values():
                    u.save_record()
                last_save = time.monotonic()
        return _finish(store, manifest, uploads, out, commit)
    finally:
        for up in uploads.values():
            try:
                up.save_record()  # what arrived before an error counts for the resume
            finally:
                up.close()


def _write(
    inp: IO[bytes], up: Upload, offset: int, length: int, buf: memoryview, out: PushReceived
) -> None:
    """Bytes [offset, offset + length) of `up`'s blob from `inp`, piece by piece, each
    written while it is still in the cache."""
    if not up.started:
        up.begin(offset)
    while length:
        piece = buf[: min(length, PIECE)]
        if read_into(inp, piece) < len(piece):
            raise AgentError("push-receive: the stream ended inside a frame")
        length -= len(piece)
        while piece and not up.dropped:
            n = os.pwrite(up.fd, piece, offset)
            up.wrote(offset, piece[:n])
            offset += n
            out.bytes_written += n
            piece = piece[n:]


def _finish(
    store: BlobStore,
    manifest: Manifest,
    uploads: Dict[int, Upload],
    out: PushReceived,
    commit: bool,
) -> PushReceived:
    """Promote what this stream received whole; commit when it is the push's last."""
    for up in uploads.values():
        up.end_writes()
    promoted = [up.finish(store, out) for up in uploads.values()]
    if any(promoted):
        fsync_dir(store.store_dir)
    if commit and not out.problems:  # the push's only stream: no second command
        out.commit = store.commit(manifest)
    return out


def _whole(store: BlobStore, plan: PushPlan, uploads: Dict[int, Upload]) -> bool:
    """Whether the device has every byte of the plan: this stream's ranges go into their
    records first, and its in-order blobs count once whole (`_finish` promotes them)."""
    for up in uploads.values():
        up.end_writes()
        up.save_record()
    mine = {u.sha for u in uploads.values() if u.hasher is not None and u.next == u.size}
    return store.uploaded(plan.missing, mine)


def _eager(obj: Any) -> Tuple[str, int]:
    """(sha256, bytes) of a header's "eager" object."""
    sha, nbytes = obj["sha256"], obj["bytes"]
    if not isinstance(sha, str) or type(nbytes) is not int or not 0 < nbytes <= MAX_EAGER:
        raise ValueError(f"eager {obj!r}")
    return sha, nbytes


def _take_eager(
    store: BlobStore,
    plan: PushPlan,
    eager: Tuple[str, int],
    by_sha: Dict[str, List[ManifestEntry]],
    inp: IO[bytes],
    buf: memoryview,
    out: PushReceived,
    uploads: Dict[int, Upload],
) -> bool:
    """Write the eager bytes where the plan has their blob wholly missing, and take them
    out of the plan; whether they were read (False: a blob in the store or part-sent,
    whose eager bytes the caller drops after the plan)."""
    sha, nbytes = eager
    index = next((i for i, need in enumerate(plan.missing) if need.sha256 == sha), -1)
    if index < 0:
        return False
    need = plan.missing[index]
    fresh = need.ranges == [[0, need.size]] if need.ranges else need.offset == 0
    if not fresh:
        return False
    up = uploads[index] = Upload(store, sha, by_sha[sha])
    _write(inp, up, 0, nbytes, buf, out)
    if up.dropped:  # a concurrent push stored it meanwhile: its bytes were read, not kept
        return True
    up.save_record()
    if need.ranges:
        need.ranges = [[nbytes, need.size]]
    else:
        need.offset = nbytes
    plan.bytes_missing -= nbytes
    plan.eager_bytes = nbytes
    return True
