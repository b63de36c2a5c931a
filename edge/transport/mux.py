"""A per-user connection multiplexer, like OpenSSH's ControlPersist.

`edge mux start` runs a background process that keeps one SSH connection per device open
and serves commands over a Unix socket in a private per-user directory (`muxdir`: only the
user's own socket, started by `edge mux start` and answered by a server of the user's uid,
is ever used; the server serves only that uid). While it runs, every `edge` command sends
its remote commands through it and skips the SSH handshake; when it is gone, stuck or
refused, commands connect directly. It exits after `--idle` seconds with no request in
flight. File transfers still open their own connection.

Wire format: one JSON request line; replies are JSON lines. `run` answers once with
{"exit", "stdout", "stderr"}; `stream` answers {"line"} per line and then {"end": true};
`serve` passes one line to a server process it keeps running on the device (such as the
agent's `serve`, which then skips a Python start per command) and answers {"reply"};
`ping` answers {"pong": pid, "active"}. While a request runs the server also sends
{"beat": true} every HEARTBEAT_SECONDS, so a client notices a stuck multiplexer within
READ_TIMEOUT. Failures answer {"error", "hint", "kind"}.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge.core.errors import EdgeError
from edge.transport import muxdir
from edge.transport.base import TransportError
from edge.transport.muxdir import SOCKET, UnsafeMuxPath

__all__ = [
    "HEARTBEAT_SECONDS",
    "IDLE_SECONDS",
    "UnsafeMuxPath",
    "running",
    "socket_path",
    "start",
    "state",
    "stop",
]

IDLE_SECONDS = 600.0
HEARTBEAT_SECONDS = 5.0  # how often the server shows it is alive while a request runs
CLIENT_TIMEOUT = 30.0  # the server drops a client that sends or reads nothing this long
CONNECT_TIMEOUT = 5.0  # connecting to the socket
READ_TIMEOUT = 30.0  # the heartbeat rule: a client gives up on a silent multiplexer
PING_TIMEOUT = 2.0


class NotRunning(Exception):
    """No multiplexer of this user's (none started, or it is gone)."""


def send(sock: socket.socket, obj: dict[str, Any]) -> None:
    """One JSON line."""
    sock.sendall((json.dumps(obj) + "\n").encode())


def socket_path() -> Path:
    """Where this user's multiplexer socket is (or would be)."""
    return muxdir.runtime_dir() / SOCKET


def _started() -> tuple[Path, dict[str, Any]]:
    """The socket and start record of a multiplexer this user started (file checks only).
    Raises NotRunning when there is none and UnsafeMuxPath when something is not the
    user's own."""
    d = muxdir.private_dir()
    record = muxdir.read_record(d) if d is not None else None
    if d is None or record is None or not muxdir.require_private(d / SOCKET, "socket"):
        raise NotRunning("no multiplexer was started")
    return d / SOCKET, record


def connect() -> socket.socket:
    """A checked connection to the multiplexer this user started: the files as in
    `_started`, then the peer's uid and pid. Raises as `_started` does."""
    path, record = _started()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(str(path))
        muxdir.require_peer(sock, path, record["pid"])
        sock.settimeout(READ_TIMEOUT)
    except OSError as exc:
        sock.close()
        raise NotRunning(str(exc)) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _ping() -> dict[str, Any] | None:
    """The running multiplexer's answer to a ping, or None. Raises UnsafeMuxPath."""
    try:
        sock = connect()
    except NotRunning:
        return None
    with sock:
        sock.settimeout(PING_TIMEOUT)
        try:
            send(sock, {"op": "ping"})
            with sock.makefile("rb") as f:
                reply = json.loads(f.readline())
        except (OSError, ValueError):
            return None
    return reply if isinstance(reply, dict) and "pong" in reply else None


_seen: dict[str, float] = {}  # socket path -> when it last answered (this process)


def forget() -> None:
    """Ask again next time: the multiplexer was found gone, stuck or refused."""
    _seen.clear()


def running() -> bool:
    """Whether a multiplexer this user started answers (remembered for a second, so a
    fleet command asks once, not once per device). Never raises: anything unsafe is
    simply not used (`state` says why)."""
    path = str(socket_path())
    try:
        _started()  # the files are checked every time, the answer is remembered
        if time.monotonic() - _seen.get(path, -10.0) < 1.0:
            return True
        alive = _ping() is not None
    except (NotRunning, EdgeError):
        return False
    if alive:
        _seen[path] = time.monotonic()
    return alive


def state() -> dict[str, Any]:
    """{"running", "socket", "pid", "active"}; raises UnsafeMuxPath when refused."""
    reply = _ping()
    return {
        "running": reply is not None,
        "socket": str(socket_path()),
        "pid": reply.get("pong") if reply else None,
        "active": reply.get("active") if reply else None,
    }


def start(idle: float = IDLE_SECONDS, client_timeout: float = CLIENT_TIMEOUT) -> int:
    """Start the multiplexer in the background (if none runs); returns its pid or 0.
    Raises UnsafeMuxPath when its directory or socket is not the user's own."""
    if _ping() is not None:
        return 0
    d = muxdir.private_dir(create=True)
    assert d is not None
    muxdir.require_private(d / SOCKET, "socket")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.transport.muxserver", str(idle), str(client_timeout)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while True:
        exited = proc.poll() is not None
        reply = _ping()
        if reply is not None:
            return int(reply["pong"])  # ours, or one a racing `start` began first
        if exited or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise TransportError(
        "the connection multiplexer did not start",
        "Run `python -m edge.transport.muxserver` to see why.",
    )


def stop() -> bool:
    """Ask the multiplexer to exit and wait for it; True if one was running."""
    forget()
    if _ping() is None:
        return False
    try:
        with connect() as sock:
            send(sock, {"op": "quit"})
    except (NotRunning, OSError):
        return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ping() is not None:
        time.sleep(0.05)
    return True
