"""`edge runs ls|show|compare|export`: the history of convert, bench and validate results."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..report import result_tables
from ..runs import Comparison, Run, RunStore, compare, comparison_rows, export
from ..untrusted import safe_text
from ._utils import JsonOpt, console, err_console, print_json, typer_factory

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


def _select(device: str | None, model: str | None, kind: Kind | None,
            limit: int | None) -> list[Run]:
    with RunStore() as store:
        return store.list(device=device, model=model, kind=kind.value if kind else None,
                          limit=limit)


def headline(run: Run) -> str:
    """One line that says what the run found."""
    m: dict[str, Any] = run.metrics
    if run.kind == "bench" and m.get("runs"):
        first = m["runs"][0]
        text = (f"bs{first['batch_size']} p50 {first['latency_ms']['p50']:.3f} ms, "
                f"{first['throughput_per_s']:,.0f}/s")
        return text + (f" (+{len(m['runs']) - 1} batch sizes)" if len(m["runs"]) > 1 else "")
    if run.kind == "convert" and m.get("summary"):
        s = m["summary"]
        return (f"{m.get('backend') or '?'} {m.get('precision') or ''} "
                f"{len(s.get('engines') or [])} engines, {s.get('percent_converted', 0):.1f}%")
    if run.kind == "validate" and m.get("validation"):
        return "outputs match" if m["validation"].get("passed") else "outputs differ"
    return m.get("error") or "-"


@app.command("ls")
def ls(device: DeviceOpt = None, model: ModelOpt = None, kind: KindOpt = None,
       limit: LimitOpt = None, json_out: JsonOpt = False) -> None:
    """List stored runs, newest last."""
    runs = _select(device, model, kind, limit)
    if json_out:
        print_json([r.summary() for r in runs])
        return
    recipes = any(r.recipe for r in runs)
    t = Table(title="Runs")
    for col in ("id", "kind", "device", "model", "digest", "recipe", "created", "status"):
        if col != "recipe" or recipes:
            t.add_column(col, no_wrap=col in ("id", "created"))
    t.add_column("result", min_width=24)
    for r in runs:
        name = r.model.rstrip("/").split("/")[-1] or r.model
        cells = [r.run_id, r.kind, r.device, name, (r.model_digest or "-")[:10]]
        cells += [r.recipe or "-"] if recipes else []
        cells += [r.created_at[:16].replace("T", " "), r.status, headline(r)]
        t.add_row(*(safe_text(c) for c in cells))
    console.print(t)
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
    meta = Table(title=safe_text(f"Run {run.run_id}"), show_header=False)
    meta.add_column("field", style="bold")
    meta.add_column("value")
    fp = run.fingerprint or {}
    for key, value in (
        ("kind", run.kind), ("device", run.device), ("model", run.model),
        ("model digest", run.model_digest or "-"), ("recipe", run.recipe or "-"),
        ("created", run.created_at), ("status", run.status), ("job", run.job_id or "-"),
        ("artifacts", ", ".join(f"{k}={v}" for k, v in run.artifacts.items() if v) or "-"),
        ("fingerprint", ", ".join(f"{k}={v}" for k, v in fp.items()) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in run.labels.items()) or "-"),
    ):
        meta.add_row(key, safe_text(value))
    console.print(meta)
    for table in result_tables([run]):
        console.print(table)
    error = run.metrics.get("error")
    if error:
        console.print(f"[bold red]error:[/] {safe_text(error)}", highlight=False)


def comparison_table(cmp: Comparison) -> Table:
    """`comparison_rows` as a rich Table; regressions in red."""
    t = Table(title=safe_text(f"{cmp.a} -> {cmp.b} ({cmp.kind})"))
    for col in ("batch", "metric", cmp.a, cmp.b, "delta", ""):
        t.add_column(safe_text(col), justify="left" if col in ("metric", "") else "right")
    for row in comparison_rows(cmp):
        t.add_row(*(safe_text(c) for c in row), style="bold red" if row[-1] else None)
    t.caption = (f"delta = (B - A) / A; regression: worse by more than {cmp.threshold_pct:g}%")
    return t


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
        err_console.print(f"[bold red]{n} regression(s)[/]" if n else "[green]no regressions[/]",
                          highlight=False)
    if cmp.regressions and fail_on_regression:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    format: Annotated[Format, typer.Option("--format", "-f", help="csv or json.")] = Format.csv,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="File (default stdout).")]
    = None,
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
