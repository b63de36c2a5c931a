"""What every command writes with, typer-free (the quick commands, edge.cli.quick, run
without loading typer): the consoles, the root options' state, JSON output, and the
choice between --to and the old positional targets."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from edge.core.errors import EdgeError

if TYPE_CHECKING:
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


def pick_targets(to: str | None, legacy: str | None, default: str | None) -> str | None:
    """`--to`, else the hidden old positional, else the command's default."""
    if to and legacy and to != legacy:
        raise EdgeError(
            f"Two device selections: --to {to} and {legacy}.", f"Give one: --to {to},{legacy}"
        )
    return to or legacy or default


def print_json(data: Any) -> None:
    """Write JSON to stdout (no rich markup, so it stays parseable)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
