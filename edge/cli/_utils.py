"""Shared CLI pieces: the Typer factory, output sinks and reusable option types."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

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
