"""`edge runs ls|show|compare|export`: the history of convert, bench and validate results."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.cli._utils import JsonOpt, console, err_console, print_json, typer_factory
from edge.core.untrusted import safe_text
from edge.history.compare import compare
from edge.history.export import export
from edge.history.store import Run, RunStore
from edge.views.history import comparison_table, run_table, runs_table
from edge.views.report import result_tables

app = typer_factory("Stored results of convert, bench and validate: list, show, compare, export.")


class Kind(str, Enum):
    convert = "convert"
    bench = "bench"
    validate = "validate"


class Format(str, Enum):
    csv = "csv"
    json = "json"


DeviceOpt = Annotated[Optional[str], typer.Option("--device", "-d", help="Only this device.")]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Model path substring or digest prefix.")
]
KindOpt = Annotated[Optional[Kind], typer.Option("--kind", "-k", help="Only this kind of run.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Newest N runs.")]
RunArg = Annotated[str, typer.Argument(help="Run id (r12 or 12); see `edge runs ls`.")]


def _select(
    device: str | None, model: str | None, kind: Kind | None, limit: int | None
) -> list[Run]:
    with RunStore() as store:
        return store.list(
            device=device, model=model, kind=kind.value if kind else None, limit=limit
        )


@app.command("ls")
def ls(
    device: DeviceOpt = None,
    model: ModelOpt = None,
    kind: KindOpt = None,
    limit: LimitOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List stored runs, newest last."""
    runs = _select(device, model, kind, limit)
    if json_out:
        print_json([r.summary() for r in runs])
        return
    console.print(runs_table(runs))
    if not runs:
        err_console.print("No runs stored yet: `edge convert` and `edge bench` record them.")


@app.command("show")
def show(run_id: RunArg, json_out: JsonOpt = False) -> None:
    """Show one run: what ran where, and its result tables."""
    with RunStore() as store:
        run = store.get(run_id)
    if json_out:
        print_json(run.to_dict())
        return
    console.print(run_table(run))
    for table in result_tables([run]):
        console.print(table)
    error = run.metrics.get("error")
    if error:
        console.print(f"[bold red]error:[/] {safe_text(error)}", highlight=False)


@app.command("compare")
def compare_cmd(
    run_a: Annotated[str, typer.Argument(help="The baseline run.")],
    run_b: Annotated[str, typer.Argument(help="The run to judge against it.")],
    threshold: Annotated[
        float, typer.Option("--threshold", min=0.0, help="Percent worse that is a regression.")
    ] = 5.0,
    fail_on_regression: Annotated[
        bool, typer.Option("--fail-on-regression", help="Exit 1 when any metric regressed.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Per-metric deltas of RUN_B against RUN_A (bench: per batch size)."""
    with RunStore() as store:
        a, b = store.get(run_a), store.get(run_b)
    cmp = compare(a, b, threshold)
    if json_out:
        print_json(cmp.to_dict())
    else:
        console.print(comparison_table(cmp))
        for label, sizes in (("A", cmp.only_in_a), ("B", cmp.only_in_b)):
            if sizes:
                err_console.print(f"batch sizes only in {label}: {sizes}")
        n = len(cmp.regressions)
        err_console.print(
            f"[bold red]{n} regression(s)[/]" if n else "[green]no regressions[/]", highlight=False
        )
    if cmp.regressions and fail_on_regression:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    format: Annotated[Format, typer.Option("--format", "-f", help="csv or json.")] = Format.csv,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="File (default stdout).")
    ] = None,
    device: DeviceOpt = None,
    model: ModelOpt = None,
    kind: KindOpt = None,
    limit: LimitOpt = None,
) -> None:
    """Export runs: CSV (one row per run and batch size) or JSON (full runs)."""
    text = export(_select(device, model, kind, limit), format.value)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        err_console.print(f"wrote {out}", highlight=False)
