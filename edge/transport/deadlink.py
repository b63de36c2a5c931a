"""How long a silent link may stay silent, and the error once it has been declared dead
(apart from the watchdog in liveness.py, so that callers need not import paramiko)."""

from __future__ import annotations

from edge.core.settings import settings
from edge.transport.base import TransportError


def dead_link_seconds() -> float:
    """EDGE_DEAD_LINK_SECONDS, or 30: the silence after which a link is dead."""
    return settings().dead_link_seconds


class DeadLinkError(TransportError):
    """The device stopped answering: the link was declared dead (and closed)."""
