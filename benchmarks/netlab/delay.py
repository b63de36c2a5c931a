"""Userspace TCP delay proxy: adds a fixed one-way delay to each direction (no netem).

Each accepted connection is a `proxy.Link` (the delayed send loop and half-close that the
tests' proxy uses too). A new connection reaches the target 1.5 RTT after it is accepted,
so the first bytes each way arrive when they would over a real TCP handshake on a link of
that RTT.

The proxy reads as fast as the sender writes, so TCP's own window and slow start do not
see the delay: the link behaves like a high-BDP path with large socket buffers, and SSH
channel windows are what the delay limits. That is the effect this harness measures.

Run standalone (stdlib only), from benchmarks/:
    python -m netlab.delay --delay-ms 25 --to 10.77.1.2:22 [--to ...]
It prints one JSON line {"ports": [...]} (listen ports on --listen, in --to order).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time

from .proxy import Link, connect

CHUNK = 256 * 1024


class DelayProxy:
    """Forward `listen_host`:<free port> to `target` with `delay_ms` added each way."""

    def __init__(
        self, target: tuple[str, int], delay_ms: float, listen_host: str = "127.0.0.1"
    ) -> None:
        self.target, self.delay_s = target, delay_ms / 1000.0
        self._sock = socket.create_server((listen_host, 0), backlog=256)
        self.port = int(self._sock.getsockname()[1])
        self._links: list[Link] = []
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
        target = connect(client, self.target, 10.0)
        if target is None:
            return
        link = Link(client, target, lambda: self.delay_s, CHUNK).start()
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
