"""The agent on each device: check its Python and numpy, install this agent version where
it is missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from device_agent import __version__
from device_agent.protocol import SUCCEEDED, DeviceResult
from edge.agent.sessions import open_client
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out


@dataclass
class AgentInstall(DeviceResult):
    """One device's agent check: its Python and numpy, and whether the agent was installed."""

    agent_version: str = __version__
    python: str | None = None
    numpy: str | None = None
    installed: bool = False


def install_agents(devices: Sequence[Device]) -> GroupResult[AgentInstall]:
    """Check every device's agent (installing it where missing); one result per device."""

    def work(device: Device) -> AgentInstall:
        with open_client(device) as client:
            check = client.ensure_agent()
            return AgentInstall(
                device.name,
                SUCCEEDED,
                python=check.python,
                numpy=check.numpy,
                installed=check.installed,
            )

    return fan_out(devices, work, AgentInstall)
