"""Which transport reaches a device, and connections begun before a command's heavier
imports: a push's first devices start their SSH login while the rest of edge loads.

Light on purpose (no agent client, no protocol types): `edge push` imports it first."""

from __future__ import annotations

from collections.abc import Sequence

from edge.core.errors import UserError
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


class EarlyTransports:
    """The bulk transports (`open_transport(openssh=True)`) of the first `count` devices,
    their OpenSSH masters logging in from the start; `take` hands each to the command
    that uses it, and `close` ends the ones nobody took (an error before the push)."""

    def __init__(self, devices: Sequence[Device], count: int) -> None:
        self._taken: dict[str, Transport] = {}
        try:
            for device in devices[: max(0, count)]:
                if not device.is_local and device.name not in self._taken:
                    self._begin(device)
        except BaseException:
            self.close()
            raise

    def _begin(self, device: Device) -> None:
        try:
            transport = open_transport(device, openssh=True)
        except UserError:  # its own push opens it again and reports it, for this device
            return
        launch = getattr(transport, "launch", None)
        if launch is None:  # paramiko or the multiplexer: nothing to begin early
            transport.close()
            return
        self._taken[device.name] = transport
        launch()

    def take(self, device: Device) -> Transport | None:
        """This device's early transport, once (None: open one as usual)."""
        return self._taken.pop(device.name, None)

    def close(self) -> None:
        left, self._taken = list(self._taken.values()), {}
        for transport in left:
            transport.close()
