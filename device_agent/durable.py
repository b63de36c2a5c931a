"""Writes that survive a power cut: whole writes, atomic replacement, fsynced names; and
the room they have (`disk_usage`).

Stdlib only and Python 3.8, so the host uses it too (its inventory and known_hosts).
The zipapp's bootstrap keeps its own small copy of `fsync_dir`: it runs before this
package can be imported.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Union


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
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
    raw = data.encode("utf-8") if isinstance(data, str) else data
    directory = os.path.dirname(path) or "."
    import tempfile  # here: the agent's quick commands that write nothing skip its import

    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        write_all(fd, raw)
        os.fchmod(fd, mode)
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
    fsync_dir(directory)


class DiskUsage(NamedTuple):
    total: int
    free: int


def disk_usage(path: str) -> DiskUsage:
    """What shutil.disk_usage says of total and free bytes, without loading shutil (with
    the compressors it imports, ~5 ms of an agent command's start)."""
    st = os.statvfs(path)
    return DiskUsage(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
