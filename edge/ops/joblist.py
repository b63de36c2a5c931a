"""The detached jobs on devices: list them, and find the device that holds one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from device_agent.protocol import SUCCEEDED, DeviceResult, JobState
from edge.agent.sessions import open_client
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out


@dataclass
class Listing(DeviceResult):
    """The jobs of one device (or why they could not be listed)."""

    jobs: list[JobState] = field(default_factory=list)


def list_jobs(devices: Sequence[Device]) -> GroupResult[Listing]:
    """Every device's jobs, newest last; one Listing per device."""

    def work(device: Device) -> Listing:
        with open_client(device) as client:
            return Listing(device.name, SUCCEEDED, jobs=client.jobs())

    return fan_out(devices, work, Listing)


def find_job(job_id: str, devices: Sequence[Device]) -> Device:
    """The first of `devices` that holds job `job_id`."""
    for device in devices:
        try:
            with open_client(device) as client:
                client.status(job_id)
                return device
        except DeviceError:
            continue
    raise DeviceError(
        f"No device has a job {job_id!r}.", "List jobs with: edge jobs ls (and pass --to DEVICE)."
    )
