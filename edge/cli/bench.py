"""`edge bench MODEL --to DEVICES`: latency and throughput per batch size on each device."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from device_agent.protocol import BenchOptions, ProtocolError
from edge.cli._options import parse_input_shapes, parse_int_list
from edge.cli._utils import JsonOpt, TargetsOpt, finish_run, progress_sink
from edge.cli.convert import Backend
from edge.core.errors import EdgeError
from edge.fleet.devices import resolve_targets
from edge.ops import measure


class Scenario(str, Enum):
    single_stream = "single-stream"
    offline = "offline"


def bench(
    model: Annotated[Path, typer.Argument(help="SavedModel directory on this machine.")],
    to: TargetsOpt = "local",
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    iterations: Annotated[
        Optional[int], typer.Option(help="Timed iterations (instead of a duration).")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of timed run per batch size.")] = 3.0,
    warmup: Annotated[float, typer.Option(help="Seconds of warm-up per batch size.")] = 0.2,
    input_shape: Annotated[
        Optional[list[str]],
        typer.Option(help="NAME=DIMS for inputs with dynamic non-batch dimensions."),
    ] = None,
    backend: Annotated[Backend, typer.Option()] = Backend.auto,
    signature: Annotated[str, typer.Option(help="Signature key.")] = "serving_default",
    scenario: Annotated[
        Optional[Scenario],
        typer.Option(
            help="single-stream: batch 1, p90 latency is the headline (MLPerf); offline: sweep "
            "batch sizes, best throughput is the headline."
        ),
    ] = None,
    compare_native: Annotated[
        Optional[Path],
        typer.Option(
            help="The native model MODEL was converted from: timed in the same job, with the "
            "speedup per batch size."
        ),
    ] = None,
    calib: Annotated[
        Optional[Path],
        typer.Option(help="Real samples (.npz or .npy directory) instead of synthesized inputs."),
    ] = None,
    telemetry: Annotated[
        bool,
        typer.Option(
            "--telemetry/--no-telemetry", help="Sample tegrastats (or /proc) during each run."
        ),
    ] = True,
    telemetry_interval: Annotated[int, typer.Option(help="Telemetry interval in ms.")] = 100,
    transfers: Annotated[
        bool,
        typer.Option(
            "--transfers/--no-transfers",
            help="TensorRT engines: time the host/device copies too, or the engine alone.",
        ),
    ] = True,
    cuda_graph: Annotated[
        bool,
        typer.Option("--cuda-graph", help="TensorRT engines: replay a captured CUDA graph."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Benchmark a SavedModel on each device: warm-up, timed run, latency percentiles."""
    devices = resolve_targets(to)
    shapes = parse_input_shapes(input_shape)[0] if input_shape else {}
    options = BenchOptions(
        backend=backend.value,
        signature_key=signature,
        batch_sizes=parse_int_list(batch_sizes, "batch-sizes"),
        iterations=iterations,
        duration_seconds=duration,
        warmup_seconds=warmup,
        input_shapes=shapes,
        scenario=scenario.value if scenario else None,
        telemetry=telemetry,
        telemetry_interval_ms=telemetry_interval,
        transfers=transfers,
        cuda_graph=cuda_graph,
    )
    try:
        options.validate()
    except ProtocolError as exc:
        raise EdgeError(f"Invalid benchmark options: {exc}", "See `edge bench --help`.") from exc
    run = measure.bench(
        model,
        devices,
        options,
        on_event=progress_sink(json_out),
        native=compare_native,
        calib=calib,
    )
    finish_run("bench", run, model, None, json_out)
