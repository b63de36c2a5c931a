"""One blob's upload (`store/<sha>.partial`) while a `push-receive` stream writes into
it (device_agent/receive.py): its in-order hash, the disk writes started behind it, its
range record, and its promotion into the store once whole and verified."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from typing import Callable, List, Optional

from .durable import replace_then_sync, start_writeback
from .errors import AgentError
from .manifest import gaps
from .protocol_core import ManifestEntry, PushReceived
from .store import RANGES_SUFFIX, BlobStore, file_mode, is_same_file

READ = 1 << 20
WRITE_BEHIND = 8 << 20  # bytes written between starts of their writeback


class Upload:
    """One blob's `.partial` while this stream writes into it."""

    def __init__(self, store: BlobStore, sha: str, entries: List[ManifestEntry]) -> None:
        self.sha, self.entries, self.size = sha, entries, entries[0].size
        self.path = store.blob_path(sha) + ".partial"
        self.done: List[List[int]] = []  # ranges this stream wrote (for the record)
        self.dirty = self.started = False
        self.hasher: Optional[hashlib._Hash] = None
        self.next = -1  # where the in-order hash continues; -1: not hashing
        self.behind = [-1, -1]  # the run written since its last write-behind (_behind)
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
            else:
                self.hasher = None
        self._behind(offset, offset + len(data))
        if self.ranged:
            if self.done and self.done[-1][1] == offset:
                self.done[-1][1] = offset + len(data)
            else:
                self.done.append([offset, offset + len(data)])
            self.dirty = True

    def _behind(self, start: int, stop: int) -> None:
        """Count bytes [start, stop) as written: the disk writes of a run of them start
        once it is WRITE_BEHIND long, or when a write elsewhere ends it, so that the
        blob's fsync does not find all of it still in memory."""
        if self.behind[0] >= 0 and self.behind[1] != start:
            self._write_behind()
        if self.behind[0] < 0:
            self.behind[0] = start
        self.behind[1] = stop
        if stop - self.behind[0] >= WRITE_BEHIND:
            self._write_behind()

    def _write_behind(self) -> None:
        """Start the disk writes of the run counted so far. Bytes hashed in order are
        dropped from the cache once written (DONTNEED); any others are kept
        (sync_file_range), since the commit reads them back to verify them."""
        start, stop = self.behind
        self.behind = [-1, -1]
        if start < 0 or stop <= start or self.dropped:
            return
        if self.hasher is None:
            start_writeback(self.fd, start, stop - start)
            return
        try:  # DONTNEED starts the writeback of dirty pages (and drops the clean ones)
            os.posix_fadvise(self.fd, start, stop - start, os.POSIX_FADV_DONTNEED)
        except (AttributeError, OSError):  # not on this system: the fsync does it all
            pass

    def end_writes(self) -> None:
        """At the end of this stream's writes: start those of a blob the commit verifies,
        whose fsync comes later (measured on a 128 MiB blob from 8 streams at 50 ms: that
        fsync went from 43 to 59 ms down to under 1 ms). A blob hashed in order is
        fsynced as it is promoted, at once."""
        if self.hasher is None:
            self._write_behind()

    def save_record(self) -> None:
        """Merge this stream's ranges into the record, under a lock other streams share;
        its fsyncs come after the lock (measured: the 8 streams of a push ending together
        waited ~45 ms in turn for each other's, and the commit for them)."""
        if not (self.ranged and self.dirty):
            return
        sync: Optional[Callable[[], None]] = None
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
            sync = replace_then_sync(self.record, json.dumps({"done": merged}).encode("ascii"))
            self.dirty = False
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            if sync is not None:
                sync()

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


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
