"""Devices: the built-in `local` device and target resolution.

A device is a row of the fleet inventory; `local` is always there and runs the agent as a
subprocess through the same protocol, so everything works with no Jetson attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.core.paths import local_device_root
from edge.core.settings import settings

if TYPE_CHECKING:
    from edge.transport.ssh_config import Endpoint

LOCAL = "local"


@dataclass
class Device:
    """One device: where it is, how to log in, which Python runs the agent, its root dir."""

    name: str
    host: str | None = None
    user: str | None = None
    port: int | None = None
    key: str | None = None
    python: str = "python3"
    root: str = "~/.edge"
    tags: list[str] = field(default_factory=list)
    jump: str | None = None  # ProxyJump hops `[user@]host[:port],...`; else the ssh config's

    @property
    def is_local(self) -> bool:
        return self.host is None

    def endpoint(self) -> Endpoint:
        """Where an SSH connection to this device goes: the OpenSSH client config applied
        to `host`, the device's own port, user, key and jump winning."""
        from edge.transport.ssh_config import resolve_endpoint

        assert self.host is not None, "the local device has no SSH endpoint"
        return resolve_endpoint(self.host, self.port, self.user, self.key, jump=self.jump)


def local_device() -> Device:
    """The built-in device: this machine, a root under the user data dir, and this Python
    (or `EDGE_LOCAL_PYTHON`: the agent runs from its zipapp, so any Python 3.8+ with numpy,
    and TensorFlow for conversions, will do)."""
    python = settings().local_python
    return Device(name=LOCAL, python=python, root=str(local_device_root()))


def resolve_targets(targets: str) -> list[Device]:
    """Comma-separated names, tag:NAME, all, local -> devices (deduplicated, in order).

    Names come from the fleet inventory (edge.fleet.inventory); `local` alone never reads it.
    """
    if {t.strip() for t in targets.split(",") if t.strip()} == {LOCAL}:
        return [local_device()]
    from edge.fleet.inventory import Inventory

    return Inventory.load().resolve(targets)
