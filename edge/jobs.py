"""Run convert and bench jobs on a set of devices and collect one result per device.

A device that fails yields a failed result with its reason; the others carry on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_agent.protocol import (
    FAILED,
    SUCCEEDED,
    BenchOptions,
    BenchResult,
    ConvertOptions,
    ConvertResult,
    DeviceFacts,
    Event,
    JobSpec,
    ProtocolError,
)

from .client import AgentClient
from .devices import Device
from .errors import DeviceError, EdgeError, ModelError
from .transport import LocalTransport, Transport

EventSink = Callable[[str, Event], None]  # (device name, event)


def check_saved_model(path: Path) -> Path:
    """The host-side check before anything is sent: a directory with saved_model.pb."""
    path = path.expanduser()
    if not path.exists():
        raise ModelError(f"Model path {path} does not exist.", "Pass the SavedModel directory.")
    if not path.is_dir():
        raise ModelError(
            f"{path} is a file, not a SavedModel directory.",
            "Pass the directory written by model.save(dir) or tf.saved_model.save(obj, dir).",
        )
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise ModelError(
            f"{path} is not a SavedModel: it has no saved_model.pb.",
            "Pass the directory written by model.save(dir) or tf.saved_model.save(obj, dir).",
        )
    return path.resolve()


def open_transport(device: Device) -> Transport:
    """The transport for a device (SSH devices arrive with the fleet transport)."""
    if device.is_local:
        return LocalTransport(device.name)
    raise DeviceError(f"{device.name}: no transport for host {device.host!r} yet.")


@dataclass
class FleetRun:
    """Results of one fleet operation, in target order."""

    results: list[Any] = field(default_factory=list)

    @property
    def succeeded(self) -> list[Any]:
        return [r for r in self.results if r.status == SUCCEEDED]

    @property
    def failed(self) -> list[Any]:
        return [r for r in self.results if r.status != SUCCEEDED]

    @property
    def ok(self) -> bool:
        return not self.failed


def _model_on_device(device: Device, model: Path) -> str:
    if device.is_local:
        return str(model)
    raise DeviceError(f"{device.name}: pushing models to remote devices is not available yet.")


SpecFor = Callable[[str, DeviceFacts], JobSpec]  # (model path on device, facts) -> spec


def run_on_device(
    device: Device, spec_for: SpecFor, model: Path, on_event: EventSink | None = None
) -> Any:
    """Install the agent, submit a detached job, follow it to the end, return its result."""
    with open_transport(device) as transport:
        client = AgentClient(device, transport)
        client.ensure_agent()
        facts = client.info()
        spec = spec_for(_model_on_device(device, model), facts)
        job_id = client.submit(spec)
        offset, terminal = 0, None
        while terminal is None:
            offset, terminal = client.follow(
                job_id, offset, (lambda e: on_event(device.name, e)) if on_event else None
            )
            if terminal is None:  # the stream ended early: look at the job itself
                state = client.status(job_id)
                if state.status == FAILED and state.error:
                    terminal = state.status
        result = client.result(spec.kind, job_id)
        if result is None:
            state = client.status(job_id)
            raise DeviceError(
                f"{device.name}: job {job_id} ended {state.status} without a result: {state.error}",
                f"See its log: {device.root}/jobs/{job_id}/worker.log\n{state.log_tail or ''}",
            )
        result.device = device.name
        result.job_id = job_id
        return result


def _fan_out(
    devices: Sequence[Device],
    work: Callable[[Device], Any],
    failed: Callable[[Device, EdgeError], Any],
    max_workers: int = 8,
) -> FleetRun:
    def guarded(device: Device) -> Any:
        try:
            return work(device)
        except EdgeError as exc:
            if os.environ.get("EDGE_DEBUG"):
                import traceback

                traceback.print_exc()
            return failed(device, exc)

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(devices)))) as pool:
        return FleetRun(list(pool.map(guarded, devices)))


OptionsFor = Callable[[DeviceFacts], ConvertOptions]


def convert(
    model: Path,
    devices: Sequence[Device],
    options_for: OptionsFor,
    output: str | None = None,
    on_event: EventSink | None = None,
) -> FleetRun:
    """Convert `model` on every device; one ConvertResult per device. `options_for` resolves
    the options from each device's facts (recipe overrides are per device class)."""
    model = check_saved_model(model)

    def spec_for(device_model: str, facts: DeviceFacts) -> JobSpec:
        options = options_for(facts)
        try:
            options.validate()
        except ProtocolError as exc:
            raise EdgeError(
                f"Invalid conversion options: {exc}",
                "Fix the flag or recipe field named above (edge convert --help).",
            ) from exc
        return JobSpec(kind="convert", model=device_model, output=output, convert=options)

    return _fan_out(
        devices,
        lambda d: run_on_device(d, spec_for, model, on_event),
        lambda d, e: ConvertResult(device=d.name, status=FAILED, error=e.message, hint=e.hint),
    )


def bench(
    model: Path, devices: Sequence[Device], options: BenchOptions, on_event: EventSink | None = None
) -> FleetRun:
    """Benchmark `model` on every device; one BenchResult per device."""
    model = check_saved_model(model)
    options.validate()

    def spec_for(device_model: str, facts: DeviceFacts) -> JobSpec:
        return JobSpec(kind="bench", model=device_model, bench=options)

    return _fan_out(
        devices,
        lambda d: run_on_device(d, spec_for, model, on_event),
        lambda d, e: BenchResult(device=d.name, status=FAILED, error=e.message, hint=e.hint),
    )
