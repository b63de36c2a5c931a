"""A userspace TCP proxy for tests: one-way delay, cutting live links, refusing new ones,
black-holing links (silence, nothing closed).

Each connection is a `netlab.proxy.Link` (benchmarks/netlab/proxy.py), the same delayed
send loop and half-close as the push benchmark's delay proxy.
"""

from __future__ import annotations

import socket
import threading

from netlab.proxy import Link, abort, connect

CHUNK = 64 * 1024


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
        self._links: set[Link] = set()
        self._finished: list[Link] = []
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
                abort(client)
                client.close()
                continue
            if self.blackholed:
                with self._lock:
                    self._held.append(client)
                continue
            target = connect(client, (self.target_host, self.target_port), 5.0)
            if target is None:
                continue
            link = Link(
                client,
                target,
                lambda: self.delay_ms / 1000.0,
                CHUNK,
                on_bytes=self._count,
                on_end=self._forget,
            )
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

    def _forget(self, link: Link) -> None:
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
            abort(sock)
            sock.close()
        for link in links:
            link.join(5.0)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
