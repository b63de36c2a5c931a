"""`edge demo`: the whole path on the built-in `local` device in one command."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from device_agent.protocol import BenchOptions, ConvertOptions
from edge.cli._utils import JsonOpt, console, err_console, output, print_json, progress_sink
from edge.core.paths import data_dir
from edge.core.untrusted import safe_text
from edge.fleet.devices import local_device
from edge.history.record import record_runs
from edge.ops import convert as conversion
from edge.ops import measure
from edge.ops.convert import ConvertRequest
from edge.views.tables import bench_table, convert_tables, model_label, print_failures


def demo(
    ctx: typer.Context,
    model: Annotated[
        Optional[Path],
        typer.Option(help="Use this SavedModel instead of building the MNIST model."),
    ] = None,
    workdir: Annotated[
        Optional[Path],
        typer.Option(help="Where the demo writes its models (default: the user data dir)."),
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of timed run per batch size.")] = 1.0,
    json_out: JsonOpt = False,
) -> None:
    """Build the guide's MNIST model, convert it (FP16 requested, auto backend) on `local`,
    and benchmark the native and converted models at batch sizes 1 and 32."""
    if json_out:  # the steps and tables go nowhere: stdout is the JSON alone
        console.quiet = True
        ctx.call_on_close(lambda: setattr(console, "quiet", False))
    workdir = (workdir or data_dir() / "demo").expanduser().resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    device = local_device()
    if model is None:
        from edge.ops.demo_model import build_mnist_model

        _step(
            "[bold]1/3[/] building the TF-TRT guide's Keras MNIST model "
            "(trained briefly on generated digits)"
        )
        built = build_mnist_model(workdir / "mnist_saved_model")
        model = built.path
        _step(f"    saved {model} (test accuracy {built.test_accuracy:.1%})")
    converted = workdir / "mnist_converted"
    if converted.exists():
        shutil.rmtree(converted)
    _step("[bold]2/3[/] converting on `local` (FP16 requested, backend auto)")
    sink = progress_sink(json_out)
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
        if json_out:
            print_json({"convert": [r.to_dict() for r in conv.results], "bench": [], "runs": []})
        raise typer.Exit(1)
    result = conv.results[0]
    if result.fallback_reason:
        console.print(f"[yellow]note:[/] {safe_text(result.fallback_reason)}", highlight=False)
    _step("[bold]3/3[/] benchmarking native and converted models (batch 1 and 32)")
    options = BenchOptions(batch_sizes=[1, 32], duration_seconds=duration)
    runs = [
        measure.bench(model, [device], options, on_event=sink),
        measure.bench(Path(result.output_model or converted), [device], options, on_event=sink),
    ]
    results = [r for run in runs for r in run.results]
    stored = record_runs("convert", conv.results, model, conv.model_digest, facts=conv.facts)
    for run in runs:
        stored += record_runs(
            "bench",
            run.results,
            Path(run.results[0].model or model),
            run.model_digest,
            facts=run.facts,
        )
    labels = [
        model_label(r.model, None if i == 0 else result)
        for i, run in enumerate(runs)
        for r in run.results
    ]
    console.print(bench_table(results, "Benchmark: native vs converted", labels))
    console.print(
        f"recorded as runs {', '.join(r.run_id for r in stored)}: "
        f"edge runs ls, edge report {' '.join(r.run_id for r in stored[1:])} "
        "--out DIR",
        highlight=False,
        soft_wrap=True,  # commands stay on one line
    )
    print_failures(err_console, results)
    _step(
        "On a Jetson, the same conversion builds TensorRT engines natively on its GPU: "
        "edge convert MODEL --to <device> --precision FP16",
        highlight=False,
        soft_wrap=True,
    )
    if json_out:
        print_json(
            {
                "convert": [r.to_dict() for r in conv.results],
                "bench": [r.to_dict() for r in results],
                "runs": [r.run_id for r in stored],
            }
        )
    if not all(run.ok for run in runs):
        raise typer.Exit(1)


def _step(text: str, **kwargs: Any) -> None:
    """A narrative line of the demo: left out under -q, like other progress."""
    if not output.quiet:
        console.print(text, **kwargs)
