"""One proxied TCP connection with a one-way delay: the core of the benchmark's delay proxy
(delay.py) and of the tests' delay/cut proxy (tests/tcpproxy.py). Stdlib only.

Each link gets, per direction, a reader thread that timestamps chunks into a FIFO queue
and a sender thread that forwards each chunk once its delay has passed, so order is kept
and one slow link never holds up another. An end of file is forwarded as a half-close
(shutdown SHUT_WR); the link ends when both directions have ended, or at once on `kill()`.
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from typing import Callable, Optional, Tuple

MAX_QUEUED_CHUNKS = 1024  # per direction
_EOF = b""


def abort(sock: socket.socket) -> None:
    """Make the next close send RST, and wake every thread blocked on `sock`."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def connect(
    client: socket.socket, target: Tuple[str, int], timeout: float
) -> Optional[socket.socket]:
    """Open the target side of a link for an accepted `client` (both blocking, no Nagle);
    None, with `client` reset and closed, when the target cannot be reached."""
    try:
        sock = socket.create_connection(target, timeout)
    except OSError:
        abort(client)
        client.close()
        return None
    for s in (client, sock):
        s.settimeout(None)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Link:
    """One proxied connection: client <-> target, four threads (started by `start()`).

    `delay_s()` is read as each chunk arrives, so a change applies to data read after it.
    `on_bytes(n, up)` is called before each chunk is forwarded (`up`: client to target);
    `on_end(link)` once the link has ended, either way. Setting `silent` black-holes the
    link: nothing is read or forwarded, and nothing is closed.
    """

    def __init__(
        self,
        client: socket.socket,
        target: socket.socket,
        delay_s: Callable[[], float],
        chunk: int = 64 * 1024,
        on_bytes: Optional[Callable[[int, bool], None]] = None,
        on_end: Optional[Callable[[Link], None]] = None,
    ) -> None:
        self.client, self.target = client, target
        self.delay_s, self.chunk = delay_s, chunk
        self.on_bytes, self.on_end = on_bytes, on_end
        self.dead = threading.Event()
        self.silent = threading.Event()
        self._lock = threading.Lock()
        self._open_directions = 2
        self.threads: list[threading.Thread] = []
        for src, dst, up in ((client, target, True), (target, client, False)):
            q: queue.Queue[tuple[float, bytes]] = queue.Queue(MAX_QUEUED_CHUNKS)
            self.threads.append(threading.Thread(target=self._read, args=(src, q), daemon=True))
            self.threads.append(threading.Thread(target=self._send, args=(dst, q, up), daemon=True))

    def start(self) -> Link:
        """Start the four threads."""
        for t in self.threads:
            t.start()
        return self

    def _read(self, src: socket.socket, q: queue.Queue[tuple[float, bytes]]) -> None:
        while not self.dead.is_set():
            if self.silent.is_set():
                self.dead.wait(0.05)
                continue
            try:
                data = src.recv(self.chunk)
            except OSError:  # a reset: both peers see the link end
                data = _EOF
                self.kill()
            due = time.monotonic() + self.delay_s()
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
            if self.on_bytes is not None:
                self.on_bytes(len(data), up)
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
        if done:  # both readers have returned: nothing uses the sockets any more
            self.dead.set()
            self.client.close()
            self.target.close()
            self._ended()

    def kill(self) -> None:
        """Drop the link at once: both peers see it end (RST where possible)."""
        if not self.dead.is_set():
            self.dead.set()
            abort(self.client)
            abort(self.target)
        self._ended()

    def _ended(self) -> None:
        if self.on_end is not None:
            self.on_end(self)

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the threads, then close both sockets."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        for sock in (self.client, self.target):
            sock.close()
