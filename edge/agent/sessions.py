"""Open the transport and agent client for a device (local subprocess or SSH), and keep
one per device for the length of a command (`Sessions`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from edge.agent.client import AgentClient
from edge.core.settings import settings
from edge.fleet.devices import Device
from edge.transport import LocalTransport, Transport


def open_transport(device: Device, openssh: bool = False) -> Transport:
    """The transport for a device: `local` runs subprocesses, the rest go over SSH.
    `openssh`: a bulk transfer, whose commands ride the system `ssh` (EDGE_PUSH_VIA)."""
    if device.is_local:
        return LocalTransport(device.name)
    from edge.fleet.inventory import known_hosts_path
    from edge.transport import mux

    endpoint = device.endpoint()
    # With `edge mux start`, commands ride the multiplexer's warm connections: only one
    # this user started, in a private directory, answered by a server of this uid.
    if mux.running():
        from edge.transport.muxtransport import MuxTransport

        return MuxTransport(device.name, endpoint, known_hosts_path())
    if openssh and settings().push_via in ("auto", "openssh"):
        from edge.transport.openssh import OpenSSHTransport  # no paramiko until it is needed

        return OpenSSHTransport(device.name, endpoint, known_hosts_path())
    from edge.transport.ssh import SSHTransport

    return SSHTransport(device.name, endpoint, known_hosts_path())


@contextmanager
def open_client(device: Device, openssh: bool = False) -> Iterator[AgentClient]:
    """An AgentClient over a fresh transport, closed on exit."""
    transport = open_transport(device, openssh)
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
