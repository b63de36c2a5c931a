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
ranges from several streams) is verified by the commit, as before. Finished ranges of a
ranged upload are merged into its record (`.partial.ranges`) under a lock on the upload,
every `record_every` seconds (1 by default) and at the end, so an interrupted push
resumes by range. A blob that a concurrent push already stored is not written again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import time
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from .durable import atomic_write, fsync_dir
from .errors import AgentError
from .manifest import gaps, manifest_from_json, validate_manifest
from .protocol_core import PUSH_COMMIT_INDEX, ManifestEntry, PushReceived
from .protocol_core import PUSH_FRAME as FRAME
from .store import RANGES_SUFFIX, BlobStore, file_mode, is_same_file

MAX_FRAME = 16 << 20
MAX_HEADER = 64 << 20
RECORD_EVERY_S = 1.0
MAX_PINGS = 8
READ = 1 << 20
# A frame is read and written in pieces of one reused buffer: a fresh 1 MiB object per
# frame, filled over many pipe reads and copied out cold, cost the agent twice the system
# time in a 16-device fan-out.
PIECE = 256 << 10
WRITE_BEHIND = 8 << 20  # bytes written between starts of their writeback
PIPE_BYTES = 1 << 20  # Linux's default cap for an unprivileged F_SETPIPE_SZ


class _Upload:
    """One blob's `.partial` while this stream writes into it."""

    def __init__(self, store: BlobStore, sha: str, entries: List[ManifestEntry]) -> None:
        self.sha, self.entries, self.size = sha, entries, entries[0].size
        self.path = store.blob_path(sha) + ".partial"
        self.done: List[List[int]] = []  # ranges this stream wrote (for the record)
        self.dirty = self.started = False
        self.hasher: Optional[hashlib._Hash] = None
        self.next = -1  # where the in-order hash continues; -1: not hashing
        self.behind = [-1, -1]  # hashed since the last write-behind (see _behind)
        self.rfd = self.fd = -1
        self.record = self.path + RANGES_SUFFIX
        self.ranged = False
        try:  # a concurrent push of the blob promoted it: its bytes are dropped
            if os.stat(store.blob_path(sha)).st_size == self.size:
                return
        except OSError:
            pass
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC
        try:  # never through a symlink planted at the upload
            self.fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise AgentError(
                f"push-receive: cannot open the upload of {sha}: {exc.strerror}",
                "remove the file at that path on the device, then push again",
            ) from None
        self.ranged = os.path.isfile(self.record) and not os.path.islink(self.record)

    @property
    def dropped(self) -> bool:
        """True when the blob was in the store already as this stream began."""
        return self.fd < 0

    def begin(self, offset: int) -> None:
        """At the first frame: hash in order if it starts where the upload stands."""
        self.started = True
        if self.dropped:
            return
        have = os.fstat(self.fd).st_size
        if offset != have or self.ranged and offset != 0:
            return
        h = hashlib.sha256()
        pos = 0
        while pos < offset:  # the part an earlier push left
            chunk = os.pread(self.fd_read(), min(READ, offset - pos), pos)
            if not chunk:
                return
            h.update(chunk)
            pos += len(chunk)
        self.hasher, self.next = h, offset

    def fd_read(self) -> int:
        if self.rfd < 0:
            self.rfd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
        return self.rfd

    def wrote(self, offset: int, data: memoryview) -> None:
        if self.hasher is not None:
            if offset == self.next:
                self.hasher.update(data)
                self.next += len(data)
                self._behind(offset, offset + len(data))
            else:
                self.hasher = None
        if self.ranged:
            if self.done and self.done[-1][1] == offset:
                self.done[-1][1] = offset + len(data)
            else:
                self.done.append([offset, offset + len(data)])
            self.dirty = True

    def _behind(self, start: int, stop: int) -> None:
        """Start the disk writes of every WRITE_BEHIND bytes hashed in order, so that the
        blob's fsync does not find all of it still in memory. Only those: DONTNEED drops
        the pages once written, and a blob the commit verifies would be read back from
        the disk."""
        if self.behind[0] < 0:
            self.behind[0] = start
        self.behind[1] = stop
        if stop - self.behind[0] < WRITE_BEHIND:
            return
        start = self.behind[0]
        self.behind = [-1, -1]
        try:  # DONTNEED starts the writeback of dirty pages (and drops the clean ones)
            os.posix_fadvise(self.fd, start, stop - start, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):  # not on this system: the fsync does it all
            pass

    def save_record(self) -> None:
        """Merge this stream's ranges into the record, under a lock other streams share."""
        if not (self.ranged and self.dirty):
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if not is_same_file(self.path, self.fd):  # promoted or dropped meanwhile
                return
            try:
                with open(self.record) as f:
                    have = [[int(a), int(b)] for a, b in json.load(f)["done"]]
            except (OSError, ValueError, KeyError, TypeError):
                have = []
            merged = gaps(gaps(have + self.done, self.size), self.size)  # the complement's
            atomic_write(self.record, json.dumps({"done": merged}).encode("ascii"))
            self.dirty = False
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def finish(self, store: BlobStore, out: PushReceived) -> bool:
        """Verify and promote a whole, in-order blob; True when it was promoted."""
        if self.dropped or self.hasher is None or self.next != self.size:
            return False
        if os.fstat(self.fd).st_size != self.size:
            return False
        if self.hasher.hexdigest() != self.sha:
            if is_same_file(self.path, self.fd):
                _remove(self.path)
                _remove(self.record)
            self.ranged = self.dirty = False  # no record of bytes that are gone
            names = ", ".join(e.path for e in self.entries)
            out.problems.append(f"{names}: the bytes received do not match sha256 {self.sha}")
            return False
        os.fsync(self.fd)
        os.fchmod(self.fd, file_mode(self.entries[0]))
        if is_same_file(self.path, self.fd):  # not a newer upload at the same name
            _remove(self.record)
            try:
                os.replace(self.path, store.blob_path(self.sha))
            except FileNotFoundError:  # a concurrent push of the same blob promoted it first
                pass
        try:
            if os.stat(store.blob_path(self.sha)).st_size != self.size:
                return False
        except FileNotFoundError:
            return False
        self.ranged = False  # its record is gone with it
        out.verified.append(self.sha)
        out.bytes_verified += self.size
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        if self.rfd >= 0:
            os.close(self.rfd)


