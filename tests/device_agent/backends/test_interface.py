"""The backend interface: the registry, the probes on this machine, the shared ladder and
sweep, and a test backend plugged into the real agent's jobs without changing them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from helpers import agent_cmd, agent_env

from device_agent import backends, facts
from device_agent.backends import tftrt
from device_agent.backends.base import (
    Backend,
    BuildOutcome,
    BuildRequest,
    Capability,
    SegmentCounter,
)
from device_agent.backends.ladder import DEFAULT_WORKSPACE, WORKSPACE_FLOOR, build_with_ladder
from device_agent.backends.sweep import resolve_segment_size
from device_agent.errors import AgentError, BackendUnavailable
from device_agent.planner import make_plan
from device_agent.protocol import (
    BenchOptions,
    BenchResult,
    BenchSpec,
    ConversionSummary,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    DeviceFacts,
    Event,
    JobSpec,
    SweepPoint,
    ValidateResult,
    ValidateSpec,
)

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
MB = 1 << 20


def _copy_backend_module():  # noqa: ANN202 - the plugin module
    spec = importlib.util.spec_from_file_location("copy_backend", PLUGINS / "copy_backend.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeBackend(Backend):
    """Builds nothing real: `build` fails with `errors` (one per attempt) and records the
    workspaces it was given; the sweep counts 12 - size engines."""

    name = "fake"

    def __init__(
        self, engines: bool, errors: Optional[List[Exception]] = None, available: bool = True
    ) -> None:
        self.builds_engines = engines
        self.errors = list(errors or [])
        self.workspaces: List[Optional[int]] = []
        self.available = available

    def probe(self) -> Capability:
        return Capability(self.name, self.available, "fake reason", {})

    def segment_counter(self, request: BuildRequest) -> Optional[SegmentCounter]:
        return SegmentCounter(lambda s: SweepPoint(s, max(0, 12 - s), 100.0 - s, 12 - s))

    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        self.workspaces.append(workspace_bytes)
        assert not os.path.exists(output_dir)
        os.makedirs(output_dir)
        if self.errors:
            raise self.errors.pop(0)
        return BuildOutcome(ConversionSummary(ops_total=7))


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    backend = FakeBackend(engines=True)
    backends.register(backend, auto_rank=0)
    yield backend
    backends.unregister(backend.name)


def request_for(
    tmp_path: Path, options: ConvertOptions, logs: List[str], workspace: Optional[int] = None
) -> BuildRequest:
    return BuildRequest(
        options=options,
        model_dir=str(tmp_path / "m"),
        work_dir=str(tmp_path),
        inputs=[],
        build_inputs=None,
        calibration=None,
        workspace_bytes=workspace,
        tf_gpu_memory_limit_mb=None,
        log=logs.append,
    )


# --------------------------------------------------------------------------- registry


def test_registry_holds_the_two_backends_and_refuses_unknown_names() -> None:
    assert {"tftrt", "native"} <= set(backends.names())
    assert isinstance(backends.get("tftrt"), tftrt.TftrtBackend)
    assert backends.get("native").name == "native"
    with pytest.raises(AgentError) as err:
        backends.get("onnx")
    assert "onnx" in err.value.message and "tftrt" in (err.value.hint or "")

    class Auto(FakeBackend):
        name = "auto"

    with pytest.raises(ValueError):
        backends.register(Auto(engines=False))
    assert "auto" not in backends.names()


def test_a_registered_backend_is_found_by_name_and_auto(fake: FakeBackend) -> None:
    assert backends.get("fake") is fake
    assert backends.select_backend("fake") == ("fake", None)
    assert backends.select_backend("auto") == ("fake", None)
    fake.available = False  # auto moves on to the next; by name it is refused
    name, reason = backends.select_backend("auto")
    assert name == "native" and reason and "fake reason" in reason
    with pytest.raises(BackendUnavailable, match="fake reason"):
        backends.select_backend("fake")
    backends.unregister("fake")
    assert "fake" not in backends.names()
    with pytest.raises(AgentError):
        backends.select_backend("fake")


# --------------------------------------------------------------------------- probes


def test_probes_on_this_machine_say_why_tftrt_cannot_run() -> None:
    import tensorflow as tf

    caps = backends.probe_all()
    trt = caps["tftrt"]
    assert not trt.available and "not built with TensorRT" in trt.reason
    assert trt.versions["tensorflow"] == tf.__version__ and tf.__version__ in trt.reason
    native = caps["native"]
    assert native.available and native.versions["tensorflow"] == tf.__version__
    # no `tensorrt` module here either: auto falls back with both probes' own reasons
    engine = caps["tensorrt"]
    assert not engine.available and "does not import" in engine.reason
    assert backends.select_backend("auto") == (
        "native",
        f"auto: {trt.reason}; {engine.reason}; used the native backend (no TensorRT engines)",
    )
    with pytest.raises(BackendUnavailable) as err:
        backends.select_backend("tftrt")
    assert trt.reason in err.value.message and err.value.hint == tftrt.NO_TRT_HINT


def test_info_deep_uses_the_same_probe() -> None:
    trt = tftrt.probe()
    enabled, linked, loaded = facts.probe_tensorrt()
    assert (enabled, linked, loaded) == (
        trt.available,
        trt.versions["tensorrt_linked"],
        trt.versions["tensorrt_loaded"],
    )
    assert tftrt.tensorrt_status() == (trt.available, trt.reason)


# --------------------------------------------------------------------------- plan


def test_plan_contributions_match_the_conversion_plan() -> None:
    host = DeviceFacts(
        agent_version="0",
        protocol=1,
        python="3.8",
        machine="x86_64",
        hostname="h",
        memory_total_mb=16000,
        memory_available_mb=12000,
        swap_total_mb=0,
        disk_free_mb=1000,
        tensorflow="2.15.0",
    )
    options = ConvertOptions(precision="FP16", max_engines=3, op_denylist=["Shape"])
    plan = make_plan(host, options, "tftrt", "/m", 10 * MB, "0" * 64, None)
    extra = backends.get("tftrt").plan(options, plan.workspace_bytes, "/m")
    assert extra.converter_kwargs == plan.converter_kwargs
    assert extra.env == plan.env and extra.workspace_bytes == plan.workspace_bytes
    assert extra.converter_kwargs["max_workspace_size_bytes"] == plan.workspace_bytes
    assert backends.get("native").plan(options, None, "/m").converter_kwargs == {}
    assert backends.get("native").precision(options) == "FP32"
    assert backends.get("tftrt").precision(options) == "FP16"


# --------------------------------------------------------------------------- shared machinery


def test_the_ladder_halves_the_workspace_for_any_engine_backend(tmp_path: Path) -> None:
    oom = RuntimeError("Error Code 1: Cuda Runtime (out of memory)")
    backend = FakeBackend(engines=True, errors=[oom, oom])
    logs: List[str] = []
    outcome, attempts = build_with_ladder(
        backend, request_for(tmp_path, ConvertOptions(), logs, 256 * MB), str(tmp_path / "o")
    )
    assert backend.workspaces == [256 * MB, 128 * MB, 64 * MB]
    assert [a.outcome for a in attempts] == ["oom", "oom", "ok"]
    assert outcome.summary.ops_total == 7 and len(logs) == 2
    # at the floor it gives up with remedies; a non-OOM error is not retried
    stubborn = FakeBackend(engines=True, errors=[oom] * 10)
    with pytest.raises(AgentError, match="out of memory at every workspace size") as err:
        build_with_ladder(
            stubborn, request_for(tmp_path, ConvertOptions(), [], 64 * MB), str(tmp_path / "p")
        )
    assert stubborn.workspaces[-1] == WORKSPACE_FLOOR and len(err.value.attempts) == 2  # type: ignore[attr-defined]
    assert "convert with FP16" in err.value.message
    # the remedies are those of the precision built: an FP16 build is not told to use FP16
    half = FakeBackend(engines=True, errors=[oom] * 10)
    with pytest.raises(AgentError, match="out of memory at every workspace size") as err:
        build_with_ladder(
            half,
            request_for(tmp_path, ConvertOptions(precision="FP16"), [], 64 * MB),
            str(tmp_path / "h"),
        )
    assert "FP16" not in err.value.message and "--precision" not in (err.value.hint or "")
    broken = FakeBackend(engines=True, errors=[ValueError("bad graph")])
    with pytest.raises(ValueError):
        build_with_ladder(broken, request_for(tmp_path, ConvertOptions(), []), str(tmp_path / "q"))
    assert broken.workspaces == [DEFAULT_WORKSPACE]


def test_a_backend_without_engines_is_built_once_without_a_workspace(tmp_path: Path) -> None:
    backend = FakeBackend(engines=False)
    _, attempts = build_with_ladder(
        backend, request_for(tmp_path, ConvertOptions(), [], 64 * MB), str(tmp_path / "o")
    )
    assert backend.workspaces == [None] and [a.workspace_bytes for a in attempts] == [None]


def test_the_sweep_asks_the_backend_to_count(tmp_path: Path) -> None:
    backend = FakeBackend(engines=True)
    logs: List[str] = []
    asked = request_for(
        tmp_path, ConvertOptions(minimum_segment_size_auto=True, max_engines=2), logs
    )
    swept, points = resolve_segment_size(backend, asked)
    first_within = next(p for p in points if p.engines <= 2)
    assert swept.options.minimum_segment_size == first_within.minimum_segment_size == 12
    assert points[-1] is first_within and asked.options.minimum_segment_size == 3
    unchanged, none = resolve_segment_size(backend, request_for(tmp_path, ConvertOptions(), []))
    assert none == [] and unchanged.options.minimum_segment_size == 3
    backend.segment_counter = lambda request: None  # type: ignore[method-assign]
    same, none = resolve_segment_size(backend, asked)
    assert none == [] and same is asked and "no segments to sweep" in logs[-1]


# --------------------------------------------------------------------------- the plug-in point


def _plugin_env(tmp_path: Path) -> dict[str, str]:
    """The real agent's environment, plus a sitecustomize that registers the copy backend
    in every agent process (the submitting one and its detached worker)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import copy_backend\ncopy_backend.install()\n")
    env = agent_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGINS), env["PYTHONPATH"]])
    env["COPY_BACKEND_LOG"] = str(tmp_path / "copy.log")
    return env


