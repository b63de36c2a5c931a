"""Open the transport and agent client for a device (local subprocess or SSH), and keep
one per device for the length of a command (`Sessions`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from edge.agent.client import AgentClient
from edge.agent.transports import open_transport
from edge.fleet.devices import Device
from edge.transport import Transport


@contextmanager
def open_client(
    device: Device, openssh: bool = False, transport: Transport | None = None
) -> Iterator[AgentClient]:
    """An AgentClient over `transport` (else a fresh one), closed on exit."""
    transport = transport or open_transport(device, openssh)
    try:
        yield AgentClient(device, transport)
    finally:
        transport.close()


class Sessions:
    """One transport and AgentClient per device for the whole of one command: every phase
    (the agent check, info, plan, push, submit, follow and its reconnects, sharing) reuses
    it, so a device sees one SSH login per command (with `edge mux`, commands ride the
    multiplexer and the one direct connection carries the file transfers). Closed on exit.
    """

    def __init__(self) -> None:
        self._clients: dict[str, AgentClient] = {}
        self._lock = threading.Lock()

    def client(self, device: Device) -> AgentClient:
        """This device's client, opened on first use (its transport connects lazily)."""
        with self._lock:
            client = self._clients.get(device.name)
            if client is None:
                client = self._clients[device.name] = AgentClient(device, open_transport(device))
            return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.transport.close()

    def __enter__(self) -> Sessions:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
