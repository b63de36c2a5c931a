"""Run convert and bench jobs on devices and collect one result per device.

Per device: check the agent, push the model (only what the device lacks), submit a
detached job, and follow its events. If the link drops, the job keeps running on the
device; the host reconnects with backoff and follows on from the last event it saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from device_agent.protocol import (
    FAILED,
    TERMINAL,
    BenchOptions,
    BenchResult,
    Event,
    JobSpec,
    ValidateOptions,
    ValidateResult,
)
from device_agent.store import tree_digest

from .client import AgentClient
from .connect import Sessions
from .devices import Device
from .errors import DeviceError, ModelError
from .fleet_run import FleetRun, fan_out
from .push import make_payload, push_to
from .settings import settings
from .transport import TransportError

EventSink = Callable[[str, Event], None]  # (device name, event)


def check_saved_model(path: Path) -> Path:
    """The host-side check before anything is sent: a directory with saved_model.pb."""
    path = path.expanduser()
    hint = "Pass the directory written by model.save(dir) or tf.saved_model.save(obj, dir)."
    if not path.exists():
        raise ModelError(f"Model path {path} does not exist.", hint)
    if not path.is_dir():
        raise ModelError(f"{path} is a file, not a SavedModel directory.", hint)
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelError(f"{path} is not a SavedModel: it has no saved_model.pb.", hint)
    return path.resolve()


def reconnect_tries() -> int:
    return settings().reconnect_tries


def _note(on_event: EventSink | None, device: str, message: str) -> None:
    if on_event:
        on_event(device, Event(seq=-1, ts=time.time(), kind="log", message=message))


def _backoff(tries: int) -> float:
    return min(8.0, 0.5 * 2 ** (tries - 1))


def follow_to_end(client: AgentClient, kind: str, job_id: str,
                  on_event: EventSink | None = None) -> Any:
    """Follow a job's events until it ends, reconnecting across dropped links; return its
    result. The status decides the end: a final status.json ends the follow even when its
    event never made it to the log. Gives up after `EDGE_RECONNECT_TRIES` failed
    reconnects, or as many streams in a row that end early without news (the job goes on)."""
    name = client.device.name
    attach = f"The job keeps running on the device. Collect it later with: " \
             f"edge jobs attach {job_id} --to {name}"
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
                    raise DeviceError(f"{name}: the event stream of job {job_id} ended early "
                                      f"{early} times in a row while the job runs.", attach)
                _note(on_event, name, f"event stream ended early; following again in "
                                      f"{_backoff(early):.1f}s")
                time.sleep(_backoff(early))
                continue
            result = client.result(kind, job_id)
            break
        except TransportError as exc:
            failures += 1
            if failures > reconnect_tries():
                raise DeviceError(
                    f"{name}: lost the link during job {job_id} and could not reconnect "
                    f"({exc.message}).", attach) from exc
            delay = _backoff(failures)
            _note(on_event, name, f"link lost ({exc.message}); reconnecting in {delay:.1f}s "
                                  f"(try {failures}/{reconnect_tries()})")
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


def bench(model: Path, devices: Sequence[Device], options: BenchOptions,
          on_event: EventSink | None = None, native: Path | None = None,
          calib: Path | None = None) -> FleetRun:
    """Benchmark `model` on every device (and `native` in the same job, for speedups);
    one BenchResult per device."""
    payload = make_payload(check_saved_model(model))
    native_payload = make_payload(check_saved_model(native)) if native else None
    calib_payload = make_payload(calib, "calib") if calib else None
    options.validate()

    def work(device: Device) -> Any:
        client = sessions.client(device)
        client.ensure_agent(need_numpy=True)
        spec = JobSpec(kind="bench", model=str(push_to(client, payload).model_path),
                       bench=options)
        if native_payload:
            spec.native = push_to(client, native_payload).model_path
        if calib_payload:
            spec.calib = push_to(client, calib_payload).model_path
        job_id = client.submit(spec)
        _note(on_event, device.name, f"job {job_id} submitted")
        return follow_to_end(client, "bench", job_id, on_event)

    with Sessions() as sessions:  # one session per device, every phase
        run = fan_out(devices, work, lambda d, e: BenchResult(device=d.name, status=FAILED,
                                                              error=e.message, hint=e.hint))
    for result in run.results:  # name the model as the user knows it, not its store path
        result.model = str(payload.source)
    run.model_digest = tree_digest(payload.manifest)
    return run


def validate(model: Path, converted: Path, devices: Sequence[Device], options: ValidateOptions,
             calib: Path | None = None, on_event: EventSink | None = None) -> FleetRun:
    """Run the native and the converted model on the same inputs on every device."""
    payload = make_payload(check_saved_model(model))
    other = make_payload(check_saved_model(converted))
    calib_payload = make_payload(calib, "calib") if calib else None

    def work(device: Device) -> Any:
        client = sessions.client(device)
        client.ensure_agent(need_numpy=True)
        native = push_to(client, payload).model_path
        conv = push_to(client, other).model_path
        calib_path = push_to(client, calib_payload).model_path if calib_payload else None
        assert native and conv
        spec = JobSpec(kind="validate", model=native, converted=conv, validation=options,
                       calib=calib_path)
        job_id = client.submit(spec)
        return follow_to_end(client, "validate", job_id, on_event)

    with Sessions() as sessions:  # one session per device, every phase
        run = fan_out(devices, work, lambda d, e: ValidateResult(device=d.name, status=FAILED,
                                                                 error=e.message, hint=e.hint))
    run.model_digest = tree_digest(payload.manifest)
    return run
