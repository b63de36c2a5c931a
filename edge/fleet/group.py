"""Fan an operation out over devices; keep every device's result, successes and failures."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from device_agent.protocol_core import DeviceFacts, DeviceResult
from edge.core.errors import UserError
from edge.fleet import interrupts
from edge.fleet.devices import Device

_log = logging.getLogger(__name__)
_POLL_S = 0.25  # how soon a Ctrl-C that raced the wait is acted on, at worst

R = TypeVar("R", bound=DeviceResult)
T = TypeVar("T")


@dataclass
class GroupResult(Generic[R]):
    """One fleet operation's results, one per device in target order (like Fabric's
    GroupResult): the successes, and the failures with the errors that made them."""

    results: list[R] = field(default_factory=list)
    # device name -> the user/environment error that failed it (its result says the same)
    errors: dict[str, UserError] = field(default_factory=dict)
    model_digest: str | None = None  # the tree digest of the model the operation used
    facts: dict[str, DeviceFacts] = field(default_factory=dict)  # device name -> facts read

    @property
    def succeeded(self) -> list[R]:
        return [r for r in self.results if r.ok]

    @property
    def failed(self) -> list[R]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    def __iter__(self) -> Iterator[R]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, device: str) -> R:
        """The result of the device named `device`."""
        for r in self.results:
            if r.device == device:
                return r
        raise KeyError(device)


def each(
    devices: Sequence[Device], work: Callable[[Device], T], max_parallel: int = 8
) -> list[T | UserError]:
    """Run `work` on every device (at most `max_parallel` at once), in target order. A
    user/environment error on one device is its entry; a bug propagates. Interrupted
    (KeyboardInterrupt), it raises at once without waiting for the workers: the CLI
    reports what keeps running (`edge.fleet.interrupts`) and ends the process."""

    def guarded(device: Device) -> T | UserError:
        try:
            return work(device)
        except UserError as exc:
            _log.debug("%s failed", device.name, exc_info=True)  # shown for EDGE_DEBUG=1
            return exc

    if not devices:
        return []
    interrupts.targeted([d.name for d in devices])
    pool = ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(devices))))
    try:
        futures = [pool.submit(guarded, d) for d in devices]
        pending = set(futures)
        while pending:
            # A timed wait: a SIGINT that lands just before an untimed lock wait blocks is
            # only acted on when that wait ends, which may be at the end of the longest job.
            pending = wait(pending, timeout=_POLL_S)[1]
        results = [f.result() for f in futures]
    except KeyboardInterrupt:  # Ctrl-C: stop now; the jobs run detached on the devices
        interrupts.interrupted()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:  # a bug: the other devices' work ends first, as before
        pool.shutdown()
        raise
    pool.shutdown()
    return results


def fan_out(
    devices: Sequence[Device],
    work: Callable[[Device], R],
    result_type: type[R],
    max_parallel: int = 8,
) -> GroupResult[R]:
    """Run `work` on every device (see `each`); a device's user error becomes its failed
    `result_type`, and is kept in `errors`."""
    group: GroupResult[R] = GroupResult()
    for device, out in zip(devices, each(devices, work, max_parallel)):
        if isinstance(out, UserError):
            group.errors[device.name] = out
            out = result_type.failure(device.name, out.message, out.hint)
        group.results.append(out)
    return group
