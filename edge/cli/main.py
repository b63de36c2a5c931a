"""Root of the CLI: wires the command groups and maps user errors to exit code 1."""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Annotated, NoReturn

import typer

from edge.cli import (
    agent,
    bench,
    convert,
    demo,
    export,
    fleet,
    gc,
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
from edge.cli._utils import err_console, output, typer_factory
from edge.core.errors import EdgeError, UserError
from edge.core.settings import Settings, settings
from edge.core.untrusted import safe_text
from edge.fleet import interrupts

app = typer_factory(
    "jetson-edge: convert and benchmark TensorFlow models on Jetson fleets.", completion=True
)


def _version(value: bool) -> None:
    if value:
        from device_agent.protocol import PROTOCOL_VERSION
        from edge import __version__

        typer.echo(f"jetson-edge {__version__} (agent protocol {PROTOCOL_VERSION})")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only results and errors: no progress lines.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Debug logging on stderr (-vv: span timings too).",
        ),
    ] = 0,
) -> None:
    """jetson-edge: convert and benchmark TensorFlow models on Jetson fleets."""
    output.quiet, output.verbose = quiet, verbose
    set_verbosity(quiet, verbose)


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
app.command(
    name="gc", help=gc.HELP, short_help="Free device disk: old jobs, unused models, caches."
)(gc.gc)
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
    # paramiko's records (a failed connection's traceback, from its thread): EDGE_DEBUG=1 only
    paramiko_log = logging.getLogger("paramiko")
    if config.debug and _handler not in paramiko_log.handlers:
        paramiko_log.addHandler(_handler)
    elif not config.debug and _handler in paramiko_log.handlers:
        paramiko_log.removeHandler(_handler)
    # its own level: EDGE_DEBUG alone shows no timings, EDGE_TRACE alone no debug records
    logging.getLogger(TRACE_LOGGER).setLevel(logging.INFO if config.trace else logging.WARNING)


def set_verbosity(quiet: bool, verbose: int) -> None:
    """-q: errors only; -v: DEBUG records (as EDGE_DEBUG=1); -vv: the span timings too."""
    if verbose:
        logging.getLogger("edge").setLevel(logging.DEBUG)
    elif quiet:
        logging.getLogger("edge").setLevel(logging.ERROR)
    if verbose > 1:
        logging.getLogger(TRACE_LOGGER).setLevel(logging.INFO)


def _user_error(exc: UserError, debug: bool) -> None:
    if debug:
        logging.getLogger(__name__).debug("user error", exc_info=True)
    # soft_wrap: the terminal wraps the line, so a command in the hint is never split by a
    # newline of ours (it copies and pastes as one line)
    err_console.print(
        f"[bold red]error:[/] {safe_text(exc.message)}", highlight=False, soft_wrap=True
    )
    if exc.hint:
        err_console.print(f"[bold]hint:[/] {safe_text(exc.hint)}", highlight=False, soft_wrap=True)
    if not debug:
        err_console.print("(set EDGE_DEBUG=1 for the traceback)", style="dim")


def main() -> None:
    """Console entry point."""
    try:
        config = settings()  # a bad EDGE_* value fails here, before any command runs
    except EdgeError as exc:
        msg, hint = safe_text(exc.message), safe_text(exc.hint or "")
        err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        err_console.print(f"[bold]hint:[/] {hint}", highlight=False, soft_wrap=True)
        sys.exit(1)
    configure_logging(config)
    dump_stacks_on_sigusr1()
    interrupts.on_interrupt(_silence_progress)
    try:
        app(prog_name="edge")
    except UserError as exc:  # EdgeError, and an AgentError from a shared device helper
        _user_error(exc, config.debug)
        sys.exit(1)
    except KeyboardInterrupt:
        interrupted()
    except SystemExit as exc:  # typer turns Ctrl-C into exit 130
        if exc.code == 130 and _by_ctrl_c(exc):
            interrupted()
        raise


def _silence_progress() -> None:
    err_console.quiet = True


def _by_ctrl_c(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, KeyboardInterrupt):
        seen = seen.__cause__ or seen.__context__
    return seen is not None


def interrupted() -> NoReturn:
    """Ctrl-C: say which jobs keep running on which devices (they run detached there)
    and how to reattach, then exit 130 at once: threads still following jobs are not
    waited for."""
    interrupts.interrupted()  # the progress lines stop (the workers' links are closing)
    lines = ["interrupted", *map(safe_text, interrupts.report())]
    try:  # plain lines, never wrapped: each ends with a command to copy
        sys.stdout.flush()
        sys.stderr.write("".join(f"{line}\n" for line in lines))
        sys.stderr.flush()
    except OSError:  # a closed pipe: nothing more to say
        pass
    if any(
        t.is_alive() and not t.daemon
        for t in threading.enumerate()
        if t is not threading.main_thread()
    ):
        os._exit(130)  # the workers would be joined at exit
    sys.exit(130)