def since_start() -> float:
    """Seconds since this process began: since sshd forked it, so the login shell and
    Python's start count too (a shell that runs one command execs it). 0.0 where /proc
    does not say: the host then times a ping."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        began = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - began)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _read_exact(inp: IO[bytes], n: int) -> bytes:
    data = inp.read(n)
    return data if data is not None else b""


def _read_into(inp: IO[bytes], view: memoryview) -> int:
    """Fill `view` from `inp`; fewer bytes only at the end of input."""
    got = 0
    while got < len(view):
        n = inp.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def _line(inp: IO[bytes], what: str) -> Optional[Dict[str, Any]]:
    """One JSON object line of the stream; None at the end of input."""
    line = inp.readline(MAX_HEADER)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise AgentError(f"push-receive: no {what} line", f"send the {what} line first")
    try:
        obj = json.loads(line.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgentError(f"push-receive: bad {what}: {exc}", "send the push's header") from None
    if not isinstance(obj, dict):
        raise AgentError(f"push-receive: bad {what}: not an object", "send the push's header")
    return obj


def _options(obj: Dict[str, Any]) -> Tuple[bool, float]:
    """(commit, record_every) of a header or go line."""
    commit = obj.get("commit") is True
    every = min(max(float(obj.get("record_every", RECORD_EVERY_S)), 0.0), 60.0)
    return commit, every


def _widen_pipe(inp: IO[bytes]) -> None:
    """Let the writer of a pipe on stdin (sshd) queue a whole frame: fewer, larger reads and
    wakeups on both sides. Linux only; elsewhere, or past the system's cap, nothing."""
    try:
        fd = inp.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ValueError, AttributeError):
        pass


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
    ends any stream's frames and makes it commit the push."""
    store = BlobStore(root)
    _widen_pipe(inp)
    header = _line(inp, "header")
    if header is None:
        raise AgentError("push-receive: no header line", "send the header line first")
    try:
        manifest = manifest_from_json(json.dumps(header["manifest"]))
        asked = header.get("plan")
        if asked is None:
            blobs = [str(s) for s in header["blobs"]]
            commit, every = _options(header)
        else:
            ranged_min = asked["ranged_min"]
            if ranged_min is not None and (not isinstance(ranged_min, int) or ranged_min < 0):
                raise ValueError(f"ranged_min {ranged_min!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"push-receive: bad header: {exc}", "send the push's header") from None
    validate_manifest(manifest)
    if asked is not None:
        plan = store.plan(manifest, ranged_min)
        if say is None:
            raise AgentError("push-receive: nowhere to send the plan")
        plan.agent_seconds = round(since_start(), 4)
        say(plan.to_dict())
        go = _line(inp, "go")
        pings = 0
        while go is not None and "ping" in go and pings < MAX_PINGS:  # the host times them
            pings += 1
            say({"pong": pings})
            go = _line(inp, "go")
        if go is None:  # the host had nothing to send
            return PushReceived()
        try:
            commit, every = _options(go)
        except (ValueError, TypeError) as exc:
            raise AgentError(f"push-receive: bad go line: {exc}", "send the go line") from None
        blobs = [need.sha256 for need in plan.missing]
    by_sha: Dict[str, List[ManifestEntry]] = {}
    for e in manifest.entries:
        by_sha.setdefault(e.sha256, []).append(e)
    if any(s not in by_sha for s in blobs) or len(blobs) > 0xFFFF:
        raise AgentError("push-receive: the header names blobs outside its manifest")
    os.makedirs(store.store_dir, exist_ok=True)
    out = PushReceived()
    uploads: Dict[int, _Upload] = {}
    buf = memoryview(bytearray(PIECE))
    last_save = time.monotonic()
    try:
        while True:
            head = _read_exact(inp, FRAME.size)
            if not head:
                break
            if len(head) < FRAME.size:
                raise AgentError("push-receive: the stream ended inside a frame header")
            index, offset, length = FRAME.unpack(head)
            if index == PUSH_COMMIT_INDEX and offset == length == 0:
                commit = True  # every other stream has ended: this one commits
                break
            if index >= len(blobs) or length > MAX_FRAME:
                raise AgentError(f"push-receive: bad frame (blob {index}, {length} bytes)")
            up = uploads.get(index)
            if up is None:
                up = uploads[index] = _Upload(store, blobs[index], by_sha[blobs[index]])
            if offset + length > up.size:
                raise AgentError(
                    f"push-receive: a frame past the end of blob {up.sha} "
                    f"({offset}+{length} > {up.size})"
                )
            if not up.started:
                up.begin(offset)
            while length:  # piece by piece, each written while it is still in the cache
                piece = buf[: min(length, PIECE)]
                if _read_into(inp, piece) < len(piece):
                    raise AgentError("push-receive: the stream ended inside a frame")
                length -= len(piece)
                while piece and not up.dropped:
                    n = os.pwrite(up.fd, piece, offset)
                    up.wrote(offset, piece[:n])
                    offset += n
                    out.bytes_written += n
                    piece = piece[n:]
            if time.monotonic() - last_save >= every:
                for u in uploads.values():
                    u.save_record()
                last_save = time.monotonic()
        promoted = [up.finish(store, out) for up in uploads.values()]
        if any(promoted):
            fsync_dir(store.store_dir)
        if commit and not out.problems:  # the push's only stream: no second command
            out.commit = store.commit(manifest)
    finally:
        for up in uploads.values():
            try:
                up.save_record()  # what arrived before an error counts for the resume
            finally:
                up.close()
    return out
