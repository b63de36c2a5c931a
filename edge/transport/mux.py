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

import base64
import json
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.core.errors import EdgeError
from edge.transport import muxdir
from edge.transport.base import CommandResult, TransportError
from edge.transport.hostkey_policy import HostKeyError
from edge.transport.muxdir import SOCKET, UnsafeMuxPath
from edge.transport.muxserver import CLIENT_TIMEOUT, HEARTBEAT_SECONDS, IDLE_SECONDS, send, serve
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import Endpoint

__all__ = [
    "HEARTBEAT_SECONDS",
    "IDLE_SECONDS",
    "MuxTransport",
    "UnsafeMuxPath",
    "running",
    "serve",
    "socket_path",
    "start",
    "state",
    "stop",
]

CONNECT_TIMEOUT = 5.0  # connecting to the socket
READ_TIMEOUT = 30.0  # the heartbeat rule: a client gives up on a silent multiplexer
PING_TIMEOUT = 2.0


class _NotRunning(Exception):
    """No multiplexer of this user's (none started, or it is gone)."""


def socket_path() -> Path:
    """Where this user's multiplexer socket is (or would be)."""
    return muxdir.runtime_dir() / SOCKET


def _started() -> tuple[Path, dict[str, Any]]:
    """The socket and start record of a multiplexer this user started (file checks only).
    Raises _NotRunning when there is none and UnsafeMuxPath when something is not the
    user's own."""
    d = muxdir.private_dir()
    record = muxdir.read_record(d) if d is not None else None
    if d is None or record is None or not muxdir.require_private(d / SOCKET, "socket"):
        raise _NotRunning("no multiplexer was started")
    return d / SOCKET, record


def _connect() -> socket.socket:
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
        raise _NotRunning(str(exc)) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _ping() -> dict[str, Any] | None:
    """The running multiplexer's answer to a ping, or None. Raises UnsafeMuxPath."""
    try:
        sock = _connect()
    except _NotRunning:
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
    except (_NotRunning, EdgeError):
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
    _seen.clear()
    if _ping() is None:
        return False
    try:
        with _connect() as sock:
            send(sock, {"op": "quit"})
    except (_NotRunning, OSError):
        return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ping() is not None:
        time.sleep(0.05)
    return True


class MuxTransport(SSHTransport):
    """An SSHTransport whose commands go through the multiplexer's warm connection;
    file transfers use a direct connection of its own, and so does everything once the
    multiplexer is found gone, stuck or refused."""

    def __init__(
        self, device_name: str, endpoint: Endpoint, fleet_known_hosts: Path | None = None
    ) -> None:
        super().__init__(device_name, endpoint, fleet_known_hosts)
        self.direct = False

    def _go_direct(self) -> None:
        self.direct = True
        _seen.clear()

    def _open(self, req: dict[str, Any]) -> socket.socket | None:
        """A connection to the multiplexer with `req` sent on it; None (and direct from
        now on) when there is no usable multiplexer, so nothing was sent."""
        if self.direct:
            return None
        req.update(
            device=self.device_name,
            endpoint=asdict(self.endpoint),
            known_hosts=str(self.fleet_known_hosts) if self.fleet_known_hosts else None,
        )
        try:
            sock = _connect()
        except (_NotRunning, EdgeError):
            self._go_direct()
            return None
        try:
            send(sock, req)
        except OSError:  # it went away before it had the whole request
            sock.close()
            self._go_direct()
            return None
        return sock

    def _replies(self, sock: socket.socket) -> Generator[dict[str, Any], None, None]:
        with sock, sock.makefile("rb") as replies:
            while True:
                try:
                    raw = replies.readline()
                except TimeoutError as exc:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: the connection multiplexer sent nothing for "
                        f"{READ_TIMEOUT:.0f}s; it looks stuck",
                        "Later commands connect directly. Restart it: edge mux stop; "
                        "edge mux start (or kill its process).",
                    ) from exc
                except OSError as exc:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: lost the connection multiplexer: {exc}"
                    ) from exc
                if not raw:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: the connection multiplexer went away mid-command",
                        "Run it again: commands connect directly while it is gone "
                        "(edge mux start brings it back).",
                    )
                reply = json.loads(raw)
                if "beat" in reply:
                    continue
                if "error" in reply:
                    cls = HostKeyError if reply.get("kind") == "hostkey" else TransportError
                    raise cls(reply["error"], reply.get("hint"))
                yield reply
                if "end" in reply or "exit" in reply or "reply" in reply:
                    return

    def _one(self, sock: socket.socket) -> dict[str, Any]:
        with closing(self._replies(sock)) as replies:
            return next(replies)

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        sock = self._open(
            {
                "op": "run",
                "argv": list(argv),
                "timeout": timeout,
                "stdin": base64.b64encode(input).decode() if input else None,
            }
        )
        if sock is None:
            return super().run(argv, input=input, timeout=timeout)
        reply = self._one(sock)
        return CommandResult(list(argv), reply["exit"], reply["stdout"], reply["stderr"])

    def serve_request(
        self, server_argv: Sequence[str], line: str, timeout: float | None = None
    ) -> str:
        """One request line to a server process the multiplexer keeps on the device
        (started with `server_argv` on first use); returns its reply line. Without a
        multiplexer, a TransportError: the caller runs the command the usual way."""
        sock = self._open(
            {"op": "serve", "argv": list(server_argv), "line": line, "timeout": timeout}
        )
        if sock is None:
            raise TransportError(f"{self.device_name}: no connection multiplexer")
        return str(self._one(sock)["reply"])

    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        sock = self._open({"op": "stream", "argv": list(argv), "idle_timeout": idle_timeout})
        if sock is None:
            yield from super().stream(argv, idle_timeout=idle_timeout)
            return
        with closing(self._replies(sock)) as replies:
            for reply in replies:
                if "line" in reply:
                    yield reply["line"]
