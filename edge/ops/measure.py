"""Bench and validate jobs on devices, one result per device.

Per device, over one session: check the agent, push the model (only what the device
lacks), submit a detached job, and follow its events to the end (`edge.agent.follow`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from device_agent.manifest import tree_digest
from device_agent.protocol import (
    BenchOptions,
    BenchResult,
    BenchSpec,
    ConvertOptions,
    DeviceFacts,
    ValidateOptions,
    ValidateResult,
    ValidateSpec,
)
from device_agent.trt_types import ENGINE_FILES
from edge.agent.follow import EventSink, follow_to_end, note
from edge.agent.sessions import Sessions
from edge.core.errors import UserError
from edge.fleet import interrupts
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, fan_out
from edge.ops.engine_export import reference_payload
from edge.ops.push import (
    check_model_artifact,
    check_saved_model,
    make_payload,
    push_to,
)


def bench(
    model: Path,
    devices: Sequence[Device],
    options: BenchOptions,
    on_event: EventSink | None = None,
    native: Path | None = None,
    calib: Path | None = None,
) -> GroupResult:
    """Benchmark `model` on every device (and `native` in the same job, for speedups);
    one BenchResult per device."""
    payload = make_payload(check_model_artifact(model))
    native_payload = make_payload(check_saved_model(native)) if native else None
    calib_payload = make_payload(calib, "calib") if calib else None
    options.validate()
    facts: dict[str, DeviceFacts] = {}

    def work(device: Device) -> Any:
        client = sessions.client(device)
        client.ensure_agent(need_numpy=True)
        try:  # kept with the run (nvpmodel mode, module, JetPack) for `edge report`
            facts[device.name] = client.info()
        except UserError as exc:
            note(on_event, device.name, f"device facts not recorded: {exc.message}")
        spec = BenchSpec(model=str(push_to(client, payload).model_path), bench=options)
        if native_payload:
            spec.native = push_to(client, native_payload).model_path
        if calib_payload:
            spec.calib = push_to(client, calib_payload).model_path
        job_id = client.submit(spec)
        interrupts.job_started(device.name, job_id)
        note(on_event, device.name, f"job {job_id} submitted")
        result = follow_to_end(client, "bench", job_id, on_event)
        interrupts.job_ended(device.name, job_id)
        return result

    with Sessions() as sessions:  # one session per device, every phase
        run = fan_out(devices, work, BenchResult)
    for result in run.results:  # name the model as the user knows it, not its store path
        result.model = str(payload.source)
    run.model_digest = tree_digest(payload.manifest)
    run.facts = facts
    return run


def validate(
    model: Path,
    converted: Path,
    devices: Sequence[Device],
    options: ValidateOptions,
    calib: Path | None = None,
    on_event: EventSink | None = None,
) -> GroupResult:
    """Run the native and the converted model on the same inputs on every device."""
    payload = make_payload(check_saved_model(model))
    converted = check_model_artifact(converted)
    other = make_payload(converted)
    calib_payload = make_payload(calib, "calib") if calib else None
    reference = None
    tmp = tempfile.TemporaryDirectory(prefix="edge-validate-")
    if all((converted / name).is_file() for name in ENGINE_FILES):
        # an engine: its board may have no TensorFlow, so the reference is computed here
        reference = reference_payload(
            model,
            calib,
            ConvertOptions(signature_key=options.signature_key),
            Path(tmp.name),
            options.samples,
        )

    def work(device: Device) -> Any:
        client = sessions.client(device)
        client.ensure_agent(need_numpy=True)
        native = push_to(client, payload).model_path
        conv = push_to(client, other).model_path
        calib_path = push_to(client, calib_payload).model_path if calib_payload else None
        ref_path = push_to(client, reference).model_path if reference else None
        assert native and conv
        spec = ValidateSpec(
            model=native,
            converted=conv,
            validation=options,
            calib=calib_path,
            reference=ref_path,
        )
        job_id = client.submit(spec)
        interrupts.job_started(device.name, job_id)
        result = follow_to_end(client, "validate", job_id, on_event)
        interrupts.job_ended(device.name, job_id)
        return result

    with tmp, Sessions() as sessions:  # one session per device, every phase
        run = fan_out(devices, work, ValidateResult)
    run.model_digest = tree_digest(payload.manifest)
    return run
