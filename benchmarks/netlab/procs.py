"""Process helpers for the lab: run commands, find and stop what the lab started.

Every process the harness starts carries `MARK_VAR=<run id>` in its environment (sshd,
delay proxy, scp, ansible and the ssh masters it leaves behind), so teardown can find
and stop exactly those, and nothing else, even after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

MARK_VAR = "EDGE_NETLAB_RUN"
STOP_TIMEOUT_S = 5.0


def sh(*argv: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run a short command, capture its output; raise with stderr on failure."""
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): "
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def _stat(pid: int | str) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]; [] if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat[stat.rfind(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    return [int(e.name) for e in Path("/proc").glob("[0-9]*") if _stat(e.name)[1:2] == [str(pid)]]


def gone(pid: int) -> bool:
    """True when `pid` has exited (a zombie counts: init may never reap it here)."""
    return _stat(pid)[:1] in ([], ["Z"], ["X"])


def marked_pids(value: str, var: str = MARK_VAR) -> list[int]:
    """Processes whose environment holds `var`=`value` (never this process)."""
    needle = f"{var}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(pid)
    return found


def pids_with_cmdline(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (ssh masters rewrite their
    environment for their process title, so a unique path finds them instead)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if pid != os.getpid() and needle.encode() in cmdline:
            found.append(pid)
    return found


def terminate(pids: Sequence[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the given processes, then SIGKILL those that linger; reap those that are our
    children."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in pids if not gone(p)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while alive and time.monotonic() < deadline:
            time.sleep(0.02)
            alive = [p for p in alive if not gone(p)]
        if not alive:
            break
    for pid in pids:  # reap those that are our own children
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def kill_marked(value: str, var: str = MARK_VAR) -> int:
    """Stop every process marked `var`=`value`; returns how many there were."""
    pids = marked_pids(value, var)
    terminate(pids)
    return len(pids)


def cpu_busy(interval: float = 1.0) -> float:
    """Share of all CPUs busy over `interval` seconds (from /proc/stat), 0..1."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)
