"""What a fleet command leaves running when it is interrupted (Ctrl-C).

Jobs run detached on the devices: stopping the host stops only the following. So the
command stops at once, and says per device which jobs keep running there and how to
reattach. `each` records the devices a command works on; the ops record each job the
moment a device answers its id (`job_started`) and when its end was seen (`job_ended`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_jobs: dict[str, dict[str, bool]] = {}  # device -> job id -> ended, in the order seen
_hooks: list[Callable[[], None]] = []
_stopped = threading.Event()


def on_interrupt(hook: Callable[[], None]) -> None:
    """Call `hook` once when the command is interrupted (the CLI silences the progress
    lines of the workers it leaves behind: their links close, they would say so)."""
    if hook not in _hooks:
        _hooks.append(hook)


def interrupted() -> None:
    """The command was interrupted: run the hooks (once), at the first place that knows."""
    with _lock:
        if _stopped.is_set():
            return
        _stopped.set()
        hooks = list(_hooks)
    for hook in hooks:
        hook()


def targeted(devices: list[str]) -> None:
    """The devices a fleet operation works on (in target order)."""
    with _lock:
        for name in devices:
            _jobs.setdefault(name, {})


def job_started(device: str, job_id: str) -> None:
    """`device` answered `job_id`: from now on the job runs there whatever the host does."""
    with _lock:
        _jobs.setdefault(device, {})[job_id] = False


def job_ended(device: str, job_id: str) -> None:
    """The host saw `job_id` end (its result is in)."""
    with _lock:
        if job_id in _jobs.get(device, {}):
            _jobs[device][job_id] = True


def clear() -> None:
    """Forget everything (a new command in the same process, a test)."""
    with _lock:
        _jobs.clear()
        _hooks.clear()
        _stopped.clear()


def left_running() -> dict[str, list[str]]:
    """Device -> the ids of its jobs not seen to end (empty: nothing left running)."""
    with _lock:
        return {d: [j for j, ended in jobs.items() if not ended] for d, jobs in _jobs.items()}


def report() -> list[str]:
    """One line per job left running (with the command that reattaches to it), and one
    per device where nothing was started or every job had ended."""
    with _lock:
        seen = {d: dict(jobs) for d, jobs in _jobs.items()}
    lines = []
    for device, jobs in seen.items():
        running = [j for j, ended in jobs.items() if not ended]
        for job in running:
            lines.append(
                f"{device}: job {job} keeps running on the device; "
                f"reattach: edge jobs attach {job} --to {device}"
            )
        if not jobs:
            lines.append(f"{device}: nothing started")
        elif not running:
            done = ", ".join(jobs)
            lines.append(f"{device}: job {done} had ended; see: edge jobs ls --to {device}")
    return lines
