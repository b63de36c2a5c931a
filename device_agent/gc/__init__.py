"""`gc`: free the device root of what no kept job needs.

Kept: the `keep` most recent finished jobs (by creation time) and every live job (its worker
holds worker.lock, or it is being created), and everything a kept job names in job.json or
result.json (models/, calib/ and cache/ entries, trt/calib caches by cache key); the blobs
hard-linked from (or copied into) a kept tree; uploads (`.partial`) younger than `grace`
seconds, and, while one is, every blob (a resumable push may be about to commit them);
anything else younger than `grace` (a command in flight may be about to use it); while a
convert job is live, all of cache/ and trt/calib/; the newest TensorRT timing cache. An
upload, a job or a staging directory written in the last minute is in use, whatever
`grace` says. The agent (agent/), agent.json and gpu.lock are never touched.

Removal is crash-safe: a directory is renamed aside into `<dir>/.gc-*` first (readers see it
whole or not at all; a crash leaves only trash, which the next gc removes), then deleted.
Nothing is followed through a symlink: a symlink in the store is removed as a link, and a
category directory that is a symlink is left alone. Stdlib only, Python 3.8.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import stat
import tempfile
from typing import Dict, List, Set

from .. import worker_lock
from ..errors import AgentError
from ..protocol import GC_CATEGORIES, SUCCEEDED, GcCategory, GcItem, GcResult
from .plan import TRASH, Entry, Scan, account, lstat, plan

DEFAULT_KEEP = 5
GRACE_SECONDS = 3600.0


def _rmtree(path: str) -> None:
    """Remove a tree; its read-only directories (a model tree may have some) made writable
    first. os.walk enters no symlink, and chmod is applied to real directories only."""
    for dirpath, dirs, _ in os.walk(path):
        for name in dirs:
            sub = os.path.join(dirpath, name)
            st = lstat(sub)
            if st is not None and stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o200:
                os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _remove(scan: Scan, e: Entry) -> bool:
    """Remove `e` if it is still what was planned: a directory is renamed aside first."""
    st = lstat(e.path)
    if st is None or (st.st_dev, st.st_ino) != (e.st.st_dev, e.st.st_ino):
        return False
    if e.category == "uploads" and scan.active(st.st_mtime):  # the upload resumed meanwhile
        return False
    if not stat.S_ISDIR(st.st_mode):
        try:
            os.remove(e.path)
        except OSError:
            return False
        return True
    if os.path.basename(e.path).startswith(TRASH):
        _rmtree(e.path)
        return not os.path.lexists(e.path)
    lock = worker_lock.take(e.path) if e.category == "jobs" else None
    if e.category == "jobs" and lock is None:
        scan.notes.append(f"{e.rel}: a worker started meanwhile, kept")
        return False
    try:
        trash = tempfile.mkdtemp(prefix=TRASH, dir=os.path.dirname(e.path))
        os.rename(e.path, os.path.join(trash, "entry"))
    except OSError as exc:
        scan.notes.append(f"{e.rel}: cannot remove ({exc.strerror})")
        return False
    finally:
        if lock is not None:
            os.close(lock)
    _rmtree(trash)
    if os.path.lexists(trash):
        scan.notes.append(f"{e.rel}: renamed aside to {os.path.basename(trash)}, not fully removed")
    return True


def _execute(scan: Scan, dry_run: bool) -> List[Entry]:
    """Remove the planned entries (blobs after the trees); the entries removed."""
    gone: List[Entry] = []
    checked = False
    for e in scan.entries:
        if e.kept:
            continue
        if e.category == "blobs" and not dry_run and not checked:
            checked = True  # a push that started since the scan may be about to commit them
            if _upload_started(scan):
                scan.notes.append("a push started meanwhile: blobs kept, run gc again later")
        if e.category == "blobs" and scan.push_in_flight:
            continue
        if dry_run or _remove(scan, e):
            gone.append(e)
    return gone


def _upload_started(scan: Scan) -> bool:
    try:
        names = os.listdir(os.path.join(scan.root, "store"))
    except OSError:
        return False
    for name in names:
        if name.endswith((".partial", ".partial.ranges")):
            st = lstat(os.path.join(scan.root, "store", name))
            if st is not None and scan.active(st.st_mtime):
                scan.push_in_flight = True
    return scan.push_in_flight


def _job_names(root: str) -> Set[str]:
    try:
        return {n for n in os.listdir(os.path.join(root, "jobs")) if not n.startswith(".")}
    except OSError:
        return set()


def _lock(root: str) -> int:
    fd = os.open(os.path.join(root, "gc.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AgentError(
            "Another gc is running on this device.", "Wait for it to finish, then run gc again."
        ) from None
    return fd


def gc(
    root: str, keep: int = DEFAULT_KEEP, dry_run: bool = False, grace: float = GRACE_SECONDS
) -> GcResult:
    """Remove (`dry_run`: only report) what no kept job needs under the device root."""
    if keep < 0 or grace < 0:
        raise AgentError("gc: --keep and --grace must not be negative.", "Pass 0 or more.")
    root = os.path.abspath(os.path.expanduser(root))
    result = GcResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        dry_run=dry_run,
        keep=keep,
        grace_seconds=grace,
    )
    if not os.path.isdir(root):
        result.notes.append(f"{root} does not exist: nothing to clean")
        return result
    lock = None if dry_run else _lock(root)
    try:
        scan = plan(root, keep, grace)
        for _ in range(3):  # a job submitted since the scan may use what it would remove
            if dry_run or _job_names(root) <= scan.job_names:
                break
            scan = plan(root, keep, grace)
        gone = _execute(scan, dry_run)
    finally:
        if lock is not None:
            os.close(lock)
    account(scan.entries, gone)  # what was removed, which a race may have made less
    totals: Dict[str, GcCategory] = {}
    removed = {id(e) for e in gone}
    for e in scan.entries:
        cat = totals.setdefault(e.category, GcCategory(category=e.category))
        if id(e) in removed:
            cat.removed += 1
            cat.bytes_freed += e.bytes
        else:
            cat.kept += 1
            cat.bytes_kept += e.bytes
    result.categories = [totals[c] for c in GC_CATEGORIES if c in totals]
    result.removed = [GcItem(e.category, e.rel, e.bytes, e.reason) for e in gone]
    result.bytes_freed = sum(e.bytes for e in gone)
    result.kept_jobs = sorted(scan.kept_jobs)
    result.notes = scan.notes
    result.disk_free_bytes = shutil.disk_usage(root).free
    return result
