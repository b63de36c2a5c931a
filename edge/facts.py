"""Device facts on the host: ask a device's agent for them."""

from __future__ import annotations

from device_agent.protocol import DeviceFacts

from .client import AgentClient
from .devices import Device
from .jobs import open_transport


def device_facts(device: Device, deep: bool = False) -> DeviceFacts:
    """Install the agent if needed and run its `info` command."""
    with open_transport(device) as transport:
        client = AgentClient(device, transport)
        client.ensure_agent()
        return client.info(deep=deep)
