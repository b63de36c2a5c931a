"""The multiplexer's server process (`python -m edge.transport.muxserver IDLE TIMEOUT`):
one pooled SSH connection per device, requests from this user's uid only, heartbeats
while a request runs, and no idling out while one is in flight. The wire format is in
`edge.transport.mux`; `muxdir` has the directory and peer checks."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from edge.core.errors import EdgeError
from edge.core.trace import span
from edge.transport import muxdir
from edge.transport.base import TransportError
from edge.transport.hostkey_policy import HostKeyError
from edge.transport.mux import CLIENT_TIMEOUT, HEARTBEAT_SECONDS, IDLE_SECONDS, send
from edge.transport.muxdir import SOCKET
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import Endpoint


@contextmanager
def _beating(handler: _Handler) -> Iterator[None]:
    """Send heartbeats to the handler's client until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            with handler.send_lock:
                if stop.is_set():
                    return
                try:
                    send(handler.connection, {"beat": True})
                except OSError:
                    return

    threading.Thread(target=beat, daemon=True).start()
    try:
        yield
    finally:
        stop.set()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.client_timeout)  # each read and send of it
        self.send_lock = threading.Lock()

    def reply(self, obj: dict[str, Any]) -> None:
        with self.send_lock:
            send(self.connection, obj)

    def handle(self) -> None:
        with self.server.in_flight():
            req: Any = None
            try:
                req = json.loads(self.rfile.readline())
                self.serve_one(req)
            except TransportError as exc:
                kind = "hostkey" if isinstance(exc, HostKeyError) else "transport"
                self.try_reply({"error": exc.message, "hint": exc.hint, "kind": kind})
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self.try_reply({"error": f"mux: {exc}", "hint": None, "kind": "transport"})
            finally:
                if not (isinstance(req, dict) and req.get("op") == "ping"):
                    self.server.touch()  # a ping (`mux status`, a probe) is no use

    def try_reply(self, obj: dict[str, Any]) -> None:
        try:
            self.reply(obj)
        except OSError:
            pass  # the client is gone or does not read

    def serve_one(self, req: dict[str, Any]) -> None:
        op = req["op"]
        if op == "ping":
            self.reply({"pong": os.getpid(), "active": self.server.active - 1})
            return
        if op == "quit":
            threading.Thread(target=self.server.shutdown).start()
            return
        if op not in ("run", "stream", "serve"):
            raise ValueError(f"unknown op {op!r}")
        transport, lock = self.server.transport(req)
        argv = req["argv"]
        with _beating(self):
            with lock:  # per device: one handshake, one resident start, even when racing
                with span("connect (if not warm)", transport.device_name):
                    transport.connect()
                resident = self.server.resident(transport, argv) if op == "serve" else None
            if resident is not None:
                final: dict[str, Any] = {"reply": resident.request(req["line"], req.get("timeout"))}
            elif op == "run":
                data = base64.b64decode(req["stdin"]) if req.get("stdin") else None
                r = transport.run(argv, input=data, timeout=req.get("timeout"))
                final = {"exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr}
            else:  # closing: a client that stops reading ends the remote command too
                with closing(transport.stream(argv, idle_timeout=req.get("idle_timeout"))) as lines:
                    for line in lines:
                        self.reply({"line": line})
                final = {"end": True}
        self.reply(final)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 256  # a fleet command connects once per device, all at once

    def __init__(self, path: Path, idle: float, client_timeout: float) -> None:
        super().__init__(str(path), _Handler)
        self.idle = idle
        self.client_timeout = client_timeout
        self.last = time.monotonic()
        self.active = 0  # requests in flight: a long follow keeps the multiplexer up
        self.count_lock = threading.Lock()
        self.lock = threading.Lock()
        self.pool: dict[str, tuple[SSHTransport, threading.Lock]] = {}
        self.residents: dict[tuple[SSHTransport, tuple[str, ...]], _Resident] = {}

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Serve only clients of this uid, whatever the socket's permissions say."""
        try:
            _pid, uid = muxdir.peer_credentials(request)
        except (OSError, EdgeError):
            return False
        return uid == os.getuid()

    def touch(self) -> None:
        with self.count_lock:
            self.last = time.monotonic()

    @contextmanager
    def in_flight(self) -> Iterator[None]:
        """Count a connection as in flight while it is served: no idling out meanwhile."""
        with self.count_lock:
            self.active += 1
        try:
            yield
        finally:
            with self.count_lock:
                self.active -= 1

    def transport(self, req: dict[str, Any]) -> tuple[SSHTransport, threading.Lock]:
        key = json.dumps([req["endpoint"], req.get("known_hosts")], sort_keys=True)
        with self.lock:
            if key not in self.pool:
                known = req.get("known_hosts")
                self.pool[key] = (
                    SSHTransport(
                        req["device"], Endpoint(**req["endpoint"]), Path(known) if known else None
                    ),
                    threading.Lock(),
                )
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
        """Shut down after `idle` seconds with no request, and none in flight."""
        while True:
            time.sleep(min(1.0, self.idle / 10))
            with self.count_lock:
                if self.active == 0 and time.monotonic() - self.last >= self.idle:
                    break
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
                raise TransportError(
                    f"{self.device}: server {self.argv[-1]} failed: {exc}"
                ) from exc
        if not reply.endswith(b"\n"):
            self.chan.close()
            raise TransportError(f"{self.device}: server {self.argv[-1]} ended")
        return reply.decode()


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def serve(idle: float = IDLE_SECONDS, client_timeout: float = CLIENT_TIMEOUT) -> None:
    """Run the multiplexer in this process until idle for `idle` seconds."""
    d = muxdir.private_dir(create=True)
    assert d is not None  # created just now, or refused
    path = d / SOCKET
    if muxdir.require_private(path, "socket"):
        if _answers(path):
            raise EdgeError(
                f"a connection multiplexer already listens on {path}",
                "Stop it first: edge mux stop",
            )
        path.unlink()  # a stale one of ours
    old = os.umask(0o077)
    try:
        server = _Server(path, idle, client_timeout)
    finally:
        os.umask(old)
    bound = os.lstat(path).st_ino
    muxdir.write_record(
        d,
        {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "socket": str(path),
            "idle": idle,
            "started": time.time(),
        },
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    threading.Thread(target=server.watch_idle, daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        # the socket goes before the record: whoever sees no record finds no socket
        server.server_close()
        try:
            if os.lstat(path).st_ino == bound:  # not a newer multiplexer's socket
                path.unlink()
        except OSError:
            pass
        muxdir.remove_record(d, os.getpid())
        for t, _ in server.pool.values():
            t.close()


if __name__ == "__main__":
    serve(*(float(a) for a in sys.argv[1:3]))
