"""Shared CLI pieces: the Typer factory, output sinks, reusable option types, and the end
of every fleet job command (record, print, exit status)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from edge.fleet.group import GroupResult
from edge.history.record import record_runs
from edge.views.tables import print_failures, result_view

console = Console()
err_console = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
TargetsOpt = Annotated[
    str,
    typer.Option("--to", "-t", help="Devices: names, tag:NAME, all, or local (comma-separated)."),
]


def typer_factory(help: str) -> typer.Typer:
    """A Typer app with the project's settings (no pretty tracebacks, help on no args)."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


def print_json(data: Any) -> None:
    """Write JSON to stdout (no rich markup, so it stays parseable)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def any_failed(results: Sequence[Any]) -> bool:
    """Whether a device failed, or a validation that ran (validate, convert --validate)
    found the converted model out of tolerance."""
    return any(
        r.status != "succeeded"
        or (getattr(r, "validation", None) is not None and not r.validation.passed)
        for r in results
    )


def finish_run(
    kind: str, run: GroupResult, model: Path, recipe: str | None, json_out: bool
) -> None:
    """The end of `edge convert|bench|validate`: record each device's result in the run
    history, print the results (JSON, or the kind's tables, the failures and the run ids),
    and exit 1 if any device failed (`any_failed`)."""
    stored = record_runs(kind, run.results, model, run.model_digest, recipe)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        console.print(result_view(kind, run.results))
        print_failures(err_console, run.results)
        err_console.print(
            f"recorded as {', '.join(r.run_id for r in stored)} (edge runs show ID)", style="dim"
        )
    if any_failed(run.results):
        raise typer.Exit(1)
