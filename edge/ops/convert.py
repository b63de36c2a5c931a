"""Fleet conversion: the devices decide, the host asks; build once per group of identical
boards.

Per device, over one session for the whole command (`connect.Sessions`): the agent's
facts, the options resolved for that device, the model and calibration data pushed
(content-addressed: nothing travels when the device has them), then the device's own
plan (agent command `plan`): the backend and why, the memory plan, the cache key and
whether its cache holds it, the calibration check. `--dry-run` stops there.

Devices that answer the same cache key and say a build may be shared form a group: with
sharing on, one of them builds and the others receive its converted model, verified and
installed into their cache (and validated there when asked) instead of rebuilding for
hours. A device whose cache holds the build already just hits it.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from device_agent.manifest import tree_digest
from device_agent.protocol import (
    FAILED,
    SUCCEEDED,
    ConversionPlan,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    DeviceFacts,
    DevicePlan,
    DeviceResult,
    ProtocolError,
)
from device_agent.savedmodel_meta import read_signature
from edge.agent.client import AgentClient
from edge.agent.follow import EventSink, follow_to_end, note
from edge.agent.sessions import Sessions
from edge.core.errors import DeviceError, EdgeError, UserError
from edge.fleet import interrupts
from edge.fleet.devices import Device
from edge.fleet.group import GroupResult, each, fan_out
from edge.ops.engine_export import OnnxExports
from edge.ops.pull import pull_job_model
from edge.ops.push import Payload, check_saved_model, make_payload, push_to

OptionsFor = Callable[[DeviceFacts], ConvertOptions]


@dataclass
class ConvertRequest:
    """What `edge convert` asks of every device. `defaults`: the options before any
    device's facts are known, for the host's checks before anything is pushed."""

    model: Path
    options_for: OptionsFor
    output: str | None = None
    calib: Path | None = None
    share_engines: bool = True
    on_event: EventSink | None = None
    defaults: ConvertOptions | None = None
    # the tensorrt backend: refuse an INT8 (Q/DQ) export that loses more top-1 agreement
    max_accuracy_drop: float | None = None
    # --dry-run as a board you do not have (the local agent plans from its tables)
    simulate_board: str | None = None
    simulate_jetpack: str | None = None


@dataclass
class DryRun(DeviceResult):
    plan: ConversionPlan | None = None


def check_calibration(model: Path, calib: Path, options: ConvertOptions) -> int:
    """Check calibration data against the model's serving signature on the host, before
    anything is pushed (the device checks again; its check is the one reported). Returns
    the number of samples."""
    from device_agent.calib import check_against_signature, open_calibration  # numpy: lazy

    inputs = read_signature(str(model), options.signature_key, options.tags).inputs
    with tempfile.TemporaryDirectory() as tmp:
        data = open_calibration(str(calib), cache_dir=tmp)
        check_against_signature(data, inputs)
        return data.samples


def _resolve(options_for: OptionsFor, facts: DeviceFacts) -> ConvertOptions:
    options = options_for(facts)
    try:
        options.validate()
    except ProtocolError as exc:
        raise EdgeError(
            f"Invalid conversion options: {exc}",
            "Fix the flag or recipe field named above (edge convert --help).",
        ) from exc
    return options


def _facts(client: AgentClient) -> DeviceFacts:
    """The device's facts (installing the agent on first use); the convert job needs numpy."""
    facts = client.info()
    if not facts.numpy:
        raise DeviceError(
            f"{client.device.name}: numpy is not installed for {client.device.python}.",
            "Install it on the board: sudo apt-get install python3-numpy (or pip3 install numpy).",
        )
    return facts


@dataclass
class _Ready:
    """A device that answered its plan: its session, the job spec and its decisions."""

    device: Device
    client: AgentClient
    spec: ConvertSpec
    decided: DevicePlan
    facts: DeviceFacts | None = None  # kept with the run (edge report's devices table)


def _preparer(
    sessions: Sessions,
    request: ConvertRequest,
    payload: Payload,
    calib_payload: Payload | None,
    exports: OnnxExports | None = None,
) -> Callable[[Device], _Ready]:
    """Per device: facts, options, push, the device's plan; then, where that plan builds
    a TensorRT engine the cache does not hold, the ONNX it asks for (`exports`; None: a
    dry run, which exports nothing)."""

    def prepare(device: Device) -> _Ready:
        client = sessions.client(device)
        facts = _facts(client)
        options = _resolve(request.options_for, facts)
        model_path = push_to(client, payload).model_path
        calib_path = push_to(client, calib_payload).model_path if calib_payload else None
        assert model_path is not None
        spec = ConvertSpec(
            model=model_path,
            output=request.output,
            convert=options,
            calib=calib_path,
            simulate_board=request.simulate_board,
            simulate_jetpack=request.simulate_jetpack,
        )
        decided = client.plan(spec)
        wanted = decided.plan.tensorrt.onnx if decided.plan.tensorrt else None
        if exports is not None and wanted is not None and not decided.cache_hit:
            note(request.on_event, device.name, f"ONNX export {wanted.key()}")
            onnx_path = push_to(client, exports.payload(wanted)).model_path
            spec = dataclasses.replace(spec, onnx=onnx_path)
            if options.run_validation:  # the board may have no TensorFlow to compare with
                reference = push_to(client, exports.reference_payload()).model_path
                spec = dataclasses.replace(spec, reference=reference)
        return _Ready(device, client, spec, decided, facts)

    return prepare


def _payloads(model: Path, calib: Path | None) -> tuple[Payload, Payload | None]:
    return make_payload(model), make_payload(calib, "calib") if calib is not None else None


