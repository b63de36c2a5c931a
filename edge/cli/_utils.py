"""Shared CLI pieces: the Typer factory, output sinks, reusable option types, and the end
of every fleet job command (record, print, exit status)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from edge.cli._out import console as console
from edge.cli._out import err_console as err_console
from edge.cli._out import output as output
from edge.cli._out import pick_targets as pick_targets
from edge.cli._out import print_json as print_json

if TYPE_CHECKING:  # the job machinery loads with the commands that run jobs
    from edge.agent.follow import EventSink
    from edge.fleet.group import GroupResult


TARGETS_HELP = "names, tag:NAME, all, or local (comma-separated)"
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]


def targets_option(default: str) -> Any:
    """The one targeting option of every command that addresses devices: --to/-t."""
    return typer.Option(
        "--to", "-t", metavar="TARGETS", help=f"Devices: {TARGETS_HELP}. Default: {default}."
    )


TargetsOpt = Annotated[str, targets_option("local")]
# an old spelling kept working (positional TARGETS), hidden from --help
LegacyTargetsArg = Annotated[
    Optional[str], typer.Argument(hidden=True, show_default=False, metavar="TARGETS")
]


def progress_sink(json_out: bool = False) -> EventSink | None:
    """Where job events go: stderr lines, or nowhere under --json or -q."""
    from edge.views.progress import event_printer

    return None if json_out or output.quiet else event_printer(err_console)


def note(text: str) -> None:
    """A dim line on stderr that is not a result (dropped by -q)."""
    if not output.quiet:
        err_console.print(text, style="dim", highlight=False, soft_wrap=True)


def typer_factory(help: str, completion: bool = False) -> typer.Typer:
    """A Typer app with the project's settings (no pretty tracebacks, help on no args);
    `completion` for the root app: --install-completion and --show-completion."""
    return typer.Typer(
        help=help,
        no_args_is_help=True,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        add_completion=completion,
    )


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
    from edge.history.record import record_runs
    from edge.views.tables import print_failures, result_view

    stored = record_runs(kind, run.results, model, run.model_digest, recipe, run.facts)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        console.print(result_view(kind, run.results))
        print_failures(err_console, run.results)
        note(f"recorded as {', '.join(r.run_id for r in stored)} (edge runs show ID)")
    if any_failed(run.results):
        raise typer.Exit(1)
