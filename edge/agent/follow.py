"""Follow a detached job on a device to its end, across dropped links.

If the link drops, the job keeps running on the device; the host reconnects with backoff
and follows on from the last event it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from device_agent.protocol import TERMINAL, Event
from edge.agent.client import AgentClient
from edge.core.errors import DeviceError
from edge.core.settings import settings
from edge.transport import TransportError

EventSink = Callable[[str, Event], None]  # (device name, event)


def reconnect_tries() -> int:
    return settings().reconnect_tries


def note(on_event: EventSink | None, device: str, message: str) -> None:
    if on_event:
        on_event(device, Event(seq=-1, ts=time.time(), kind="log", message=message))


def _backoff(tries: int) -> float:
    return min(8.0, 0.5 * 2 ** (tries - 1))


def follow_to_end(
    client: AgentClient, kind: str, job_id: str, on_event: EventSink | None = None
) -> Any:
    """Follow a job's events until it ends, reconnecting across dropped links; return its
    result. The status decides the end: a final status.json ends the follow even when its
    event never made it to the log. Gives up after `EDGE_RECONNECT_TRIES` failed
    reconnects, or as many streams in a row that end early without news (the job goes on)."""
    name = client.device.name
    attach = (
        f"The job keeps running on the device. Collect it later with: "
        f"edge jobs attach {job_id} --to {name}"
    )
    seen = [0]  # the next event to ask for, also after a stream that broke off

    def sink(event: Event) -> None:
        seen[0] = max(seen[0], event.seq + 1)
        if on_event:
            on_event(name, event)

    failures, early = 0, 0
    while True:
        try:
            offset = seen[0]
            _, terminal = client.follow(job_id, offset, sink)
            failures = 0
            if terminal is None and client.status(job_id).status not in TERMINAL:
                # the stream ended early but the job lives: follow again, after a pause
                early = 1 if seen[0] > offset else early + 1
                if early > reconnect_tries():
                    raise DeviceError(
                        f"{name}: the event stream of job {job_id} ended early "
                        f"{early} times in a row while the job runs.",
                        attach,
                    )
                note(
                    on_event,
                    name,
                    f"event stream ended early; following again in {_backoff(early):.1f}s",
                )
                time.sleep(_backoff(early))
                continue
            result = client.result(kind, job_id)
            break
        except TransportError as exc:
            failures += 1
            if failures > reconnect_tries():
                raise DeviceError(
                    f"{name}: lost the link during job {job_id} and could not reconnect "
                    f"({exc.message}).",
                    attach,
                ) from exc
            delay = _backoff(failures)
            note(
                on_event,
                name,
                f"link lost ({exc.message}); reconnecting in {delay:.1f}s "
                f"(try {failures}/{reconnect_tries()})",
            )
            client.transport.close()
            time.sleep(delay)
    if result is None:
        state = client.status(job_id)
        raise DeviceError(
            f"{name}: job {job_id} ended {state.status} without a result: {state.error}",
            f"See its log with: edge jobs logs {job_id} --to {name}\n{state.log_tail or ''}",
        )
    result.device = name
    result.job_id = job_id
    return result
