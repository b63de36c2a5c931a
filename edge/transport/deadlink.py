"""How long a silent link may stay silent, and the error once it has been declared dead
(apart from the watchdog in liveness.py, so that callers need not import paramiko)."""

from __future__ import annotations

import os

from .base import TransportError

DEAD_LINK_SECONDS = 30.0  # the heartbeat rule: `follow` heartbeats every 5 s, 30 s is dead


def dead_link_seconds() -> float:
    """EDGE_DEAD_LINK_SECONDS, or 30: the silence after which a link is dead."""
    value = os.environ.get("EDGE_DEAD_LINK_SECONDS")
    try:
        seconds = float(value) if value else DEAD_LINK_SECONDS
    except ValueError:
        seconds = DEAD_LINK_SECONDS
    return seconds if seconds > 0 else DEAD_LINK_SECONDS


class DeadLinkError(TransportError):
    """The device stopped answering: the link was declared dead (and closed)."""
