"""A per-user connection multiplexer, like OpenSSH's ControlPersist.

`edge mux start` runs a background process that keeps one SSH connection per device open
and serves commands over a Unix socket (mode 0600, in a 0700 directory). While it runs,
every `edge` command sends its remote commands through it and skips the SSH handshake.
It exits after `--idle` seconds without a request. File transfers still open their own
connection (they are long enough that the handshake does not matter).

Wire format: one JSON request line; replies are JSON lines. `run` answers once with
{"exit", "stdout", "stderr"}; `stream` answers {"line"} per line and then {"end": true};
`serve` passes one line to a server process it keeps running on the device (such as the
agent's `serve`, which then skips a Python start per command) and answers {"reply"}.
Failures answer {"error", "hint", "kind"}.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..paths import edge_home
from ..trace import span
from .base import CommandResult, TransportError
from .ssh import Endpoint, HostKeyError, SSHTransport

IDLE_SECONDS = 600.0


def socket_path() -> Path:
    home = edge_home()
    base = home / "mux" if home else Path(f"/tmp/edge-mux-{os.getuid()}")
    return base / "mux.sock"


def _send(sock: socket.socket, obj: dict[str, Any]) -> None:
    sock.sendall((json.dumps(obj) + "\n").encode())


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.touch()
        try:
            req = json.loads(self.rfile.readline())
            if req["op"] == "quit":
                threading.Thread(target=self.server.shutdown).start()
                return
            transport, lock = self.server.transport(req)
            argv = req["argv"]
            with lock:  # per device: one handshake, one resident start, even when racing
                with span("connect (if not warm)", transport.device_name):
                    transport.connect()
                resident = self.server.resident(transport, argv) if req["op"] == "serve" \
                    else None
            if resident is not None:
                line = resident.request(req["line"], req.get("timeout"))
                _send(self.connection, {"reply": line})
            elif req["op"] == "run":
                data = base64.b64decode(req["stdin"]) if req.get("stdin") else None
                r = transport.run(argv, input=data, timeout=req.get("timeout"))
                _send(self.connection, {"exit": r.exit_code, "stdout": r.stdout,
                                        "stderr": r.stderr})
            else:
                for line in transport.stream(argv, idle_timeout=req.get("idle_timeout")):
                    _send(self.connection, {"line": line})
                _send(self.connection, {"end": True})
        except TransportError as exc:
            kind = "hostkey" if isinstance(exc, HostKeyError) else "transport"
            _send(self.connection, {"error": exc.message, "hint": exc.hint, "kind": kind})
        except (OSError, ValueError, KeyError) as exc:
            try:
                _send(self.connection, {"error": f"mux: {exc}", "hint": None,
                                        "kind": "transport"})
            except OSError:
                pass
        finally:
            self.server.touch()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256  # a fleet command connects once per device, all at once

    def __init__(self, path: Path, idle: float) -> None:
        super().__init__(str(path), _Handler)
        self.idle = idle
        self.last = time.monotonic()
        self.lock = threading.Lock()
        self.pool: dict[str, tuple[SSHTransport, threading.Lock]] = {}
        self.residents: dict[tuple[SSHTransport, tuple[str, ...]], _Resident] = {}

    def touch(self) -> None:
        self.last = time.monotonic()

    def transport(self, req: dict[str, Any]) -> tuple[SSHTransport, threading.Lock]:
        key = json.dumps([req["endpoint"], req.get("known_hosts")], sort_keys=True)
        with self.lock:
            if key not in self.pool:
                known = req.get("known_hosts")
                self.pool[key] = (SSHTransport(req["device"], Endpoint(**req["endpoint"]),
                                               Path(known) if known else None),
                                  threading.Lock())
            return self.pool[key]

    def resident(self, transport: SSHTransport, argv: list[str]) -> _Resident:
        """The long-lived server process `argv` on the pooled transport's device, started if
        needed. The caller holds that device's lock, so no other lock is needed here."""
        key = (transport, tuple(argv))
        found = self.residents.get(key)
        if found is None or not found.alive():
            with span("start resident", transport.device_name):
                found = self.residents[key] = _Resident(transport, argv)
        return found

    def watch_idle(self) -> None:
        while time.monotonic() - self.last < self.idle:
            time.sleep(min(1.0, self.idle / 10))
        self.shutdown()


