"""Phase timings, where a command spends its time: INFO records of the `edge.core.trace`
logger, which the CLI turns on for EDGE_TRACE=1 (edge.cli.main.configure_logging)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

_T0 = time.monotonic()
LOG = logging.getLogger("edge.core.trace")


def enabled() -> bool:
    return LOG.isEnabledFor(logging.INFO)


def mark(what: str, device: str = "") -> None:
    """One line: seconds since start, device, what happened."""
    if enabled():
        LOG.info("[trace %7.3fs] %8s %s", time.monotonic() - _T0, device, what)


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
