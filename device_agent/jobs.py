"""Jobs on the device: one directory each, a detached worker, a GPU lock, event streams.

Layout under the device root: jobs/<id>/{job.json, status.json, events.jsonl, result.json,
worker.log, artifacts/} and gpu.lock. The worker is the only writer of events while it
lives; when it is found dead, `reconcile` marks the job failed with the tail of its log.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from typing import IO, Any, Callable, Dict, List, Optional

from .errors import AgentError
from .protocol import (
    CANCELED,
    FAILED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Event,
    JobSpec,
    JobState,
    ProtocolError,
)

LOG_TAIL_LINES = 30
HEARTBEAT_SECONDS = 5.0


class JobStore:
    """The jobs/ directory of one device root."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.jobs_dir = os.path.join(self.root, "jobs")
        self.lock_path = os.path.join(self.root, "gpu.lock")

    def job_dir(self, job_id: str) -> str:
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise AgentError(f"Bad job id {job_id!r}.")
        path = os.path.join(self.jobs_dir, job_id)
        if not os.path.isdir(path):
            raise AgentError(f"No job {job_id!r} on this device.", "List jobs with `jobs`.")
        return path

    # ------------------------------------------------------------------ state files

    def read_state(self, job_id: str) -> JobState:
        with open(os.path.join(self.job_dir(job_id), "status.json")) as f:
            return JobState.from_json(f.read())

    def write_state(self, state: JobState) -> None:
        state.updated_at = time.time()
        path = os.path.join(self.jobs_dir, state.job_id, "status.json")
        _atomic_write(path, state.to_json())

    def append_event(
        self, job_id: str, kind: str, message: str = "", status: Optional[str] = None, **data: Any
    ) -> Event:
        path = os.path.join(self.jobs_dir, job_id, "events.jsonl")
        seq = _count_lines(path)
        event = Event(seq=seq, ts=time.time(), kind=kind, message=message, status=status, data=data)
        line = (event.to_json() + "\n").encode()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return event

    def set_status(self, job_id: str, status: str, message: str = "", **fields: Any) -> JobState:
        state = self.read_state(job_id)
        state.status = status
        for k, v in fields.items():
            setattr(state, k, v)
        self.write_state(state)
        self.append_event(job_id, "status", message or status, status=status)
        return state

    # ------------------------------------------------------------------ lifecycle

    def create(self, spec: JobSpec) -> str:
        """Write a new job directory (status queued) and return its id."""
        spec.validate()
        os.makedirs(self.jobs_dir, exist_ok=True)
        job_id = "{}-{}-{}".format(time.strftime("%Y%m%d-%H%M%S"), spec.kind, uuid.uuid4().hex[:6])
        path = os.path.join(self.jobs_dir, job_id)
        os.makedirs(os.path.join(path, "artifacts"))
        _atomic_write(os.path.join(path, "job.json"), spec.to_json())
        now = time.time()
        self.write_state(
            JobState(job_id=job_id, kind=spec.kind, status=QUEUED, created_at=now, updated_at=now)
        )
        self.append_event(job_id, "status", "job created", status=QUEUED)
        return job_id

    def spawn_worker(self, job_id: str, agent_cmd: List[str]) -> int:
        """Start the worker detached from the caller (own session, no inherited stdio)."""
        path = self.job_dir(job_id)
        log = open(os.path.join(path, "worker.log"), "ab")
        try:
            proc = subprocess.Popen(
                agent_cmd + ["--root", self.root, "_work", job_id],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            log.close()
        state = self.read_state(job_id)
        state.pid = proc.pid
        self.write_state(state)
        return proc.pid

    def reconcile(self, job_id: str) -> JobState:
        """Mark a non-terminal job whose worker is gone as failed, with its log tail."""
        state = self.read_state(job_id)
        if state.status in TERMINAL or state.pid is None or _alive(state.pid):
            return state
        tail = _tail(os.path.join(self.jobs_dir, job_id, "worker.log"), LOG_TAIL_LINES)
        # The worker may have finished between our reads.
        state = self.read_state(job_id)
        if state.status in TERMINAL:
            return state
        return self.set_status(
            job_id,
            FAILED,
            f"worker process {state.pid} died",
            error=f"the worker process {state.pid} died unexpectedly",
            log_tail=tail,
        )

    def cancel(self, job_id: str, grace: float = 5.0) -> JobState:
        """Stop the job's worker (SIGTERM, then SIGKILL) and mark it canceled."""
        state = self.reconcile(job_id)
        if state.status in TERMINAL:
            return state
        if state.pid is not None and _alive(state.pid):
            _kill_group(state.pid, signal.SIGTERM)
            deadline = time.time() + grace
            while _alive(state.pid) and time.time() < deadline:
                time.sleep(0.05)
            if _alive(state.pid):
                _kill_group(state.pid, signal.SIGKILL)
        state = self.read_state(job_id)
        if state.status in TERMINAL:
            return state
        return self.set_status(job_id, CANCELED, "canceled by request")

    def list(self) -> List[JobState]:
        if not os.path.isdir(self.jobs_dir):
            return []
        states = []
        for name in sorted(os.listdir(self.jobs_dir)):
            try:
                states.append(self.reconcile(name))
            except (AgentError, OSError, ValueError):
                continue
        return states

    def result(self, job_id: str) -> Optional[Dict[str, Any]]:
        path = os.path.join(self.job_dir(job_id), "result.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    # ------------------------------------------------------------------ streaming

    def follow(
        self,
        job_id: str,
        offset: int,
        out: IO[str],
        poll: float = 0.1,
        timeout: Optional[float] = None,
    ) -> int:
        """Write events from line `offset` on to `out` until the job is terminal.

        Returns the next offset. A status check runs between polls so a dead worker ends
        the stream with a failed status instead of hanging.
        """
        path = os.path.join(self.job_dir(job_id), "events.jsonl")
        deadline = None if timeout is None else time.time() + timeout
        last_write = time.time()
        with open(path, "rb") as f:
            for _ in range(offset):
                if not f.readline():
                    break
            while True:
                pending = b""
                line = f.readline()
                while line:
                    if not line.endswith(b"\n"):  # a line still being written
                        pending = line
                        break
                    out.write(line.decode())
                    offset += 1
                    last_write = time.time()
                    line = f.readline()
                if time.time() - last_write > HEARTBEAT_SECONDS:
                    out.write("\n")  # a heartbeat: the reader can tell a quiet job from a dead link
                    last_write = time.time()
                out.flush()
                if pending:
                    f.seek(-len(pending), os.SEEK_CUR)
                state = self.reconcile(job_id)
                if state.status in TERMINAL and not pending and _count_lines(path) == offset:
                    return offset
                if deadline is not None and time.time() > deadline:
                    return offset
                time.sleep(poll)


# ---------------------------------------------------------------------- the worker


def run_worker(
    store: JobStore, job_id: str, execute: Callable[[JobSpec, str, Callable[..., None]], Any]
) -> int:
    """Body of the detached worker process: lock, run, record result and final status."""
    path = store.job_dir(job_id)
    with open(os.path.join(path, "job.json")) as f:
        spec = JobSpec.from_json(f.read())

    def emit(kind: str, message: str = "", **data: Any) -> None:
        # worker.log gets every event too, so a crash leaves a readable tail.
        print("{} [{}] {}".format(time.strftime("%H:%M:%S"), kind, message), flush=True)
        store.append_event(job_id, kind, message, **data)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    lock_fd = None
    try:
        if spec.gpu:
            lock_fd = _acquire_gpu_lock(store, job_id, emit)
        store.set_status(job_id, RUNNING, "running", pid=os.getpid(), queue_position=None)
        emit("log", f"job {job_id} ({spec.kind}) running as pid {os.getpid()}")
        try:
            result = execute(spec, path, emit)
            status = SUCCEEDED
        except AgentError as exc:
            from .runner import failed_result

            result = failed_result(spec, exc.message, exc.hint)
            status = FAILED
        except Exception as exc:  # a bug or a framework crash: keep the traceback
            traceback.print_exc()
            from .runner import failed_result

            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result = failed_result(spec, f"{type(exc).__name__}: {first}", None)
            status = FAILED
        result.job_id = job_id
        _atomic_write(os.path.join(path, "result.json"), result.to_json(indent=2))
        store.append_event(job_id, "result", "result written", result=result.to_dict())
        extra: Dict[str, Any] = {}
        if status == FAILED:
            extra = {
                "error": result.error,
                "log_tail": _tail(os.path.join(path, "worker.log"), LOG_TAIL_LINES),
            }
        store.set_status(job_id, status, status, **extra)
        return 0 if status == SUCCEEDED else 1
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing releases the flock


def _acquire_gpu_lock(store: JobStore, job_id: str, emit: Callable[..., None]) -> int:
    fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    announced = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not announced:
                holder = _read_holder(fd)
                emit(
                    "log",
                    "queued: waiting for the GPU lock held by job {}".format(holder or "?"),
                    holder=holder,
                )
                announced = True
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, job_id.encode(), 0)
    return fd


def _read_holder(fd: int) -> str:
    return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()


# ---------------------------------------------------------------------- small helpers


def _atomic_write(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _count_lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))
    except FileNotFoundError:
        return 0


def _tail(path: str, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _alive(pid: int) -> bool:
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


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def load_spec(text: str) -> JobSpec:
    """Parse a job spec, turning protocol violations into AgentError."""
    try:
        spec = JobSpec.from_json(text)
        spec.validate()
    except (ProtocolError, ValueError) as exc:
        raise AgentError(f"Bad job spec: {exc}") from exc
    return spec


def agent_command() -> List[str]:
    """The argv that re-runs this agent (the zipapp it came from, or `-m device_agent`)."""
    here = os.path.abspath(__file__)
    marker = ".pyz" + os.sep
    if marker in here:
        return [sys.executable, here.split(marker)[0] + ".pyz"]
    return [sys.executable, "-m", "device_agent"]
