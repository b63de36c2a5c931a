"""`edge runs ls|show|compare|export`: the history of convert, bench and validate results."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.cli._utils import (
    JsonOpt,
    console,
    err_console,
    pick_targets,
    print_json,
    targets_option,
    typer_factory,
)
from edge.core.untrusted import safe_text
from edge.history.compare import compare
from edge.history.export import export
from edge.history.store import Run, RunStore
from edge.views.history import comparison_table, run_table, runs_table
from edge.views.report import result_tables
from edge.views.tables import headlines

app = typer_factory("Stored results of convert, bench and validate: list, show, compare, export.")


class Kind(str, Enum):
    convert = "convert"
    bench = "bench"
    validate = "validate"


class Format(str, Enum):
    csv = "csv"
    json = "json"


ToOpt = Annotated[Optional[str], targets_option("every device")]
# the old spelling, kept working
DeviceOpt = Annotated[Optional[str], typer.Option("--device", hidden=True)]
ModelOpt = Annotated[
    Optional[str], typer.Option("--model", "-m", help="Model path substring or digest prefix.")
]
KindOpt = Annotated[Optional[Kind], typer.Option("--kind", "-k", help="Only this kind of run.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", "-n", min=1, help="Newest N runs.")]
RunArg = Annotated[str, typer.Argument(help="Run id (r12 or 12); see `edge runs ls`.")]


def _device_names(targets: str | None) -> list[str] | None:
    """The devices a --to selects. Names are taken as they are (a run's device may have
    left the inventory since); tag:NAME and all are resolved from the inventory."""
    if not targets:
        return None
    from edge.fleet.devices import resolve_targets

    names: list[str] = []
    for token in (t.strip() for t in targets.split(",")):
        if token == "all" or token.startswith("tag:"):
            names += [d.name for d in resolve_targets(token)]
        elif token:
            names.append(token)
    return list(dict.fromkeys(names))


def _select(to: str | None, model: str | None, kind: Kind | None, limit: int | None) -> list[Run]:
    names = _device_names(to)
    one = names[0] if names and len(names) == 1 else None
    with RunStore() as store:
        runs = store.list(
            device=one,
            model=model,
            kind=kind.value if kind else None,
            limit=limit if one or names is None else None,
        )
    if names is not None and one is None:  # several devices: filter here, then the limit
        runs = [r for r in runs if r.device in names]
        runs = runs[-limit:] if limit else runs
    return runs


@app.command("ls")
def ls(
    to: ToOpt = None,
    model: ModelOpt = None,
    kind: KindOpt = None,
    limit: LimitOpt = None,
    json_out: JsonOpt = False,
    device: DeviceOpt = None,
) -> None:
    """List stored runs, newest last."""
    runs = _select(pick_targets(to, device, None), model, kind, limit)
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
    if run.kind == "bench":
        for line in headlines([run.result()]):
            console.print(line, style="bold", highlight=False)
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
        n, noisy = len(cmp.regressions), len(cmp.noisy)
        verdict = f"[bold red]{n} regression(s)[/]" if n else "[green]no regressions[/]"
        if noisy:  # no verdict on those rows: say so, never "no regressions" alone
            verdict += f"; {noisy} row(s) noisy, not comparable"
        err_console.print(verdict, highlight=False)
    if cmp.regressions and fail_on_regression:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    format: Annotated[Format, typer.Option("--format", "-f", help="csv or json.")] = Format.csv,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="File (default stdout).")
    ] = None,
    to: ToOpt = None,
    model: ModelOpt = None,
    kind: KindOpt = None,
    limit: LimitOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    device: DeviceOpt = None,
) -> None:
    """Export runs: CSV (one row per run and batch size) or JSON (full runs)."""
    runs = _select(pick_targets(to, device, None), model, kind, limit)
    text = export(runs, "json" if json_out else format.value)
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        err_console.print(f"wrote {out}", highlight=False)
