"""Writes that survive a power cut: whole writes, atomic replacement, fsynced names; and
the room they have (`disk_usage`).

Stdlib only and Python 3.8, so the host uses it too (its inventory and known_hosts).
The zipapp's bootstrap keeps its own small copy of `fsync_dir`: it runs before this
package can be imported.
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union


def fsync_dir(path: str) -> None:
    """fsync a directory, so the names in it survive a power cut (best effort: some
    filesystems cannot fsync a directory)."""
    try:
        fd = os.open(path or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def start_writeback(fd: int, start: int, length: int) -> None:
    """Start the disk writes of bytes [start, start + length) of `fd` and return at once,
    keeping the pages cached: Linux's sync_file_range(SYNC_FILE_RANGE_WRITE), so that a
    later fsync finds little left while a read-back of the bytes stays in memory. A no-op
    where libc lacks it (the fsync then does it all)."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = _load_sync_file_range()
    if _sync_file_range:
        # its return is not checked: a write error shows at the fsync that follows
        _sync_file_range(fd, start, length, _SYNC_FILE_RANGE_WRITE)


def _load_sync_file_range() -> Any:
    try:
        import ctypes  # here: only a push of large files, from several streams, needs it

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (ImportError, OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range: Any = None  # loaded on first use; False where there is none
_SYNC_FILE_RANGE_WRITE = 2


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may be short, e.g. near ENOSPC)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write(path: str, data: Union[str, bytes], mode: Optional[int] = None) -> None:
    """Replace `path` with `data`, so that after a crash it is the old file or the new one,
    whole. The temporary file has a name of its own (O_EXCL), so concurrent writers never
    write into each other's; it is fsynced, renamed over `path`, and the directory fsynced.
    `mode`: default the replaced file's mode, else 0o644. A symlink at `path` is replaced
    by the file, except that the caller may pass `os.path.realpath(path)`."""
    fd, directory = _replace(path, data, mode, synced=True)
    fsync_dir(directory)


def replace_then_sync(
    path: str, data: Union[str, bytes], mode: Optional[int] = None
) -> Callable[[], None]:
    """atomic_write, its fsyncs left to the function returned (call it once). A writer
    that renames under a lock others wait for (a range record's) syncs after releasing
    it: their fsyncs then overlap, and the filesystem commits them together. Until then,
    a power cut may leave the new name on a file whose bytes never reached the disk
    (ext4 writes them before such a rename commits: auto_da_alloc)."""
    fd, directory = _replace(path, data, mode, synced=False)

    def sync() -> None:
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(directory)

    return sync


def _replace(
    path: str, data: Union[str, bytes], mode: Optional[int], synced: bool
) -> Tuple[int, str]:
    """Write `data` to a new file beside `path` (fsynced first if `synced`) and rename it
    over `path`; (its descriptor, still open unless `synced`; its directory)."""
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    raw = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(path) or "."
    fd, tmp = _create_beside(path)
    try:
        write_all(fd, raw)
        os.fchmod(fd, mode)
        if synced:
            os.fsync(fd)
            os.close(fd)
            fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    return fd, directory


def _create_beside(path: str) -> Tuple[int, str]:
    """A new file of our own beside `path` (O_EXCL), named `.<name>.<pid>.<n>.tmp`, as
    tempfile.mkstemp would make one but without its import (~5 ms of a start, which the
    first range record of each stream of a push paid under the record's lock)."""
    global _created
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    head = os.path.join(os.path.dirname(path) or ".", "." + os.path.basename(path))
    for _ in range(100):
        _created += 1
        tmp = f"{head}.{os.getpid()}.{_created}.tmp"
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:  # one a process of the same pid left: the next number
            continue
    raise FileExistsError(f"{head}.{os.getpid()}.*.tmp: 100 taken")


_created = 0


class DiskUsage(NamedTuple):
    total: int
    free: int


def disk_usage(path: str) -> DiskUsage:
    """What shutil.disk_usage says of total and free bytes, without loading shutil (with
    the compressors it imports, ~5 ms of an agent command's start)."""
    st = os.statvfs(path)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
