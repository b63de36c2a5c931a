"""Userspace TCP delay proxy: adds a fixed one-way delay to each direction (no netem).

Each accepted connection gets, per direction, a reader thread that timestamps chunks into
a FIFO and a sender thread that forwards each chunk once its delay has passed, so order
is kept and one connection never holds up another. A new connection reaches the target
1.5 RTT after it is accepted, so the first bytes each way arrive when they would over a
real TCP handshake on a link of that RTT.

The proxy reads as fast as the sender writes, so TCP's own window and slow start do not
see the delay: the link behaves like a high-BDP path with large socket buffers, and SSH
channel windows are what the delay limits. That is the effect this harness measures.

Run standalone (stdlib only):  python delay.py --delay-ms 25 --to 10.77.1.2:22 [--to ...]
It prints one JSON line {"ports": [...]} (listen ports on --listen, in --to order).
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import socket
import struct
import sys
import threading
import time

CHUNK = 256 * 1024
MAX_QUEUED_CHUNKS = 1024  # per direction
_EOF = b""


def _abort(sock: socket.socket) -> None:
    """Make the next close send RST, and wake every thread blocked on `sock`."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Link:
    """One proxied connection: client <-> target, four threads."""

    def __init__(self, client: socket.socket, target: socket.socket, delay_s: float) -> None:
        self.client, self.target, self.delay_s = client, target, delay_s
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._open = 2
        self.threads: list[threading.Thread] = []
        for src, dst in ((client, target), (target, client)):
            q: queue.Queue[tuple[float, bytes]] = queue.Queue(MAX_QUEUED_CHUNKS)
            self.threads.append(threading.Thread(target=self._read, args=(src, q), daemon=True))
            self.threads.append(threading.Thread(target=self._send, args=(dst, q), daemon=True))
        for t in self.threads:
            t.start()

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.dead.is_set():
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = _EOF
            due = time.monotonic() + self.delay_s
            while not self.dead.is_set():
                try:
                    q.put((due, data), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not data:
                return

    def _send(self, dst: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.dead.is_set():
            try:
                due, data = q.get(timeout=0.1)
            except queue.Empty:
                continue
            wait = due - time.monotonic()
            if wait > 0 and self.dead.wait(wait):
                return
            if not data:
                self._half_close(dst)
                return
            try:
                dst.sendall(data)
            except OSError:
                self.kill()
                return

    def _half_close(self, dst: socket.socket) -> None:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            self._open -= 1
            done = self._open == 0
        if done:
            self.dead.set()
            self.client.close()
            self.target.close()

    def kill(self) -> None:
        if not self.dead.is_set():
            self.dead.set()
            _abort(self.client)
            _abort(self.target)


class DelayProxy:
    """Forward `listen_host`:<free port> to `target` with `delay_ms` added each way."""

    def __init__(self, target: tuple[str, int], delay_ms: float,
                 listen_host: str = "127.0.0.1") -> None:
        self.target, self.delay_s = target, delay_ms / 1000.0
        self._sock = socket.create_server((listen_host, 0), backlog=256)
        self.port = int(self._sock.getsockname()[1])
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        time.sleep(3 * self.delay_s)  # SYN, SYN-ACK, ACK: the target accepts 1.5 RTT later
        try:
            target = socket.create_connection(self.target, timeout=10.0)
        except OSError:
            _abort(client)
            client.close()
            return
        target.settimeout(None)
        for s in (client, target):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, target, self.delay_s)
        with self._lock:
            self._links = [lk for lk in self._links if not lk.dead.is_set()] + [link]

    def stop(self) -> None:
        self._sock.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT or stdin closes."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction")
    p.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    p.add_argument("--to", action="append", required=True, metavar="HOST:PORT")
    args = p.parse_args(argv)
    proxies = []
    for spec in args.to:
        host, _, port = spec.rpartition(":")
        proxies.append(DelayProxy((host, int(port)), args.delay_ms, args.listen))
    print(json.dumps({"ports": [px.port for px in proxies]}), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    stop.wait()
    for px in proxies:
        px.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
