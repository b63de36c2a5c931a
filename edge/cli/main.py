"""Root of the CLI: wires the command groups and maps user errors to exit code 1."""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import signal
import sys
from pathlib import Path
from typing import IO

from edge.cli import (
    agent,
    bench,
    convert,
    demo,
    export,
    fleet,
    info,
    jobs,
    mux,
    pull,
    push,
    recipes,
    report,
    runs,
    validate,
)
from edge.cli._utils import err_console, typer_factory
from edge.core.errors import EdgeError, UserError
from edge.core.settings import Settings, settings
from edge.core.untrusted import safe_text

app = typer_factory("jetson-edge: convert and benchmark TensorFlow models on Jetson fleets.")
app.command(name="info", help="Show a device's facts (module, JetPack, memory, TensorFlow).")(
    info.info
)
app.command(name="convert", help="Convert a SavedModel on devices (TF-TRT, or native).")(
    convert.convert
)
app.command(name="bench", help="Benchmark a SavedModel on devices.")(bench.bench)
app.command(name="demo", help="Build the guide's MNIST model, convert and benchmark it on local.")(
    demo.demo
)
app.command(name="push", help="Push a SavedModel (and calibration data) to devices.")(push.push)
app.command(name="validate", help="Compare a converted model with its input model.")(
    validate.validate
)
app.command(name="pull", help="Fetch a converted model back from a device.")(pull.pull)
app.command(name="export", help="Export a SavedModel to ONNX, checked on the host.")(export.export)
app.add_typer(fleet.app, name="fleet")
app.add_typer(jobs.app, name="jobs")
app.add_typer(agent.app, name="agent")
app.add_typer(mux.app, name="mux")
app.add_typer(recipes.app, name="recipes")
app.add_typer(runs.app, name="runs")
app.command(name="report", help="Write an HTML report with plots of stored runs.")(report.report)


_stacks_file: IO[str] | None = None  # open for as long as the handler may write to it


def dump_stacks_on_sigusr1() -> Path | None:
    """`kill -USR1 <pid>` makes this process write every thread's stack to
    `<data dir>/stacks-<pid>.log` (faulthandler: it works even while a thread is stuck
    in C, holding the GIL), to diagnose a hang. The file is removed at exit if empty."""
    global _stacks_file
    if not hasattr(signal, "SIGUSR1") or _stacks_file is not None:
        return None
    from edge.core.paths import data_dir

    path = data_dir() / f"stacks-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _stacks_file = open(path, "a")  # noqa: SIM115 (kept open for the handler)
    except OSError:  # no data dir: no stack dumps, the command itself still runs
        return None
    faulthandler.register(signal.SIGUSR1, file=_stacks_file, all_threads=True)

    def tidy() -> None:
        try:
            if path.stat().st_size == 0:
                path.unlink()
        except OSError:
            pass

    atexit.register(tidy)
    return path


class _Stderr(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes (not as it was at setup)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


TRACE_LOGGER = "edge.core.trace"


class _Format(logging.Formatter):
    """Trace lines as they are (`[trace   1.234s]     dev1 connect 0.120s`); the rest as
    `debug: edge.module: message`, with the traceback when there is one."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == TRACE_LOGGER:
            return record.getMessage()
        return f"{record.levelname.lower()}: {super().format(record)}"


_handler: logging.Handler | None = None


def configure_logging(config: Settings) -> None:
    """The diagnostics of the `edge` loggers on stderr: warnings always, DEBUG records for
    EDGE_DEBUG=1, the span timings of `edge.core.trace` for EDGE_TRACE=1. Idempotent."""
    global _handler
    root = logging.getLogger("edge")
    if _handler is None:
        _handler = _Stderr()
        _handler.setFormatter(_Format())
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if config.debug else logging.WARNING)
    # its own level: EDGE_DEBUG alone shows no timings, EDGE_TRACE alone no debug records
    logging.getLogger(TRACE_LOGGER).setLevel(logging.INFO if config.trace else logging.WARNING)


def _user_error(exc: UserError, debug: bool) -> None:
    if debug:
        logging.getLogger(__name__).debug("user error", exc_info=True)
    err_console.print(f"[bold red]error:[/] {safe_text(exc.message)}", highlight=False)
    if exc.hint:
        err_console.print(f"[bold]hint:[/] {safe_text(exc.hint)}", highlight=False)
    if not debug:
        err_console.print("(set EDGE_DEBUG=1 for the traceback)", style="dim")


def main() -> None:
    """Console entry point."""
    try:
        config = settings()  # a bad EDGE_* value fails here, before any command runs
    except EdgeError as exc:
        err_console.print(f"[bold red]error:[/] {safe_text(exc.message)}", highlight=False)
        err_console.print(f"[bold]hint:[/] {safe_text(exc.hint or '')}", highlight=False)
        sys.exit(1)
    configure_logging(config)
    dump_stacks_on_sigusr1()
    try:
        app()
    except UserError as exc:  # EdgeError, and an AgentError from a shared device helper
        _user_error(exc, config.debug)
        sys.exit(1)
