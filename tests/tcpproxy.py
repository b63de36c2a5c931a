"""A userspace TCP proxy for tests: one-way delay, cutting live links, refusing new ones,
black-holing links (silence, nothing closed).

Each connection gets, per direction, a reader thread that timestamps chunks into a FIFO
queue and a sender thread that forwards each chunk once its delay has passed, so order is
kept and one slow link never holds up another.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time

CHUNK = 64 * 1024
MAX_QUEUED_CHUNKS = 1024  # per direction: 64 MiB in flight at most
_EOF = b""


def _abort(sock: socket.socket) -> None:
    """Make the next close send RST, and wake every thread blocked on `sock`."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Link:
    """One proxied connection: client <-> target, four threads."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, target: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.target = target
        self.dead = threading.Event()
        self.silent = threading.Event()  # black-holed: nothing read, nothing forwarded
        self._lock = threading.Lock()
        self._open_directions = 2
        self.threads: list[threading.Thread] = []
        for src, dst, up in ((client, target, True), (target, client, False)):
            q: queue.Queue[tuple[float, bytes]] = queue.Queue(MAX_QUEUED_CHUNKS)
            self.threads.append(threading.Thread(target=self._read, args=(src, q), daemon=True))
            self.threads.append(threading.Thread(target=self._send, args=(dst, q, up), daemon=True))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.dead.is_set():
            if self.silent.is_set():
                self.dead.wait(0.05)
                continue
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = _EOF
                self.kill()
            due = time.monotonic() + self.proxy.delay_ms / 1000.0
            while not self.dead.is_set():
                try:
                    q.put((due, data), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not data:
                return

    def _send(self, dst: socket.socket, q: queue.Queue[tuple[float, bytes]], up: bool) -> None:
        while not self.dead.is_set():
            try:
                due, data = q.get(timeout=0.1)
            except queue.Empty:
                continue
            wait = due - time.monotonic()
            if wait > 0 and self.dead.wait(wait):
                return
            while self.silent.is_set():  # a chunk read as the silence began is never sent
                if self.dead.wait(0.05):
                    return
            if not data:
                self._half_close(dst)
                return
            self.proxy._count(len(data), up)
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
            self._open_directions -= 1
            done = self._open_directions == 0
        if done:
            self.close()

    def kill(self) -> None:
        """Drop the link at once: both peers see it end (RST where possible)."""
        if not self.dead.is_set():
            self.dead.set()
            _abort(self.client)
            _abort(self.target)
        self.proxy._forget(self)

    def close(self) -> None:
        self.dead.set()
        self.proxy._forget(self)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        for sock in (self.client, self.target):
            sock.close()


class TcpProxy:
    """Forward `listen_host`:`port` to `target_host`:`target_port` with a one-way delay.

    `delay_ms` applies to each direction and may be changed while running (it applies to
    data read after the change). `cut()` drops every live connection; `block()` makes new
    connections close at once until `unblock()`. `blackhole()` makes the link go silent,
    as when packets are dropped: nothing is read or forwarded on live connections, new
    ones are accepted and never answered, and nothing is closed (the peers' writes block
    once the socket buffers fill); `heal()` forwards new connections again.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        listen_host: str = "127.0.0.1",
        delay_ms: float = 0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.delay_ms = delay_ms
        self.port = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.connections = 0
        self.blocked = False
        self.blackholed = False
        self._held: list[socket.socket] = []  # accepted while black-holed, never answered
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._finished: list[_Link] = []
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def live(self) -> int:
        """Connections open right now."""
        with self._lock:
            return len(self._links)

    def start(self) -> TcpProxy:
        """Listen on a free port (`self.port`) and start accepting."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_host, 0))
        sock.listen(128)
        sock.settimeout(0.05)
        self._listener = sock
        self.port = int(sock.getsockname()[1])
        self._stopping.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                self._reap()
                continue
            except OSError:
                return
            client.settimeout(None)
            if self.blocked:
                _abort(client)
                client.close()
                continue
            if self.blackholed:
                with self._lock:
                    self._held.append(client)
                continue
            try:
                target = socket.create_connection((self.target_host, self.target_port), 5.0)
            except OSError:
                _abort(client)
                client.close()
                continue
            target.settimeout(None)
            for s in (client, target):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, target)
            with self._lock:
                self._links.add(link)
                self.connections += 1
            if self.blackholed:  # black-holed while this one was connecting
                link.silent.set()
            link.start()

    def _count(self, n: int, up: bool) -> None:
        with self._lock:
            if up:
                self.bytes_up += n
            else:
                self.bytes_down += n

    def _forget(self, link: _Link) -> None:
        with self._lock:
            if link in self._links:
                self._links.discard(link)
                self._finished.append(link)

    def _reap(self) -> None:
        """Join and close links whose threads have all ended."""
        with self._lock:
            done = [lk for lk in self._finished if not any(t.is_alive() for t in lk.threads)]
            self._finished = [lk for lk in self._finished if lk not in done]
        for link in done:
            link.join(0)

    def cut(self) -> int:
        """Drop every live connection at once; returns how many were dropped."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.kill()
        return len(links)

    def block(self) -> None:
        """Close new connections as soon as they arrive (live ones are left alone)."""
        self.blocked = True

    def unblock(self) -> None:
        self.blocked = False

    def blackhole(self) -> None:
        """Silence every live connection and every new one (see the class docstring)."""
        self.blackholed = True
        with self._lock:
            links = list(self._links)
        for link in links:
            link.silent.set()

    def heal(self) -> None:
        """Forward new connections again; the silenced ones stay silent until stop()."""
        self.blackholed = False

    def stop(self) -> None:
        """Stop accepting, drop every connection and join every thread."""
        self._stopping.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5.0)
            self._accept_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.cut()
        with self._lock:
            links, self._finished = self._finished, []
            held, self._held = self._held, []
        for sock in held:
            _abort(sock)
            sock.close()
        for link in links:
            link.join(5.0)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
