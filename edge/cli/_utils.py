"""Shared CLI pieces: the Typer factory, output sinks, reusable option types, and the end
of every fleet job command (record, print, exit status)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, cast

import typer

from edge.core.errors import EdgeError

if TYPE_CHECKING:  # the job machinery loads with the commands that run jobs
    from edge.agent.follow import EventSink
    from edge.fleet.group import GroupResult
    from edge.views.layout import PipeConsole


def color_system() -> Literal["auto"] | None:
    """No styles at all under NO_COLOR (https://no-color.org), even with FORCE_COLOR or a
    tty: rich's own NO_COLOR handling drops colours but keeps bold and dim escapes."""
    return None if os.environ.get("NO_COLOR") else "auto"


class _LazyConsole:
    """Stands for a PipeConsole made at its first use, so that a command whose output needs
    no rich (`--json`, a quiet success) does not load it: rich is ~30 ms of every start."""

    _lock = threading.Lock()
    _stderr: bool
    _made: PipeConsole | None

    def __init__(self, stderr: bool) -> None:
        object.__setattr__(self, "_stderr", stderr)
        object.__setattr__(self, "_made", None)

    def _console(self) -> PipeConsole:
        made: PipeConsole | None = self._made
        if made is None:
            with self._lock:
                made = self._made
                if made is None:
                    from edge.views.layout import PipeConsole

                    made = PipeConsole(stderr=self._stderr, color_system=color_system())
                    object.__setattr__(self, "_made", made)
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._console(), name, value)

    # Dunder methods are looked up on the type, not through __getattr__: rich's Live (the
    # push bars) enters its console with `with console:`.
    def __enter__(self) -> PipeConsole:
        made = self._console()
        made.__enter__()
        return made

    def __exit__(self, *exc: Any) -> None:
        self._console().__exit__(*exc)


# wide when piped or logged (edge.views.layout): a table is never narrowed to a guessed 80
console = cast("PipeConsole", _LazyConsole(stderr=False))
err_console = cast("PipeConsole", _LazyConsole(stderr=True))


@dataclass
class Output:
    """The root options -q/--quiet and -v/--verbose, set once by the root callback."""

    quiet: bool = False
    verbose: int = 0


output = Output()

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


def pick_targets(to: str | None, legacy: str | None, default: str | None) -> str | None:
    """`--to`, else the hidden old positional, else the command's default."""
    if to and legacy and to != legacy:
        raise EdgeError(
            f"Two device selections: --to {to} and {legacy}.", f"Give one: --to {to},{legacy}"
        )
    return to or legacy or default


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
