"""Fleet conversion: calibration checks, dry-run plans, and build-once engine sharing.

Devices whose fingerprints match (module, compute capability, L4T, TensorRT, TensorFlow)
can use each other's engines, so with sharing on, one device of each group builds and the
others receive its converted model, verified and installed into their cache (and
validated there when asked) instead of rebuilding for hours.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from device_agent.errors import AgentError
from device_agent.planner import fingerprint, make_plan, same_build_group
from device_agent.protocol import (
    FAILED,
    ConversionPlan,
    ConvertOptions,
    ConvertResult,
    DeviceFacts,
    JobSpec,
    JsonMixin,
    ProtocolError,
)
from device_agent.savedmodel_meta import read_signature

from .client import AgentClient
from .connect import open_client
from .devices import Device
from .errors import EdgeError
from .fleet_run import FleetRun, fan_out
from .jobs import EventSink, _note, check_saved_model, follow_to_end
from .pull import pull_job_model
from .push import Payload, make_payload, push_to

OptionsFor = Callable[[DeviceFacts], ConvertOptions]


@dataclass
class ConvertRequest:
    """What `edge convert` asks of every device."""

    model: Path
    options_for: OptionsFor
    output: str | None = None
    calib: Path | None = None
    share_engines: bool = True
    on_event: EventSink | None = None


@dataclass
class DryRun(JsonMixin):
    device: str
    status: str
    plan: ConversionPlan | None = None
    error: str | None = None
    hint: str | None = None


def _agent_error(exc: AgentError) -> EdgeError:
    return EdgeError(exc.message, exc.hint)


def check_calibration(model: Path, calib: Path, options: ConvertOptions) -> int:
    """Check calibration data against the model's serving signature on the host, before
    anything is pushed. Returns the number of samples."""
    from device_agent.calib import check_against_signature, open_calibration  # numpy: lazy

    try:
        inputs = read_signature(str(model), options.signature_key, options.tags).inputs
        with tempfile.TemporaryDirectory() as tmp:
            data = open_calibration(str(calib), cache_dir=tmp)
            check_against_signature(data, inputs)
            return data.samples
    except AgentError as exc:
        raise _agent_error(exc) from exc


def _resolve(options_for: OptionsFor, facts: DeviceFacts) -> ConvertOptions:
    options = options_for(facts)
    try:
        options.validate()
    except ProtocolError as exc:
        raise EdgeError(f"Invalid conversion options: {exc}",
                        "Fix the flag or recipe field named above (edge convert --help).") from exc
    return options


def dry_run(request: ConvertRequest, devices: Sequence[Device]) -> FleetRun:
    """Resolve every device's plan (backend, converter kwargs, env, workspace arithmetic,
    calibration, build shapes, cache key) without pushing or converting anything."""
    model = check_saved_model(request.model)
    payload = make_payload(model)
    from device_agent.store import tree_digest

    digest = tree_digest(payload.manifest)
    calib_samples = calib_digest = None
    if request.calib is not None:
        calib_payload = make_payload(request.calib, "calib")
        calib_digest = tree_digest(calib_payload.manifest)

    def work(device: Device) -> DryRun:
        with open_client(device) as client:
            client.ensure_agent()
            facts = client.info(deep=True)
        options = _resolve(request.options_for, facts)
        samples = calib_samples
        if request.calib is not None:
            samples = check_calibration(model, request.calib, options)
        backend = options.backend
        reason = None
        if backend == "auto":
            backend = "tftrt" if facts.tensorrt_enabled else "native"
            if backend == "native":
                reason = "auto: TensorFlow on the device is not built with TensorRT"
        elif backend == "tftrt" and not facts.tensorrt_enabled:
            reason = ("tftrt requested, but TensorFlow on the device is not built with "
                      "TensorRT: this conversion would fail there")
        try:
            plan = make_plan(facts, options, backend, "<pushed model>",
                             payload.manifest.total_bytes(), digest, samples, reason,
                             calib_digest=calib_digest)
        except AgentError as exc:
            raise _agent_error(exc) from exc
        return DryRun(device.name, "succeeded", plan)

    return fan_out(devices, work, lambda d, e: DryRun(d.name, "failed", error=e.message,
                                                      hint=e.hint))


@dataclass
class _Prepared:
    device: Device
    facts: DeviceFacts
    options: ConvertOptions


def _submit_and_follow(client: AgentClient, spec: JobSpec, on_event: EventSink | None
                       ) -> ConvertResult:
    job_id = client.submit(spec)
    _note(on_event, client.device.name, f"job {job_id} submitted")
    return follow_to_end(client, "convert", job_id, on_event)


def convert(request: ConvertRequest, devices: Sequence[Device]) -> FleetRun:
    """Convert on every device; one ConvertResult each, in target order."""
    model = check_saved_model(request.model)
    first = request.options_for
    if request.calib is not None:  # fail before any device work when the data is wrong
        check_calibration(model, request.calib, first(DeviceFacts("", 0, "", "", "", 0, 0, 0,
                                                                  0)))
    payload = make_payload(model)
    calib_payload = make_payload(request.calib, "calib") if request.calib else None

    def prepare(device: Device) -> _Prepared:
        with open_client(device) as client:
            client.ensure_agent(need_numpy=True)
            # TensorRT's version is part of the fingerprint: needed only to group devices.
            facts = client.info(deep=request.share_engines and len(devices) > 1)
        return _Prepared(device, facts, _resolve(request.options_for, facts))

    def failed(device: Device, exc: EdgeError) -> ConvertResult:
        return ConvertResult(device=device.name, status=FAILED, error=exc.message, hint=exc.hint)

    prepared = fan_out(devices, prepare, failed)
    ready = [p for p in prepared.results if isinstance(p, _Prepared)]
    groups = _groups(ready) if request.share_engines else [[p] for p in ready]

    def build(p: _Prepared) -> ConvertResult:
        with open_client(p.device) as client:
            model_path = push_to(client, payload).model_path
            calib_path = push_to(client, calib_payload).model_path if calib_payload else None
            assert model_path is not None
            spec = JobSpec(kind="convert", model=model_path, output=request.output,
                           convert=p.options, calib=calib_path)
            return _submit_and_follow(client, spec, request.on_event)

    def share(leader: _Prepared, built: ConvertResult, p: _Prepared, shared: Payload
              ) -> ConvertResult:
        with open_client(p.device) as client:
            model_path = push_to(client, payload).model_path
            prebuilt = push_to(client, shared).model_path
            calib_path = push_to(client, calib_payload).model_path if calib_payload else None
            assert model_path is not None
            spec = JobSpec(kind="convert", model=model_path, output=request.output,
                           convert=p.options, calib=calib_path, prebuilt=prebuilt,
                           prebuilt_from=leader.device.name, prebuilt_summary=built.summary)
            return _submit_and_follow(client, spec, request.on_event)

    def cached(p: _Prepared) -> bool:
        """Whether the device already holds this conversion (then it needs no share)."""
        if not p.options.use_cache:
            return False
        from device_agent.planner import cache_key
        from device_agent.store import tree_digest

        backend = "tftrt" if _builds_engines(p) else "native"
        key = cache_key(tree_digest(payload.manifest),
                        dataclasses.replace(p.options, backend=backend), fingerprint(p.facts),
                        tree_digest(calib_payload.manifest) if calib_payload else None)
        with open_client(p.device) as client:
            return client.cache_hit(key)

    def run_group(group: list[_Prepared]) -> dict[str, ConvertResult]:
        out: dict[str, ConvertResult] = {}
        if len(group) > 1:  # devices that hold the build already just hit their cache
            hits = [p for p in group if _guard(p.device, lambda p=p: cached(p),
                                               failed) is True]
            for p in hits:
                out[p.device.name] = _guard(p.device, lambda p=p: build(p), failed)
            group = [p for p in group if p not in hits]
            if not group:
                return out
        leader, rest = group[0], group[1:]
        out[leader.device.name] = _guard(leader.device, lambda: build(leader), failed)
        built = out[leader.device.name]
        if not rest:
            return out
        if built.status != "succeeded" or not built.job_id:
            for p in rest:  # the shared build failed: each builds its own
                out[p.device.name] = _guard(p.device, lambda p=p: build(p), failed)
            return out
        with tempfile.TemporaryDirectory(prefix="edge-share-") as tmp:
            fetched = _guard(leader.device, lambda: _fetch(leader.device, built, Path(tmp)),
                             failed)
            if isinstance(fetched, ConvertResult):
                for p in rest:
                    out[p.device.name] = _guard(p.device, lambda p=p: build(p), failed)
                return out
            _note(request.on_event, leader.device.name,
                  f"sharing this build with {', '.join(p.device.name for p in rest)}")
            with ThreadPoolExecutor(max_workers=min(8, len(rest))) as pool:
                shared = list(pool.map(lambda p: _guard(
                    p.device, lambda: share(leader, built, p, fetched), failed), rest))
            for p, r in zip(rest, shared):
                out[p.device.name] = r
        return out

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(groups)))) as pool:
        merged: dict[str, ConvertResult] = {}
        for part in pool.map(run_group, groups):
            merged.update(part)
    results = [merged.get(r.device.name) if isinstance(r, _Prepared) else r
               for r in prepared.results]
    from device_agent.store import tree_digest

    return FleetRun([r for r in results if r is not None], tree_digest(payload.manifest))


def _groups(ready: list[_Prepared]) -> list[list[_Prepared]]:
    groups: list[list[_Prepared]] = []
    for p in ready:
        fp = fingerprint(p.facts)
        for group in groups:
            lead = group[0]
            engines = _builds_engines(lead) or _builds_engines(p)
            if same_build_group(fingerprint(lead.facts), fp, engines) and \
                    _same_artifact(lead, p):
                group.append(p)
                break
        else:
            groups.append([p])
    return groups


def _builds_engines(p: _Prepared) -> bool:
    """Whether this device's conversion would build TensorRT engines."""
    return p.options.backend == "tftrt" or (p.options.backend == "auto"
                                            and bool(p.facts.tensorrt_enabled))


def _same_artifact(a: _Prepared, b: _Prepared) -> bool:
    """Only identical conversion options can share one build."""
    from device_agent.planner import artifact_options

    return artifact_options(a.options) == artifact_options(b.options)


def _fetch(device: Device, built: ConvertResult, tmp: Path) -> Payload:
    """Bring the leader's converted model to the host, ready to push to the others."""
    with open_client(device) as client:
        assert built.job_id is not None
        _, path = pull_job_model(client, built.job_id, tmp / "model")
    return make_payload(path)


def _guard(device: Device, work: Callable[[], object],
           failed: Callable[[Device, EdgeError], ConvertResult]) -> object:
    try:
        return work()
    except EdgeError as exc:
        return failed(device, exc)

