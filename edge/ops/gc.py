"""`edge gc`: each device's agent frees its store (`gc`), and says what it freed."""

from __future__ import annotations

from collections.abc import Sequence

from device_agent.protocol import GcResult
from edge.agent.sessions import open_client
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out

DEFAULT_KEEP = 5  # device_agent.gc.DEFAULT_KEEP (device-only: the host cannot import it)
GRACE_SECONDS = 3600.0
GC_TIMEOUT = 600.0  # removing a large store on an SD card takes a while


def gc_argv(keep: int, dry_run: bool, grace: float) -> list[str]:
    """The agent command line of one gc."""
    return ["gc", "--keep", str(keep), "--grace", repr(float(grace))] + (
        ["--dry-run"] if dry_run else []
    )


def collect_garbage(
    devices: Sequence[Device],
    keep: int = DEFAULT_KEEP,
    dry_run: bool = False,
    grace: float = GRACE_SECONDS,
    max_parallel: int = 8,
) -> GroupResult[GcResult]:
    """Run the agent's `gc` on every device (one SSH session each): the device decides
    what is garbage; its answer is checked as a GcResult and named by the inventory."""

    def work(device: Device) -> GcResult:
        with open_client(device) as client:
            result = client.call_as(GcResult, *gc_argv(keep, dry_run, grace), timeout=GC_TIMEOUT)
        result.device = device.name
        return result

    return fan_out(devices, work, GcResult, max_parallel)
