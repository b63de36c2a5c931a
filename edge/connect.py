"""Open the transport and agent client for a device (local subprocess or SSH)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .client import AgentClient
from .devices import Device
from .transport import LocalTransport, Transport


def open_transport(device: Device) -> Transport:
    """The transport for a device: `local` runs subprocesses, the rest go over SSH."""
    if device.is_local:
        return LocalTransport(device.name)
    from .fleet import known_hosts_path
    from .transport import mux
    from .transport.ssh import SSHTransport
    from .transport.ssh_config import resolve_endpoint

    assert device.host is not None
    endpoint = resolve_endpoint(device.host, device.port, device.user, device.key)
    # With `edge mux start`, commands ride the multiplexer's warm connections: only one
    # this user started, in a private directory, answered by a server of this uid.
    cls = mux.MuxTransport if mux.running() else SSHTransport
    return cls(device.name, endpoint, known_hosts_path())


@contextmanager
def open_client(device: Device) -> Iterator[AgentClient]:
    """An AgentClient over a fresh transport, closed on exit."""
    transport = open_transport(device)
    try:
        yield AgentClient(device, transport)
    finally:
        transport.close()
