"""The byte-level reading of a `push-receive` stream (device_agent/receive.py): its JSON
lines, exact reads into reused buffers, and the pipe it arrives on."""

from __future__ import annotations

import fcntl
import io
import json
import os
import select
import stat
import time
from typing import IO, Any, Callable, Dict, Optional, Tuple

from .errors import AgentError

MAX_HEADER = 64 << 20
RECORD_EVERY_S = 1.0
PIPE_BYTES = 1 << 20  # Linux's default cap for an unprivileged F_SETPIPE_SZ


def since_start() -> float:
    """Seconds since this process began: since sshd forked it, so the login shell and
    Python's start count too (a shell that runs one command execs it). 0.0 where /proc
    does not say: the host then times a ping."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        began = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - began)
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def read_exact(inp: IO[bytes], n: int) -> bytes:
    """Up to `n` bytes (fewer only at the end of input)."""
    data = inp.read(n)
    return data if data is not None else b""


def skip(inp: IO[bytes], n: int, view: memoryview) -> int:
    """Read and drop `n` bytes through `view`; how many there were before the end."""
    left = n
    while left:
        got = read_into(inp, view[: min(left, len(view))])
        if not got:
            break
        left -= got
    return n - left


def read_into(inp: IO[bytes], view: memoryview) -> int:
    """Fill `view` from `inp`; fewer bytes only at the end of input."""
    got = 0
    while got < len(view):
        n = inp.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            break
        got += n
    return got


def read_line(inp: IO[bytes], what: str) -> Optional[Dict[str, Any]]:
    """One JSON object line of the stream; None at the end of input."""
    line = inp.readline(MAX_HEADER)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise AgentError(f"push-receive: no {what} line", f"send the {what} line first")
    try:
        obj = json.loads(line.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise AgentError(f"push-receive: bad {what}: {exc}", "send the push's header") from None
    if not isinstance(obj, dict):
        raise AgentError(f"push-receive: bad {what}: not an object", "send the push's header")
    return obj


def options(obj: Dict[str, Any]) -> Tuple[bool, float]:
    """(commit, record_every) of a header or go line."""
    commit = obj.get("commit") is True
    every = min(max(float(obj.get("record_every", RECORD_EVERY_S)), 0.0), 60.0)
    return commit, every


def wait_input(inp: IO[bytes], ready: Callable[[], bool], poll: float = 0.005) -> bool:
    """Wait until `ready()` says True (then True) or input arrives on `inp` (False: the
    caller reads it, or its end). `inp` is a buffered reader: bytes already in its buffer
    count as input, seen by a peek that never blocks."""
    try:
        fd = inp.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor: nothing to wait on
        return ready()
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        buffered = len(inp.peek(1))  # type: ignore[attr-defined]
    except BlockingIOError:
        buffered = 0
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
    while not buffered:
        if ready():
            return True
        if select.select([fd], [], [], poll)[0]:
            break
    return False


def widen_pipe(inp: IO[bytes]) -> None:
    """Let the writer of a pipe on stdin (sshd) queue a whole frame: fewer, larger reads and
    wakeups on both sides. Linux only; elsewhere, or past the system's cap, nothing."""
    try:
        fd = inp.fileno()
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, ValueError, AttributeError):
        pass
