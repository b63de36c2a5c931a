"""Run one job (convert or bench) in the worker process and return its typed result."""

from __future__ import annotations

import os
import socket
from typing import Any, Callable, Dict, Iterator, Optional

from . import bench as bench_mod
from .backends import select_backend
from .errors import AgentError
from .protocol import (
    SUCCEEDED,
    BenchOptions,
    BenchResult,
    ConvertResult,
    JobSpec,
    ValidateOptions,
    ValidateResult,
)

Emit = Callable[..., None]  # emit(kind, message, **data)


def run_job(spec: JobSpec, job_dir: str, emit: Emit) -> Any:
    """Dispatch on the job kind. AgentError propagates to the caller, which records it."""
    if spec.kind == "convert":
        return run_convert(spec, job_dir, emit)
    if spec.kind == "validate":
        from .validate import run_validate

        return run_validate(spec, emit, _calibration_inputs(spec, job_dir))
    return run_bench(spec, emit)


def _check_model_dir(path: str) -> None:
    if not os.path.isdir(path):
        raise AgentError(f"Model directory {path} does not exist on this device.")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb",
                                                               "saved_model.pbtxt")):
        raise AgentError(
            f"{path} is not a SavedModel: it has no saved_model.pb.",
            "Save the model with model.save(dir) (Keras 2) or tf.saved_model.save(obj, dir).",
        )


def run_convert(spec: JobSpec, job_dir: str, emit: Emit) -> ConvertResult:
    _check_model_dir(spec.model)
    from .convert import run_convert as convert_job

    return convert_job(spec, job_dir, emit)


def _calibration_inputs(spec: JobSpec, job_dir: str) -> Optional[Iterator[Dict[str, Any]]]:
    """Real samples for a validate job when it was given calibration data."""
    if not spec.calib:
        return None
    from .calib import batches
    from .convert import prepare_calibration
    from .savedmodel_meta import read_signature

    options = spec.validation or ValidateOptions()
    inputs = read_signature(spec.model, options.signature_key).inputs
    data, _ = prepare_calibration(spec, inputs, job_dir, lambda *a, **k: None)
    assert data is not None
    order = [i.name for i in inputs]
    return (dict(zip(order, b)) for b in batches(data, options.batch_size, options.samples, order))


def run_bench(spec: JobSpec, emit: Emit) -> BenchResult:
    """Benchmark spec.model at each batch size with synthesized inputs."""
    import tensorflow as tf

    from .signature import describe_inputs, load_signature, synth_inputs

    options = spec.bench or BenchOptions()
    _check_model_dir(spec.model)
    backend, fallback = select_backend(options.backend)
    _, fn = load_signature(spec.model, options.signature_key)
    inputs = describe_inputs(fn)
    result = BenchResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        backend=backend,
        fallback_reason=fallback,
        model=spec.model,
        options=options,
    )
    for batch_size in options.batch_sizes:
        arrays = synth_inputs(inputs, batch_size, options.input_shapes, options.seed)
        tensors = {k: tf.constant(v) for k, v in arrays.items()}

        def call(tensors: Dict[str, Any] = tensors) -> None:
            # .numpy() forces completion: the clock stops only when results are on the host.
            for out in fn(**tensors).values():
                out.numpy()

        emit(
            "progress",
            f"batch size {batch_size}: warming up and timing",
            phase="bench",
            batch_size=batch_size,
        )
        run = bench_mod.bench_run(call, batch_size, options)
        result.runs.append(run)
        emit(
            "progress",
            f"batch size {batch_size}: p50 {run.latency_ms.p50:.3f} ms, "
            f"{run.throughput_per_s:.1f}/s",
            phase="bench",
            batch_size=batch_size,
        )
    return result


def failed_result(spec: JobSpec, error: str, hint: Optional[str]) -> Any:
    """The result recorded for a job that raised."""
    cls = {"convert": ConvertResult, "bench": BenchResult, "validate": ValidateResult}[spec.kind]
    return cls(device=socket.gethostname(), status="failed", error=error, hint=hint)
