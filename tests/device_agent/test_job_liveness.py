"""A job's worker is known by the lock it holds, not by a pid that may have been reused.

After a reboot (or once the worker died and its pid went to someone else), status.json
still names the old pid. Real processes throughout: an unrelated `sleep` holds that pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import agent_json

from device_agent.protocol import RUNNING, BenchOptions, BenchSpec, Event, JobState


def make_job(root: Path, job_id: str, pid: int) -> Path:
    """A job directory as a worker leaves it while it runs: status `running`, its pid."""
    path = root / "jobs" / job_id
    (path / "artifacts").mkdir(parents=True)
    (path / "job.json").write_text(BenchSpec(model=str(root / "m")).to_json())
    now = time.time()
    state = JobState(
        job_id=job_id, kind="bench", status=RUNNING, created_at=now, updated_at=now, pid=pid
    )
    (path / "status.json").write_text(state.to_json())
    lines = [
        Event(seq=0, ts=now, kind="status", message="job created", status="queued"),
        Event(seq=1, ts=now, kind="status", message="running", status=RUNNING),
    ]
    (path / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in lines))
    (path / "worker.log").write_text("worker started\n")
    return path


def start_time(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: the process's start, in clock ticks since boot."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[19])


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process: the pid a stale status.json now points at."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


def lock_by(path: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """Start argv holding an flock on `path` (inherited), as a worker would hold its lock."""
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return subprocess.Popen(argv, pass_fds=(fd,))
    finally:
        os.close(fd)


def alive(proc: subprocess.Popen[bytes]) -> bool:
    time.sleep(0.3)  # a signal, had one been sent, has landed
    return proc.poll() is None


@pytest.mark.parametrize("lock", ["none", "free", "held-foreign-boot", "held-other-start"])
def test_a_reused_pid_is_not_the_worker(
    tmp_path: Path, bystander: subprocess.Popen[bytes], lock: str
) -> None:
    """none: a job dir without worker.lock (an older agent's); free: the lock names the
    pid exactly, but nobody holds it (the worker died, or the board rebooted); held-*:
    a process holds the lock, but the pid it names is from another boot, or another
    process of that pid."""
    root = tmp_path / "root"
    job = make_job(root, "20240101-000000-bench-abcdef", bystander.pid)
    holder = None
    ident = {"pid": bystander.pid, "start": start_time(bystander.pid), "boot_id": boot_id()}
    if lock == "free":
        (job / "worker.lock").write_text(json.dumps(ident))
    elif lock.startswith("held"):
        if lock == "held-foreign-boot":
            ident["boot_id"] = "00000000-0000-4000-8000-000000000000"
        else:
            ident["start"] -= 100
        (job / "worker.lock").write_text(json.dumps(ident))
        holder = lock_by(job / "worker.lock", ["sleep", "120"])
    try:
        canceled = JobState.from_dict(agent_json(root, "cancel", job.name))
        assert alive(bystander), "cancel signalled a process that is not the job's worker"
        assert canceled.status == "failed", canceled
        state = JobState.from_dict(agent_json(root, "status", job.name))
        assert state.status == "failed" and "died" in (state.error or ""), state
        if holder is not None:
            assert alive(holder)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def test_a_real_worker_holds_its_lock_until_canceled(tmp_path: Path, tiny_model: Path) -> None:
    """The worker named in worker.lock is the pid in status.json; it is `running` while it
    lives, and cancel stops it (and only it) and frees the lock."""
    root = tmp_path / "root"
    spec = BenchSpec(
        model=str(tiny_model),
        bench=BenchOptions(
            batch_sizes=[1], duration_seconds=120.0, warmup_seconds=0.0, warmup_iterations=1
        ),
    )
    job_id = agent_json(root, "submit", "-", "--detach", input=spec.to_json())["job_id"]
    lock = root / "jobs" / job_id / "worker.lock"
    deadline = time.time() + 60
    while time.time() < deadline:
        state = JobState.from_dict(agent_json(root, "status", job_id))
        if state.status == RUNNING:
            break
        time.sleep(0.2)
    assert state.status == RUNNING, state
    ident = json.loads(lock.read_text())
    assert ident == {"pid": state.pid, "start": start_time(state.pid), "boot_id": boot_id()}
    fd = os.open(str(lock), os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # held by the worker
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for _ in range(3):
            assert agent_json(root, "status", job_id)["status"] == RUNNING
        assert agent_json(root, "cancel", job_id)["status"] == "canceled"
        assert not Path(f"/proc/{state.pid}").exists() or _zombie(state.pid)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
    finally:
        os.close(fd)
    statuses = [
        e.status
        for e in map(Event.from_json, (lock.parent / "events.jsonl").read_text().splitlines())
        if e.kind == "status"
    ]
    assert statuses[-1] == "canceled" and "failed" not in statuses


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