class _Resident:
    """A server process on a device (an exec channel kept open) that answers one line per
    request line; requests take turns."""

    def __init__(self, transport: SSHTransport, argv: list[str]) -> None:
        self.argv = argv
        self.device = transport.device_name
        self.chan = transport.open_channel(argv)
        self.reader = self.chan.makefile("rb")
        self.lock = threading.Lock()

    def alive(self) -> bool:
        return not (self.chan.closed or self.chan.exit_status_ready())

    def request(self, line: str, timeout: float | None) -> str:
        with self.lock:
            try:
                self.chan.settimeout(timeout)
                self.chan.sendall(line.encode() + b"\n")
                reply = self.reader.readline()
            except (OSError, EOFError) as exc:  # socket.timeout is an OSError
                self.chan.close()
                raise TransportError(f"{self.device}: server {self.argv[-1]} failed: {exc}"
                                     ) from exc
        if not reply.endswith(b"\n"):
            self.chan.close()
            raise TransportError(f"{self.device}: server {self.argv[-1]} ended")
        return reply.decode()


def serve(idle: float = IDLE_SECONDS) -> None:
    """Run the multiplexer in this process until idle for `idle` seconds."""
    path = socket_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if path.exists():
        path.unlink()
    old = os.umask(0o077)
    try:
        server = _Server(path, idle)
    finally:
        os.umask(old)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=server.watch_idle, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        for t, _ in server.pool.values():
            t.close()
        server.server_close()
        path.unlink(missing_ok=True)


_seen: dict[str, float] = {}  # socket path -> when it last answered (this process)


def running() -> bool:
    """Whether a multiplexer answers on this user's socket (remembered for a second, so a
    fleet command asks once, not once per device)."""
    path = socket_path()
    if not path.exists():
        return False
    if time.monotonic() - _seen.get(str(path), -10.0) < 1.0:
        return True
    if _answers(path):
        _seen[str(path)] = time.monotonic()
        return True
    return False


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            s.connect(str(path))
        return True
    except OSError:
        return False


def start(idle: float = IDLE_SECONDS) -> int:
    """Start the multiplexer in the background (if none runs); returns its pid or 0."""
    if running():
        return 0
    proc = subprocess.Popen([sys.executable, "-m", "edge.transport.mux", str(idle)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not running():
        time.sleep(0.05)
    if not running():
        raise TransportError("the connection multiplexer did not start",
                             "Run `python -m edge.transport.mux` to see why.")
    return proc.pid


def stop() -> bool:
    """Ask the multiplexer to exit; True if one was running."""
    if not running():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(socket_path()))
        _send(s, {"op": "quit"})
    _seen.clear()
    return True


class MuxTransport(SSHTransport):
    """An SSHTransport whose commands go through the multiplexer's warm connection;
    file transfers use a direct connection of its own."""

    def _request(self, req: dict[str, Any]) -> Iterator[dict[str, Any]]:
        req.update(device=self.device_name, endpoint=asdict(self.endpoint),
                   known_hosts=str(self.fleet_known_hosts) if self.fleet_known_hosts else None)
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(str(socket_path()))
        except OSError as exc:
            raise TransportError(f"{self.device_name}: connection multiplexer unreachable: "
                                 f"{exc}", "Restart it: edge mux stop; edge mux start") from exc
        with sock, sock.makefile("rb") as replies:
            _send(sock, req)
            for raw in replies:
                reply = json.loads(raw)
                if "error" in reply:
                    cls = HostKeyError if reply.get("kind") == "hostkey" else TransportError
                    raise cls(reply["error"], reply.get("hint"))
                yield reply
                if "end" in reply or "exit" in reply or "reply" in reply:
                    return
        raise TransportError(f"{self.device_name}: the multiplexer closed the connection")

    def run(self, argv: Sequence[str], input: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        req = {"op": "run", "argv": list(argv), "timeout": timeout,
               "stdin": base64.b64encode(input).decode() if input else None}
        reply = next(self._request(req))
        return CommandResult(list(argv), reply["exit"], reply["stdout"], reply["stderr"])

    def serve_request(self, server_argv: Sequence[str], line: str,
                      timeout: float | None = None) -> str:
        """One request line to a server process the multiplexer keeps on the device
        (started with `server_argv` on first use); returns its reply line."""
        reply = next(self._request({"op": "serve", "argv": list(server_argv), "line": line,
                                    "timeout": timeout}))
        return str(reply["reply"])

    def stream(self, argv: Sequence[str], idle_timeout: float | None = None) -> Iterator[str]:
        for reply in self._request({"op": "stream", "argv": list(argv),
                                    "idle_timeout": idle_timeout}):
            if "line" in reply:
                yield reply["line"]


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else IDLE_SECONDS)
