"""Jobs on the device: one directory each, a detached worker, a GPU lock, event streams.

Layout under the device root: jobs/<id>/{job.json, status.json, events.jsonl, result.json,
worker.lock, worker.log, artifacts/} and gpu.lock. The worker holds worker.lock for its
whole life (worker_lock), so a reused pid is never taken for it. It writes result.json,
then each status event, then status.json, so the event log is never behind status.json;
when the worker is found dead, `reconcile` settles the job (failed, with its log tail).
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

from . import durable, jobfiles, worker_lock
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
    spec_from_json,
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
        durable.atomic_write(path, state.to_json())

    def append_event(
        self, job_id: str, kind: str, message: str = "", status: Optional[str] = None, **data: Any
    ) -> Event:
        """Append one event; a status or result event is on disk (fsynced) when this returns.

        The flock keeps seq numbers unique between the worker and an agent that reconciles
        the job. A line a power cut tore off is ended first, so the new one stays whole."""
        path = os.path.join(self.jobs_dir, job_id, "events.jsonl")
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
            if torn:
                durable.write_all(fd, b"\n")
            seq = jobfiles.count_lines(path)
            event = Event(
                seq=seq, ts=time.time(), kind=kind, message=message, status=status, data=data
            )
            durable.write_all(fd, (event.to_json() + "\n").encode())
            if kind in ("status", "result"):  # the lines before it go to disk with it
                os.fsync(fd)
        finally:
            os.close(fd)  # closing releases the flock
        return event

    def set_status(self, job_id: str, status: str, message: str = "", **fields: Any) -> JobState:
        """Record a new status: the event first, then status.json, so the event log is never
        behind status.json (a crash in between leaves an event that `reconcile` adopts)."""
        state = self.read_state(job_id)
        state.status = status
        for k, v in fields.items():
            setattr(state, k, v)
        self.append_event(job_id, "status", message or status, status=status)
        self.write_state(state)
        return state

    # ------------------------------------------------------------------ lifecycle

    def create(self, spec: JobSpec) -> str:
        """Write a new job directory (status queued) and return its id."""
        spec.validate()
        os.makedirs(self.jobs_dir, exist_ok=True)
        job_id = "{}-{}-{}".format(time.strftime("%Y%m%d-%H%M%S"), spec.kind, uuid.uuid4().hex[:6])
        path = os.path.join(self.jobs_dir, job_id)
        os.makedirs(os.path.join(path, "artifacts"))
        durable.atomic_write(os.path.join(path, "job.json"), spec.to_json())
        now = time.time()
        self.write_state(
            JobState(job_id=job_id, kind=spec.kind, status=QUEUED, created_at=now, updated_at=now)
        )
        self.append_event(job_id, "status", "job created", status=QUEUED)
        return job_id

    def spawn_worker(self, job_id: str, agent_cmd: List[str]) -> int:
        """Start the worker detached from the caller (own session, no inherited stdio).

        The worker inherits worker.lock, locked before it starts (see worker_lock)."""
        path = self.job_dir(job_id)
        lock_fd = worker_lock.take(path)
        if lock_fd is None:
            raise AgentError(f"Job {job_id} already has a worker.")
        log = open(os.path.join(path, "worker.log"), "ab")
        try:
            proc = subprocess.Popen(
                agent_cmd + ["--root", self.root, "_work", job_id],
                cwd=path,  # inside the device root, never the login's home
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=(lock_fd,),
            )
            state = self.read_state(job_id)
            state.pid = proc.pid
            self.write_state(state)
            # last: the worker waits for its name in the lock before it touches status.json
            worker_lock.record(lock_fd, proc.pid)
        finally:
            log.close()
            os.close(lock_fd)  # the worker's inherited copy holds the lock on
        return proc.pid

    def reconcile(self, job_id: str) -> JobState:
        """Settle a job whose worker is gone: a final status its event log holds but
        status.json missed (a crash between the two writes) is adopted, a log that lacks the
        final status of status.json gets it, and any other job is marked failed."""
        path = self.job_dir(job_id)
        state = self.read_state(job_id)
        if state.status in TERMINAL:
            if not self._worker_alive(path, state):
                self._complete_log(job_id, state.status)
            return state
        if state.pid is None and not os.path.exists(worker_lock.lock_path(path)):
            return state  # not spawned yet
        if self._worker_alive(path, state):
            return state
        tail = jobfiles.tail(os.path.join(path, "worker.log"), LOG_TAIL_LINES)
        # The worker may have finished between our reads.
        state = self.read_state(job_id)
        if state.status in TERMINAL:
            return state
        last = jobfiles.last_status(os.path.join(path, "events.jsonl"))
        if last in TERMINAL:
            state.status = last
            if last == FAILED:  # the worker's own failure: its result says why
                try:
                    error = (self.result(job_id) or {}).get("error")
                except (OSError, ValueError, AttributeError):
                    error = None
                state.error, state.log_tail = error or "the job failed", tail
            self.write_state(state)
            return state
        return self.set_status(
            job_id,
            FAILED,
            f"worker process {state.pid} died",
            error=f"the worker process {state.pid} died unexpectedly",
            log_tail=tail,
        )

    def _worker_alive(self, path: str, state: JobState) -> bool:
        alive = worker_lock.worker_alive(path)
        if alive is not None:
            return alive
        # no worker.lock: a job of an older agent; its worker's argv names the job
        return state.pid is not None and worker_lock.legacy_worker(state.pid, state.job_id)

    def _complete_log(self, job_id: str, status: str) -> None:
        events = os.path.join(self.jobs_dir, job_id, "events.jsonl")
        if jobfiles.last_status(events) != status:
            self.append_event(
                job_id, "status", f"{status} (recorded in status.json)", status=status
            )

    def _worker_identity(self, path: str, state: JobState) -> Optional[Dict[str, Any]]:
        """The live worker as worker.lock names it, or None when no live process is it."""
        if not os.path.exists(worker_lock.lock_path(path)):
            ok = state.pid is not None and worker_lock.legacy_worker(state.pid, state.job_id)
            return {"pid": state.pid, "legacy": True} if ok else None
        deadline = time.time() + 2.0
        while True:
            ident = worker_lock.read(path)
            if ident is not None or not worker_lock.worker_alive(path):
                break
            if time.time() > deadline:
                return None
            time.sleep(0.05)  # the spawner has not named the worker yet
        return ident if ident is not None and worker_lock.same_process(ident) else None

    def cancel(self, job_id: str, grace: float = 5.0) -> JobState:
        """Stop the job's worker (SIGTERM, then SIGKILL) and mark it canceled. Only the
        worker itself is signalled, never a process that got its pid later."""
        state = self.reconcile(job_id)
        if state.status in TERMINAL:
            return state
        path = self.job_dir(job_id)
        ident = self._worker_identity(path, state)
        if ident is not None:

            def same() -> bool:
                if ident.get("legacy"):
                    return worker_lock.legacy_worker(ident["pid"], job_id)
                return worker_lock.same_process(ident)

            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
                if not same():
                    break
                worker_lock.kill_group(ident["pid"], sig)
                deadline = time.time() + wait
                while same() and time.time() < deadline:
                    time.sleep(0.05)
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
        the stream with a failed status instead of hanging, and a final status.json ends it
        even when the log lost the final event (`reconcile` appends it then).
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
                    if jobfiles.is_json(line):  # a line a crash left torn is skipped, not sent
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
                if (
                    state.status in TERMINAL
                    and jobfiles.count_lines(path) == offset
                    and (not pending or not self._worker_alive(os.path.dirname(path), state))
                ):
                    return offset  # a torn line nobody lives to finish is not waited for
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
        spec = spec_from_json(f.read())

    def emit(kind: str, message: str = "", **data: Any) -> None:
        # worker.log gets every event too, so a crash leaves a readable tail.
        print("{} [{}] {}".format(time.strftime("%H:%M:%S"), kind, message), flush=True)
        store.append_event(job_id, kind, message, **data)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    _claim_worker_lock(path, job_id)  # held until this process ends, however it ends
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
        durable.atomic_write(os.path.join(path, "result.json"), result.to_json(indent=2))
        store.append_event(job_id, "result", "result written", result=result.to_dict())
        extra: Dict[str, Any] = {}
        if status == FAILED:
            extra = {
                "error": result.error,
                "log_tail": jobfiles.tail(os.path.join(path, "worker.log"), LOG_TAIL_LINES),
            }
        store.set_status(job_id, status, status, **extra)
        return 0 if status == SUCCEEDED else 1
    finally:
        if lock_fd is not None:
            os.close(lock_fd)  # closing releases the flock


def _claim_worker_lock(path: str, job_id: str) -> int:
    """The job's worker.lock for this worker: inherited from the spawner (then wait until it
    has named this process, so status.json has its pid), or taken here."""
    fd = worker_lock.inherited(path)
    if fd is None:
        fd = worker_lock.take(path)
        if fd is None:
            raise AgentError(f"Job {job_id} already has a worker.")
        worker_lock.record(fd, os.getpid())
        return fd
    deadline = time.time() + 10.0
    while (worker_lock.read(path) or {}).get("pid") != os.getpid():
        if time.time() > deadline:  # the spawner died before naming us
            worker_lock.record(fd, os.getpid())
            break
        time.sleep(0.02)
    return fd


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


def load_spec(text: str) -> JobSpec:
    """Parse a job spec, turning protocol violations into AgentError."""
    try:
        spec = spec_from_json(text)
    except (ProtocolError, ValueError) as exc:
        raise AgentError(f"Bad job spec: {exc}") from exc
    return spec


def agent_command() -> List[str]:
    """The argv that re-runs this agent: `python -I ZIPAPP` for the zipapp it started from
    (its `__main__.py` records the path; -I: neither the cwd nor PYTHONPATH on sys.path).
    Only an agent run from the source tree (`python -m device_agent`) runs that way again."""
    import device_agent

    zipapp = getattr(device_agent, "ZIPAPP", None)
    if zipapp:
        return [sys.executable, "-I", zipapp]
    return [sys.executable, "-m", "device_agent"]
