"""The push benchmark's delay proxy (benchmarks/netlab/delay.py), run the way the lab runs
it: its own process, `python -m netlab.delay`. Its links are netlab.proxy.Link, the same
send loop and half-close as the tests' TcpProxy (covered in test_sshfleet.py)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
DELAY_MS = 40


def _reply_after_eof(listener: socket.socket, got: list[bytes]) -> None:
    """Read until the client half-closes, then answer with what came and close."""
    conn, _ = listener.accept()
    with conn:
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        got.append(data)
        conn.sendall(b"got %d" % len(data))


@pytest.fixture
def delayed() -> Iterator[tuple[int, list[bytes], threading.Thread]]:
    """(proxy port, what the server received, server thread) for one connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []
    server = threading.Thread(target=_reply_after_eof, args=(listener, got), daemon=True)
    server.start()
    argv = [
        sys.executable,
        "-m",
        "netlab.delay",
        "--delay-ms",
        str(DELAY_MS),
        "--to",
        f"127.0.0.1:{listener.getsockname()[1]}",
    ]
    proc = subprocess.Popen(
        argv, cwd=BENCHMARKS, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())["ports"]
        yield ports[0], got, server
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # the proxy stops when its stdin closes
        assert proc.wait(10) == 0
        listener.close()


def test_half_close_and_delay_reach_the_other_end(
    delayed: tuple[int, list[bytes], threading.Thread],
) -> None:
    port, got, server = delayed
    payload = bytes(range(256)) * 4096  # 1 MiB: several chunks each way
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    elapsed = time.monotonic() - start
    server.join(5)
    assert got == [payload]
    assert reply == b"got %d" % len(payload)
    # 1.5 RTT of handshake, then one way to the server and one way back.
    assert elapsed >= (3 + 2) * DELAY_MS / 1000 * 0.95
