"""Run one job (convert or bench) in the worker process and return its typed result."""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Type

from . import bench as bench_mod
from .backends import (
    ModelRunner,
    artifact_backend,
    check_artifact,
    open_artifact,
    select_backend,
)
from .errors import AgentError
from .protocol import (
    SUCCEEDED,
    BenchOptions,
    BenchResult,
    BenchRun,
    BenchSpec,
    ConvertResult,
    ConvertSpec,
    DeviceResult,
    JobSpec,
    TensorInfo,
    ValidateResult,
    ValidateSpec,
)
from .savedmodel_meta import check_model_dir

Emit = Callable[..., None]  # emit(kind, message, **data)


def run_job(spec: JobSpec, job_dir: str, emit: Emit) -> Any:
    """Dispatch on the job kind. AgentError propagates to the caller, which records it."""
    if isinstance(spec, ConvertSpec):
        return run_convert(spec, job_dir, emit)
    if isinstance(spec, ValidateSpec):
        from .validate import run_validate

        return run_validate(spec, emit, _calibration_inputs(spec, job_dir))
    assert isinstance(spec, BenchSpec), spec.kind  # spec_from_json knows no other kind
    return run_bench(spec, emit, job_dir)


def run_convert(spec: ConvertSpec, job_dir: str, emit: Emit) -> ConvertResult:
    check_model_dir(spec.model)
    from .convert import run_convert as convert_job

    return convert_job(spec, job_dir, emit)


def _calibration_inputs(spec: ValidateSpec, job_dir: str) -> Optional[Iterator[Dict[str, Any]]]:
    """Real samples for a validate job when it was given calibration data."""
    if not spec.calib:
        return None
    from .calib import batches
    from .convert import prepare_calibration
    from .savedmodel_meta import read_signature

    options = spec.validation
    inputs = read_signature(spec.model, options.signature_key).inputs
    data, _ = prepare_calibration(spec, inputs, job_dir, lambda *a, **k: None)
    assert data is not None
    order = [i.name for i in inputs]
    return (dict(zip(order, b)) for b in batches(data, options.batch_size, options.samples, order))


SCENARIO_BATCHES = {"single-stream": [1], "offline": [1, 2, 4, 8, 16, 32, 64]}


def _inputs_for(
    inputs: List[TensorInfo], batch_size: int, options: BenchOptions, calib: Any
) -> Dict[str, Any]:
    """Real samples (the first batch of the calibration data) or synthesized inputs."""
    if calib is not None:
        from .calib import batches

        order = [i.name for i in inputs]
        first = next(iter(batches(calib, batch_size, 1, order)), None)
        if first is None:
            raise AgentError(
                f"The calibration data has fewer than {batch_size} samples.",
                "Use smaller batch sizes or more samples.",
            )
        return dict(zip(order, first))
    from .signature import synth_inputs

    return synth_inputs(inputs, batch_size, options.input_shapes, options.seed)


def _timed(
    model: ModelRunner, arrays: Dict[str, Any], batch_size: int, options: BenchOptions
) -> BenchRun:
    return bench_mod.bench_run(model.timed_call(arrays), batch_size, options)


def _with_telemetry(run_fn: Callable[[], BenchRun], options: BenchOptions, emit: Emit) -> BenchRun:
    if not options.telemetry:
        return run_fn()
    from .telemetry import TelemetrySampler

    with TelemetrySampler(interval_ms=options.telemetry_interval_ms) as sampler:
        run = run_fn()
        end = time.time()
    samples = sampler.samples
    begin = end - run.wall_seconds
    power, gpu, temp, throttled, warnings = sampler.summarize(
        begin, end, run.iterations * run.batch_size
    )
    run.power, run.gpu_load_avg_pct, run.temp_peak_c = power, gpu, temp
    run.throttled, run.telemetry_source = throttled, sampler.source
    run.telemetry = [t for t in samples if begin <= t.ts <= end]
    for w in warnings:
        emit("log", "telemetry: " + w)
    return run


def run_bench(spec: BenchSpec, emit: Emit, job_dir: str = "") -> BenchResult:
    """Benchmark spec.model per batch size (scenario or list), with telemetry, and the
    native model in the same job when asked; speedup = native latency / this latency."""
    options = spec.bench
    check_artifact(spec.model)
    owner = artifact_backend(spec.model)  # an engine runs on the backend that built it
    backend, fallback = (owner, None) if owner else select_backend(options.backend)
    model = open_artifact(spec.model, options.signature_key)
    for flag in model.configure(options.transfers, options.cuda_graph):
        emit("log", f"{flag} applies to TensorRT engines only; ignored for this model")
    inputs = model.inputs
    native = None
    if spec.native:
        check_model_dir(spec.native, "native model")
        native = open_artifact(spec.native, options.signature_key)
    calib = None
    if spec.calib:
        from .convert import prepare_calibration

        calib, _ = prepare_calibration(spec, inputs, job_dir or os.getcwd(), emit)
    sizes = SCENARIO_BATCHES.get(options.scenario or "", options.batch_sizes)
    result = BenchResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        backend=backend,
        fallback_reason=fallback,
        model=spec.model,
        options=options,
        scenario=options.scenario or "custom",
        transfers=options.transfers or owner is None,
        cuda_graph=options.cuda_graph and owner is not None,
    )
    for batch_size in sizes:
        try:
            arrays = _inputs_for(inputs, batch_size, options, calib)
        except AgentError as exc:
            if options.scenario == "offline" and result.runs:
                emit("log", f"offline sweep stops at batch {batch_size}: {exc.message}")
                break
            raise
        emit(
            "progress",
            f"batch size {batch_size}: warming up and timing",
            phase="bench",
            batch_size=batch_size,
        )
        run = _with_telemetry(
            functools.partial(_timed, model, arrays, batch_size, options), options, emit
        )
        if native is not None:
            base = _timed(native, arrays, batch_size, options)
            run.native_latency_ms = base.latency_ms
            run.speedup_vs_native = base.latency_ms.p50 / run.latency_ms.p50
        result.runs.append(run)
        extra = f", {run.speedup_vs_native:.2f}x native" if run.speedup_vs_native else ""
        power = f", {run.power.avg_mw / 1000:.1f} W" if run.power else ""
        emit(
            "progress",
            f"batch size {batch_size}: p50 {run.latency_ms.p50:.3f} ms, "
            f"{run.throughput_per_s:.1f}/s{power}{extra}" + (" (noisy)" if run.noisy else ""),
            phase="bench",
            batch_size=batch_size,
        )
    result.headline = headline(result)
    return result


def headline(result: BenchResult) -> Optional[str]:
    """single-stream: p90 latency at batch 1 (as MLPerf); offline: the best throughput."""
    if not result.runs:
        return None
    if result.scenario == "single-stream":
        run = result.runs[0]
        return f"single-stream p90 {run.latency_ms.p90:.3f} ms"
    best = max(result.runs, key=lambda r: r.throughput_per_s)
    return f"best throughput {best.throughput_per_s:,.1f}/s at batch {best.batch_size}"


def failed_result(spec: JobSpec, error: str, hint: Optional[str]) -> Any:
    """The result recorded for a job that raised."""
    cls: Type[DeviceResult] = {
        "convert": ConvertResult,
        "bench": BenchResult,
        "validate": ValidateResult,
    }[spec.kind]
    return cls.failure(socket.gethostname(), error, hint)