def _submit(root: Path, spec: JobSpec, env: dict[str, str]) -> tuple[int, List[Event]]:
    proc = subprocess.run(
        agent_cmd(root) + ["submit", "-"],
        input=spec.to_json(),
        text=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events


def _result(events: List[Event]) -> dict:
    return next(e for e in events if e.kind == "result").data["result"]


def _log_lines(tmp_path: Path) -> List[str]:
    path = tmp_path / "copy.log"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def test_a_plugged_in_backend_runs_the_real_jobs(tmp_path: Path, tiny_model: Path) -> None:
    copy_backend = _copy_backend_module()
    env, root = _plugin_env(tmp_path), tmp_path / "root"
    options = ConvertOptions(minimum_segment_size_auto=True, max_engines=2, run_validation=True)
    spec = ConvertSpec(model=str(tiny_model), convert=options)
    code, events = _submit(root, spec, env)
    result = ConvertResult.from_dict(_result(events))
    assert code == 0, result.error
    assert (result.backend, result.fallback_reason, result.cache) == ("copy", None, "built")
    # the ladder retried the out-of-memory build with half the workspace
    workspaces = [a.workspace_bytes or 0 for a in result.attempts]
    assert [a.outcome for a in result.attempts] == ["oom", "ok"]
    assert workspaces[1] == max(WORKSPACE_FLOOR, workspaces[0] // 2)
    # the sweep chose the first size within the target, and the build got it
    chosen = next(p for p in result.segment_sweep if p.engines <= 2)
    assert result.options and result.options.minimum_segment_size == chosen.minimum_segment_size
    assert chosen.engines == copy_backend.engines_at(chosen.minimum_segment_size)
    output = Path(result.output_model or "")
    marker = json.loads((output / copy_backend.MARKER).read_text())
    assert marker == {
        "minimum_segment_size": chosen.minimum_segment_size,
        "workspace_bytes": workspaces[-1],
    }
    # the job's validation loaded the artifact with the backend that built it
    assert result.validation is not None and result.validation.passed
    lines = _log_lines(tmp_path)
    assert lines[0] == f"load {output}" and "run" in lines
    summary_txt = Path(root, "jobs", result.job_id or "", "artifacts", "summary.txt")
    assert summary_txt.read_text().startswith("copy backend")

    again = ConvertResult.from_dict(_result(_submit(root, spec, env)[1]))
    assert again.cache == "hit" and again.output_model == result.output_model

    bench = BenchSpec(
        model=str(output),
        bench=BenchOptions(iterations=3, warmup_iterations=1, warmup_seconds=0, telemetry=False),
    )
    code, events = _submit(root, bench, env)
    ran = BenchResult.from_dict(_result(events))
    assert code == 0, ran.error
    assert ran.backend == "copy" and [r.iterations for r in ran.runs] == [3]
    assert _log_lines(tmp_path)[-1] == "timed"

    validate = ValidateSpec(model=str(tiny_model), converted=str(output))
    code, events = _submit(root, validate, env)
    checked = ValidateResult.from_dict(_result(events))
    assert code == 0 and checked.validation is not None and checked.validation.passed
    assert _log_lines(tmp_path)[0] == f"load {output}"


def test_without_the_plugin_the_same_artifact_is_refused(tmp_path: Path, tiny_model: Path) -> None:
    """The copy backend's artifact is no SavedModel: only its backend can load it."""
    copy_backend = _copy_backend_module()
    art = tmp_path / "art"
    art.mkdir()
    (art / copy_backend.MARKER).write_text("{}")
    with pytest.raises(AgentError, match="not a SavedModel"):
        backends.check_artifact(str(art), "converted model")
    backends.register(copy_backend.CopyBackend())
    try:
        assert backends.check_artifact(str(art)) == str(art)
    finally:
        backends.unregister(copy_backend.NAME)
    with pytest.raises(AgentError, match="not a SavedModel"):
        backends.check_artifact(str(art))