def dry_run(request: ConvertRequest, devices: Sequence[Device]) -> GroupResult:
    """Every device's own plan (backend, converter kwargs, env, workspace arithmetic,
    calibration, build shapes, cache key); nothing is converted."""
    model = check_saved_model(request.model)

    if request.calib is not None:
        try:
            check_calibration(model, request.calib, request.defaults or ConvertOptions())
        except UserError as exc:  # nothing is pushed: every device's row says why
            return GroupResult(
                [DryRun.failure(d.name, exc.message, exc.hint) for d in devices],
                {d.name: exc for d in devices},
            )
    payload, calib_payload = _payloads(model, request.calib)
    with Sessions() as sessions:
        prepare = _preparer(sessions, request, payload, calib_payload)

        def work(device: Device) -> DryRun:
            decided = prepare(device).decided
            check = decided.calibration
            if check is not None and check.error:
                return DryRun(device.name, FAILED, check.error, check.hint, plan=decided.plan)
            return DryRun(device.name, SUCCEEDED, plan=decided.plan)

        return fan_out(devices, work, DryRun)


def _submit_and_follow(
    client: AgentClient, spec: ConvertSpec, on_event: EventSink | None
) -> ConvertResult:
    job_id = client.submit(spec)
    interrupts.job_started(client.device.name, job_id)
    note(on_event, client.device.name, f"job {job_id} submitted")
    result: ConvertResult = follow_to_end(client, "convert", job_id, on_event)
    interrupts.job_ended(client.device.name, job_id)
    return result


class _Group:
    """A leader's build, handed to the rest of its group once it is on this host."""

    def __init__(self, leader: _Ready, followers: list[_Ready]) -> None:
        self.leader = leader
        self.followers = followers
        self.done = threading.Event()
        self.built: ConvertResult | None = None
        self.payload: Payload | None = None  # None once done: each follower builds its own


def _groups(ready: list[_Ready], share: bool) -> list[_Group]:
    """Group devices by the cache key they computed (identical boards answer the same
    key). A device that holds the build already, or whose build may not travel, is alone."""
    by_key: dict[str, list[_Ready]] = {}
    alone: list[list[_Ready]] = []
    for p in ready:
        d = p.decided
        if share and d.shareable and not d.cache_hit:
            by_key.setdefault(d.cache_key, []).append(p)
        else:
            alone.append([p])
    return [_Group(g[0], g[1:]) for g in [*by_key.values(), *alone]]


def convert(request: ConvertRequest, devices: Sequence[Device]) -> GroupResult:
    """Convert on every device; one ConvertResult each, in target order."""
    model = check_saved_model(request.model)
    if request.calib is not None:  # fail before anything is pushed when the data is wrong
        check_calibration(model, request.calib, request.defaults or ConvertOptions())
    payload, calib_payload = _payloads(model, request.calib)

    with Sessions() as sessions, tempfile.TemporaryDirectory(prefix="edge-share-") as tmp:
        exports = OnnxExports(
            model,
            request.calib,
            request.defaults or ConvertOptions(),
            Path(tmp) / "onnx",
            request.max_accuracy_drop,
        )
        prepared = each(devices, _preparer(sessions, request, payload, calib_payload, exports))
        for line in exports.notes:
            note(request.on_event, "host", line)
        ready = {p.device.name: p for p in prepared if isinstance(p, _Ready)}
        groups = _groups(list(ready.values()), request.share_engines)
        leading = {g.leader.device.name: g for g in groups}
        following = {f.device.name: g for g in groups for f in g.followers}

        def build(p: _Ready) -> ConvertResult:
            return _submit_and_follow(p.client, p.spec, request.on_event)

        def lead(p: _Ready, group: _Group) -> ConvertResult:
            try:
                built = group.built = build(p)
                if group.followers and built.status == SUCCEEDED and built.job_id:
                    try:
                        out = Path(tempfile.mkdtemp(dir=tmp)) / "model"
                        _, path = pull_job_model(p.client, built.job_id, out, result=built)
                        group.payload = make_payload(path)
                    except UserError:  # the others build their own
                        group.payload = None
                    else:
                        note(
                            request.on_event,
                            p.device.name,
                            "sharing this build with "
                            + ", ".join(f.device.name for f in group.followers),
                        )
                return built
            finally:
                group.done.set()

        def receive(p: _Ready, group: _Group) -> ConvertResult:
            group.done.wait()
            if group.payload is None or group.built is None:  # the shared build failed
                return build(p)
            prebuilt = push_to(p.client, group.payload).model_path
            spec = dataclasses.replace(
                p.spec,
                prebuilt=prebuilt,
                prebuilt_from=group.leader.device.name,
                prebuilt_summary=group.built.summary,
            )
            return _submit_and_follow(p.client, spec, request.on_event)

        def finish(device: Device) -> ConvertResult:
            p = ready[device.name]
            if device.name in following:
                return receive(p, following[device.name])
            return lead(p, leading[device.name])

        # Leaders first: a follower waits for its leader, who then already has a worker.
        order = [g.leader.device for g in groups] + [f.device for g in groups for f in g.followers]
        built = fan_out(order, finish, ConvertResult)
    group: GroupResult[ConvertResult] = GroupResult(model_digest=tree_digest(payload.manifest))
    group.facts = {name: p.facts for name, p in ready.items() if p.facts is not None}
    for device, p in zip(devices, prepared):
        if isinstance(p, _Ready):
            group.results.append(built[device.name])
            if device.name in built.errors:
                group.errors[device.name] = built.errors[device.name]
        else:
            group.errors[device.name] = p
            group.results.append(ConvertResult.failure(device.name, p.message, p.hint))
    return group
