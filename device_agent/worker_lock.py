"""A job's worker is known by jobs/<id>/worker.lock, not by a pid that can be reused.

The spawning agent takes an flock on worker.lock before it starts the worker and hands the
locked file to it (the fd is inherited), so the lock is held from before the worker exists
until it exits: the kernel drops it when the worker dies, however it dies, and no lock
survives a reboot. The file's content names the worker (pid, start time in clock ticks since
boot, boot id), so that only that very process is ever signalled.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Any, Dict, Optional

LOCK_NAME = "worker.lock"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def lock_path(job_dir: str) -> str:
    return os.path.join(job_dir, LOCK_NAME)


def take(job_dir: str, block: bool = False) -> Optional[int]:
    """Open and flock the job's worker.lock: the fd, or None when someone else holds it."""
    fd = os.open(lock_path(job_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def record(fd: int, pid: int) -> None:
    """Write who holds the lock into it (the holder is the only writer)."""
    ident = identity_of(pid)
    data = json.dumps(ident or {"pid": pid}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)


def inherited(job_dir: str) -> Optional[int]:
    """The worker.lock fd this process inherited from the agent that spawned it, if any.

    Made non-inheritable here, so that a child of the worker cannot keep the lock (and the
    job `running`) after the worker itself died."""
    try:
        want = os.stat(lock_path(job_dir))
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in fds:
        try:
            fd = int(name)
            st = os.fstat(fd)
        except (ValueError, OSError):
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            os.set_inheritable(fd, False)
            return fd
    return None


def worker_alive(job_dir: str) -> Optional[bool]:
    """Whether the job's worker lives: True, False, or None when the job has no worker.lock
    (an older agent's job, or one whose worker was never spawned)."""
    path = lock_path(job_dir)
    if not os.path.exists(path):
        return None
    fd = take(job_dir)
    if fd is not None:
        os.close(fd)  # nobody held it: the worker is gone
        return False
    ident = read(job_dir)
    if ident is None:
        return True  # held by the spawner, which has not named the worker yet
    return same_process(ident)


def read(job_dir: str) -> Optional[Dict[str, Any]]:
    """The worker named in worker.lock, or None while it is empty or unreadable."""
    try:
        with open(lock_path(job_dir)) as f:
            data = json.loads(f.read() or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return None
    return data


def same_process(ident: Dict[str, Any]) -> bool:
    """Whether ident's pid is still the process that was recorded: same boot, same start."""
    now = identity_of(int(ident["pid"]))
    if now is None:
        return False
    return ident.get("boot_id") == now["boot_id"] and ident.get("start") == now["start"]


def identity_of(pid: int) -> Optional[Dict[str, Any]]:
    """pid, start time (field 22 of /proc/<pid>/stat) and boot id; None if pid is gone
    or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name (field 2) may hold spaces and parentheses: split after it
            fields = f.read().rsplit(")", 1)[1].split()
        with open(BOOT_ID_PATH) as f:
            boot = f.read().strip()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in ("Z", "X"):
        return None
    return {"pid": pid, "start": int(fields[19]), "boot_id": boot}


def legacy_worker(pid: int, job_id: str) -> bool:
    """For a job without worker.lock (an older agent's): whether pid is alive and its argv
    is a worker's for job_id (`... _work JOB_ID`), which no unrelated process has."""
    return alive(pid) and runs_job(pid, job_id)


def runs_job(pid: int, job_id: str) -> bool:
    """Whether pid's argv is a worker's for job_id."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return b"_work" in argv and job_id.encode() in argv


def alive(pid: int) -> bool:
    """Whether some process, not a zombie, has this pid (which says nothing of which one)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def kill_group(pid: int, sig: int) -> None:
    """Signal the process group pid leads (a worker and its children), else pid alone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
