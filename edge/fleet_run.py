"""Fan an operation out over devices; keep every device's result, successes and failures."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from device_agent.protocol import SUCCEEDED

from .devices import Device
from .errors import UserError

_log = logging.getLogger(__name__)


@dataclass
class FleetRun:
    """Results of one fleet operation, one per device, in target order."""

    results: list[Any] = field(default_factory=list)
    model_digest: str | None = None  # the tree digest of the model the operation used

    @property
    def succeeded(self) -> list[Any]:
        return [r for r in self.results if r.status == SUCCEEDED]

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if r.status != SUCCEEDED]

    @property
    def ok(self) -> bool:
        return not self.failed


def fan_out(devices: Sequence[Device], work: Callable[[Device], Any],
            failed: Callable[[Device, UserError], Any], max_parallel: int = 8) -> FleetRun:
    """Run `work` on every device (at most `max_parallel` at once). A user/environment
    error on one device becomes its failed result; a bug propagates."""

    def guarded(device: Device) -> Any:
        try:
            return work(device)
        except UserError as exc:
            _log.debug("%s failed", device.name, exc_info=True)  # shown for EDGE_DEBUG=1
            return failed(device, exc)

    if not devices:
        return FleetRun([])
    with ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(devices)))) as pool:
        return FleetRun(list(pool.map(guarded, devices)))
