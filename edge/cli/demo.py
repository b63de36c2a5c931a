"""`edge demo`: the whole path on the built-in `local` device in one command."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from device_agent.protocol import BenchOptions, ConvertOptions
from edge.cli._utils import console, err_console
from edge.core.paths import data_dir
from edge.core.untrusted import safe_text
from edge.fleet.devices import local_device
from edge.history.record import record_runs
from edge.ops import convert as conversion
from edge.ops import measure
from edge.ops.convert import ConvertRequest
from edge.views.progress import event_printer
from edge.views.tables import bench_table, convert_tables, print_failures


def demo(
    model: Annotated[
        Optional[Path],
        typer.Option(help="Use this SavedModel instead of building the MNIST model."),
    ] = None,
    workdir: Annotated[
        Optional[Path],
        typer.Option(help="Where the demo writes its models (default: the user data dir)."),
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of timed run per batch size.")] = 1.0,
) -> None:
    """Build the guide's MNIST model, convert it (FP16 requested, auto backend) on `local`,
    and benchmark the native and converted models at batch sizes 1 and 32."""
    workdir = (workdir or data_dir() / "demo").expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    device = local_device()
    if model is None:
        from edge.ops.demo_model import build_mnist_model

        console.print(
            "[bold]1/3[/] building the TF-TRT guide's Keras MNIST model "
            "(trained briefly on generated digits)"
        )
        built = build_mnist_model(workdir / "mnist_saved_model")
        model = built.path
        console.print(f"    saved {model} (test accuracy {built.test_accuracy:.1%})")
    converted = workdir / "mnist_converted"
    if converted.exists():
        shutil.rmtree(converted)
    console.print("[bold]2/3[/] converting on `local` (FP16 requested, backend auto)")
    sink = event_printer(err_console)
    conv = conversion.convert(
        ConvertRequest(
            model,
            lambda facts: ConvertOptions(precision="FP16"),
            output=str(converted),
            on_event=sink,
        ),
        [device],
    )
    console.print(convert_tables(conv.results))
    print_failures(err_console, conv.results)
    if not conv.ok:
        raise typer.Exit(1)
    result = conv.results[0]
    if result.fallback_reason:
        console.print(f"[yellow]note:[/] {safe_text(result.fallback_reason)}", highlight=False)
    console.print("[bold]3/3[/] benchmarking native and converted models (batch 1 and 32)")
    options = BenchOptions(batch_sizes=[1, 32], duration_seconds=duration)
    runs = [
        measure.bench(model, [device], options, on_event=sink),
        measure.bench(Path(result.output_model or converted), [device], options, on_event=sink),
    ]
    results = [r for run in runs for r in run.results]
    stored = record_runs("convert", conv.results, model, conv.model_digest)
    for run in runs:
        stored += record_runs(
            "bench", run.results, Path(run.results[0].model or model), run.model_digest
        )
    console.print(bench_table(results, title="Benchmark: native vs converted"))
    console.print(
        f"recorded as runs {', '.join(r.run_id for r in stored)}: "
        f"edge runs ls, edge report {' '.join(r.run_id for r in stored[1:])} "
        "--out DIR",
        highlight=False,
    )
    print_failures(err_console, results)
    console.print(
        "On a Jetson, the same conversion builds TensorRT engines natively on its GPU: "
        "edge convert MODEL --to <device> --precision FP16",
        highlight=False,
    )
    if not all(run.ok for run in runs):
        raise typer.Exit(1)
