"""Root of the CLI: wires the command groups and maps user errors to exit code 1.

`main()` loads only the module of the command named on the command line, so a fleet
command does not pay for numpy, the recipes or the converters; `app` (the attribute, as
tests and completion use it) has every command."""

from __future__ import annotations

import atexit
import errno
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

from edge.cli import quick
from edge.cli._out import err_console, output
from edge.core.errors import EdgeError, UserError
from edge.core.settings import Settings, settings
from edge.core.untrusted import safe_text
from edge.fleet import interrupts

HELP = "jetson-edge: convert and benchmark TensorFlow models on Jetson fleets."

# name on the command line -> (module in edge.cli, help); in --help's order. A help of
# None is a group: the module's `app`. Otherwise the module's function of the same name.
COMMANDS: dict[str, tuple[str, str | None]] = {
    "info": ("info", "Show a device's facts (module, JetPack, memory, TensorFlow)."),
    "convert": ("convert", "Convert a SavedModel on devices (TF-TRT, or native)."),
    "bench": ("bench", "Benchmark a SavedModel on devices."),
    "demo": ("demo", "Build the guide's MNIST model, convert and benchmark it on local."),
    "push": ("push", "Push a SavedModel (and calibration data) to devices."),
    "validate": ("validate", "Compare a converted model with its input model."),
    "pull": ("pull", "Fetch a converted model back from a device."),
    "export": ("export", "Export a SavedModel to ONNX, checked on the host."),
    "gc": ("gc", "Free device disk: old jobs, unused models, caches."),
    "fleet": ("fleet", None),
    "jobs": ("jobs", None),
    "agent": ("agent", None),
    "mux": ("mux", None),
    "recipes": ("recipes", None),
    "runs": ("runs", None),
    "report": ("report", "Write an HTML report with plots of stored runs."),
}
# the root options, all flags: the command's name is the first word after them
_ROOT_FLAGS = {"--quiet", "-q", "--verbose", "-v"}


def apply_root(quiet: bool, verbose: int) -> None:
    """The root options' effect: -q drops progress lines, -v turns on debug logging."""
    output.quiet, output.verbose = quiet, verbose
    set_verbosity(quiet, verbose)


def command_name(args: Sequence[str]) -> str | None:
    """The command (or group) `args` run, when that alone needs loading: None for no
    command, --help, --version, the completion options or a name edge does not know, which
    need every command (the listing, the suggestion for a typo)."""
    if "_EDGE_COMPLETE" in os.environ:
        return None
    for arg in args:
        if arg in _ROOT_FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            continue
        return arg if arg in COMMANDS else None
    return None


def __getattr__(name: str) -> Any:
    # `app` (every command, built on first use: from edge.cli.main import app), and the
    # typer pieces of edge.cli.app, which the quick commands' start does without
    if name == "app":
        from edge.cli.app import build_app

        built = globals()["app"] = build_app()
        return built
    if name in ("build_app", "root"):
        from edge.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        _run(sys.argv[1:])
    except UserError as exc:  # EdgeError, and an AgentError from a shared device helper
        _user_error(exc, config.debug)
        sys.exit(1)
    except KeyboardInterrupt:
        interrupted()
    except SystemExit as exc:  # typer turns Ctrl-C into exit 130
        if exc.code == 130 and _by_ctrl_c(exc):
            interrupted()
        raise


def _run(args: list[str]) -> None:
    """A built (or a test's) `app` if there is one; else a command of `quick.SPECS` called
    at once, without typer, or an app of the command named alone (`build_app`)."""
    if "app" in globals():
        globals()["app"](prog_name="edge")
        return
    call = None if "_EDGE_COMPLETE" in os.environ else quick.parse(args)
    if call is None:
        from edge.cli.app import build_app

        name = command_name(args)
        build_app([name] if name else tuple(COMMANDS))(prog_name="edge")
        return
    apply_root(call.quiet, call.verbose)
    try:
        call.function(**call.kwargs)
        _exit_now()
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # a closed pipe (`| head`): no second error when the interpreter flushes stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _exit_now() -> None:
    """End a quick command that succeeded without the interpreter's teardown of its
    modules (measured: ~10 ms of an `edge push`'s wall time), once that loses nothing:
    no other thread that is not a daemon is running, the atexit handlers have run and
    stdout and stderr are flushed. Otherwise the usual exit follows."""
    main = threading.main_thread()
    if any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


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
