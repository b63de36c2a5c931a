"""Phase timings on stderr when EDGE_TRACE=1: where a command spends its time."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_T0 = time.monotonic()
_LOCK = threading.Lock()


def enabled() -> bool:
    return bool(os.environ.get("EDGE_TRACE"))


def mark(what: str, device: str = "") -> None:
    """One line: seconds since start, device, what happened."""
    if enabled():
        with _LOCK:
            print(f"[trace {time.monotonic() - _T0:7.3f}s] {device:>8} {what}",
                  file=sys.stderr, flush=True)


@contextmanager
def span(what: str, device: str = "") -> Iterator[None]:
    """Time a block: a line when it ends, with its duration."""
    if not enabled():
        yield
        return
    started = time.monotonic()
    try:
        yield
    finally:
        mark(f"{what} {time.monotonic() - started:.3f}s", device)
