"""Device facts on the host: ask a device's agent for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent.protocol_core import SUCCEEDED, DeviceFacts, DeviceResult
from edge.agent.sessions import open_client
from edge.core.paths import data_dir
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out


def device_facts(device: Device, deep: bool = False) -> DeviceFacts:
    """Run the agent's `info` command (installing the agent first if it is missing)."""
    with open_client(device) as client:
        return client.info(deep=deep)


@dataclass
class InfoResult(DeviceResult):
    """One device's answer to `edge info`: the facts, or the error and hint."""

    facts: DeviceFacts | None = None


def gather_facts(devices: Sequence[Device], deep: bool = False) -> GroupResult:
    """Every device's facts, in target order; a device that fails hides no other."""

    def work(device: Device) -> InfoResult:
        return InfoResult(device.name, SUCCEEDED, facts=device_facts(device, deep=deep))

    return fan_out(devices, work, InfoResult)


@dataclass
class ProbeResult(DeviceResult):
    facts: DeviceFacts | None = None
    agent_installed: bool = False


def facts_cache_path(name: str) -> Path:
    return data_dir() / "facts" / f"{name}.json"


def cached_facts(name: str) -> DeviceFacts | None:
    """The facts the last probe of this device saw, if any."""
    path = facts_cache_path(name)
    if not path.is_file():
        return None
    return DeviceFacts.from_dict(json.loads(path.read_text()))


def probe(devices: Sequence[Device], max_parallel: int = 32, deep: bool = True) -> GroupResult:
    """Run the agent's `info` on every device at once and cache the facts on the host;
    `deep` also probes the TensorRT stack (which backends each device can run)."""

    def work(device: Device) -> ProbeResult:
        with open_client(device) as client:
            facts = client.info(deep=deep)
            installed = client.agent_installed
        path = facts_cache_path(device.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(facts.to_json(indent=2))
        return ProbeResult(device.name, SUCCEEDED, facts=facts, agent_installed=installed)

    return fan_out(devices, work, ProbeResult, max_parallel)
