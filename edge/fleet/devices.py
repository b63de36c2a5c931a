"""Devices: the built-in `local` device and target resolution.

A device is a row of the fleet inventory; `local` is always there and runs the agent as a
subprocess through the same protocol, so everything works with no Jetson attached.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge.core.paths import local_device_root
from edge.core.settings import settings

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

    @property
    def is_local(self) -> bool:
        return self.host is None


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
