"""Run one job (convert or bench) in the worker process and return its typed result."""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import bench as bench_mod
from .backends import select_backend
from .errors import AgentError
from .protocol import (
    SUCCEEDED,
    BenchOptions,
    BenchResult,
    ConvertOptions,
    ConvertResult,
    JobSpec,
    TensorInfo,
)

Emit = Callable[..., None]  # emit(kind, message, **data)


def run_job(spec: JobSpec, job_dir: str, emit: Emit) -> Any:
    """Dispatch on the job kind. AgentError propagates to the caller, which records it."""
    if spec.kind == "convert":
        return run_convert(spec, job_dir, emit)
    return run_bench(spec, emit)


def _check_model_dir(path: str) -> None:
    if not os.path.isdir(path):
        raise AgentError(f"Model directory {path} does not exist on this device.")
    if not any(
        os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")
    ):
        raise AgentError(
            f"{path} is not a SavedModel: it has no saved_model.pb.",
            "Save the model with model.save(dir) (Keras 2) or tf.saved_model.save(obj, dir).",
        )


def _input_fn(
    inputs: List[TensorInfo], shapes: List[Dict[str, List[int]]], batch_size: int, count: int = 1
) -> Callable[[], Iterator[Tuple[Any, ...]]]:
    """An input_fn for build()/calibration yielding tuples in signature (sorted-name) order."""
    from .signature import synth_inputs

    profiles = shapes or [{}]

    def fn() -> Iterator[Tuple[Any, ...]]:
        for n in range(count):
            for overrides in profiles:
                arrays = synth_inputs(inputs, batch_size, overrides, seed=n)
                yield tuple(arrays[i.name] for i in inputs)

    return fn


def run_convert(spec: JobSpec, job_dir: str, emit: Emit) -> ConvertResult:
    """Convert spec.model with the chosen backend into spec.output (or the job's artifacts)."""
    options = spec.convert or ConvertOptions()
    _check_model_dir(spec.model)
    output = spec.output or os.path.join(job_dir, "artifacts", "model")
    if os.path.exists(output) and os.listdir(output):
        raise AgentError(
            f"Output directory {output} already exists and is not empty.",
            "Choose another --output, or remove that directory first.",
        )
    started = time.time()
    emit("log", f"selecting backend {options.backend!r}")
    backend, fallback = select_backend(options.backend)
    if fallback:
        emit("log", fallback)
    emit("progress", f"converting with {backend} ({options.precision})", phase="convert")

    def log(msg: str) -> None:
        emit("log", msg)

    built = False
    if backend == "tftrt":
        from .backends import tftrt
        from .signature import describe_inputs, load_signature

        _, fn = load_signature(spec.model, options.signature_key, options.tags)
        inputs = describe_inputs(fn)
        build_fn = _input_fn(inputs, options.build_shapes, 1)
        calib_fn = None
        if options.precision == "INT8" and options.use_calibration:
            emit(
                "log",
                "no calibration data given: calibrating on synthesized inputs "
                "(accuracy will not be representative)",
            )
            calib_fn = _input_fn(
                inputs,
                options.build_shapes,
                options.calibration_batch_size,
                options.calibration_batches,
            )
        work_dir = os.path.join(job_dir, "artifacts")
        os.makedirs(work_dir, exist_ok=True)
        summary, built = tftrt.convert(
            options, spec.model, output, work_dir, build_fn, calib_fn, log
        )
    else:
        from .backends import native

        summary = native.convert(options, spec.model, output, log)
    from .summary import render_text

    with open(os.path.join(job_dir, "artifacts", "summary.txt"), "w") as f:
        f.write(render_text(summary) + "\n")
    return ConvertResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        backend=backend,
        fallback_reason=fallback,
        precision=options.precision if backend == "tftrt" else "FP32",
        output_model=os.path.abspath(output),
        summary=summary,
        options=options,
        seconds=round(time.time() - started, 3),
        engines_built=built,
    )


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
    cls = ConvertResult if spec.kind == "convert" else BenchResult
    return cls(device=socket.gethostname(), status="failed", error=error, hint=hint)
