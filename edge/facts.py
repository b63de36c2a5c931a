"""Device facts on the host: ask a device's agent for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent.protocol import DeviceFacts, JsonMixin

from .connect import open_client
from .devices import Device
from .fleet_run import FleetRun, fan_out
from .paths import data_dir


def device_facts(device: Device, deep: bool = False) -> DeviceFacts:
    """Run the agent's `info` command (installing the agent first if it is missing)."""
    with open_client(device) as client:
        return client.info(deep=deep)


@dataclass
class ProbeResult(JsonMixin):
    device: str
    status: str
    facts: DeviceFacts | None = None
    agent_installed: bool = False
    error: str | None = None
    hint: str | None = None


def facts_cache_path(name: str) -> Path:
    return data_dir() / "facts" / f"{name}.json"


def cached_facts(name: str) -> DeviceFacts | None:
    """The facts the last probe of this device saw, if any."""
    path = facts_cache_path(name)
    if not path.is_file():
        return None
    return DeviceFacts.from_dict(json.loads(path.read_text()))


def probe(devices: Sequence[Device], max_parallel: int = 32) -> FleetRun:
    """Run the agent's `info` on every device at once and cache the facts on the host."""

    def work(device: Device) -> ProbeResult:
        with open_client(device) as client:
            facts = client.info()
            installed = client.agent_installed
        path = facts_cache_path(device.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(facts.to_json(indent=2))
        return ProbeResult(device.name, "succeeded", facts, installed)

    return fan_out(devices, work,
                   lambda d, e: ProbeResult(d.name, "failed", error=e.message, hint=e.hint),
                   max_parallel)
