"""The commands run most often, and by scripts (`edge fleet ls|probe`, `edge push`), parsed
and run without typer: loading typer (and its click) is ~40 ms of such a command's start,
more than the rest of its imports.

Each command's parameters are declared here as its typer declaration states them (the
command modules, edge.cli.fleet and edge.cli.push, keep the declarations; edge.cli.fast
reads them, and a test checks that both say the same). The typer commands call the same
functions. A command line this parser cannot take as certain (--help, an unknown or
repeated-in-doubt option, a value typer would check or convert) returns None, and the
command goes through typer as usual, with its own messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.cli._out import console, err_console, output, pick_targets, print_json

REQUIRED = object()  # the default of a parameter without one
_VALUE = {
    int: re.compile(r"-?(0|[1-9][0-9]*)"),
    float: re.compile(r"-?[0-9]+(\.[0-9]+)?"),
}


@dataclass(frozen=True)
class Param:
    """One parameter as typer reads it: an argument (positional) or an option."""

    name: str
    type: type
    option: bool
    default: Any  # REQUIRED: none
    # option names: value options, or a flag's names for True and for False
    names: tuple[str, ...] = ()
    false_names: tuple[str, ...] = ()


@dataclass
class Call:
    """A parsed command line: the command's function and its arguments, and -q/-v."""

    function: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    verbose: int = 0


# ----------------------------------------------------------------- the commands


def fleet_ls(legacy: str | None, to: str | None, json_out: bool) -> None:
    """`edge fleet ls`: the devices of the inventory (or the given targets)."""
    from edge.fleet.inventory import Inventory, device_to_dict

    targets = pick_targets(to, legacy, None)
    inventory = Inventory.load()
    devices = inventory.resolve(targets) if targets else inventory.devices()
    if json_out:
        print_json([device_to_dict(d) for d in devices])
        return
    if not devices:
        print(f"No devices in {inventory.path}. Add one: edge fleet add NAME --host HOST")
        return
    from edge.views.fleet import inventory_table

    console.print(inventory_table(devices, inventory.path))


def fleet_probe(legacy: str | None, to: str | None, quick: bool, json_out: bool) -> None:
    """`edge fleet probe`: each device's facts and backends; exit 1 if one failed."""
    from edge.fleet.devices import resolve_targets
    from edge.ops.info import probe as probe_devices

    run = probe_devices(resolve_targets(pick_targets(to, legacy, "all") or "all"), deep=not quick)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        from edge.views.fleet import probe_table
        from edge.views.tables import print_failures

        console.print(probe_table(run.results))
        print_failures(err_console, run.results)
    if not run.ok:
        raise SystemExit(1)


def push(model: Path, to: str, calib: Path | None, parallel: int, json_out: bool) -> None:
    """`edge push`: a SavedModel (and calibration data) to devices; exit 1 if one failed."""
    from contextlib import closing

    from edge.agent.transports import EarlyTransports
    from edge.fleet.devices import resolve_targets

    devices = resolve_targets(to)
    runs = []
    # the first devices log in while the push's own modules load (~30 ms of imports)
    with closing(EarlyTransports(devices, parallel)) as early:
        from edge.ops import push as push_lib

        model = push_lib.check_saved_model(model)
        for source, kind in ((model, "model"), (calib, "calib")):
            if source is None:
                continue
            if json_out or output.quiet or not console.is_terminal:
                runs.append(push_lib.push(source, devices, kind, None, parallel, early))
            else:
                from edge.views.progress import PushBars  # rich: only where bars are drawn

                with PushBars(err_console) as bars:
                    runs.append(push_lib.push(source, devices, kind, bars, parallel, early))
    results = [r for run in runs for r in run.results]
    if json_out:
        print_json([r.to_dict() for r in results])
    else:
        from edge.views.tables import print_failures, push_table

        console.print(push_table(results))
        print_failures(err_console, results)
    if not all(run.ok for run in runs):
        raise SystemExit(1)


_LEGACY = Param("legacy", str, False, None)
_JSON = Param("json_out", bool, True, False, ("--json",))
_TO = ("--to", "-t")
# command path -> (its function, its parameters in the typer declaration's order)
SPECS: dict[tuple[str, ...], tuple[Callable[..., None], tuple[Param, ...]]] = {
    ("fleet", "ls"): (fleet_ls, (_LEGACY, Param("to", str, True, None, _TO), _JSON)),
    ("fleet", "probe"): (
        fleet_probe,
        (
            _LEGACY,
            Param("to", str, True, None, _TO),
            Param("quick", bool, True, False, ("--quick",)),
            _JSON,
        ),
    ),
    ("push",): (
        push,
        (
            Param("model", Path, False, REQUIRED),
            Param("to", str, True, "local", _TO),
            Param("calib", Path, True, None, ("--calib",)),
            Param("parallel", int, True, 8, ("--parallel",)),
            _JSON,
        ),
    ),
}


# ----------------------------------------------------------------- the parser


def _value(param: Param, text: str) -> Any:
    if text.startswith("-") and param.type is not int and param.type is not float:
        return None  # typer's parser decides whether that is a value
    if param.type in _VALUE and not _VALUE[param.type].fullmatch(text):
        return None
    if param.type is Path and not text:
        return None
    return param.type(text)


def parse_command(params: Sequence[Param], args: Sequence[str]) -> dict[str, Any] | None:
    """`args` (after the command's name) as the keyword arguments of its function, or None
    where typer should parse them."""
    by_name = {n: p for p in params if p.option for n in (*p.names, *p.false_names)}
    positional = [p for p in params if not p.option]
    kwargs: dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--" or arg == "--help":
            return None
        if arg.startswith("-") and arg != "-":
            name, eq, attached = arg.partition("=")
            param = by_name.get(name)
            if param is None or (eq and (param.type is bool or not name.startswith("--"))):
                return None
            if param.type is bool:
                kwargs[param.name] = name in param.names
                continue
            if not eq:
                if not rest:
                    return None
                attached = rest.pop(0)
            text = attached
        elif positional:
            param, text = positional.pop(0), arg
        else:
            return None
        value = _value(param, text)
        if value is None:
            return None
        kwargs[param.name] = value
    for param in params:
        if param.name not in kwargs:
            if param.default is REQUIRED:
                return None  # typer's "Missing argument" message
            kwargs[param.name] = param.default
    return kwargs


def parse(args: Sequence[str]) -> Call | None:
    """`edge [-q] [-v...] COMMAND ...` as a Call, for the commands of SPECS; else None."""
    quiet, verbose, at = False, 0, 0
    while at < len(args):
        arg = args[at]
        if arg in ("-q", "--quiet"):
            quiet = True
        elif arg == "--verbose" or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            verbose += 1 if arg == "--verbose" else len(arg) - 1
        else:
            break
        at += 1
    for path, (function, params) in SPECS.items():
        if tuple(args[at : at + len(path)]) == path:
            kwargs = parse_command(params, args[at + len(path) :])
            return None if kwargs is None else Call(function, kwargs, quiet, verbose)
    return None
