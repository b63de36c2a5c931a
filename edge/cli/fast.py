"""The commands run most often, and by scripts (`edge fleet ls|probe`, `edge push`), parsed
from their own typer declarations without typer's run time: typer coerces every value
through a pydantic TypeAdapter, and loading pydantic costs more than the rest of such a
command's start. Anything this parser cannot take as certain (--help, an unknown or
repeated-in-doubt option, a value typer would check or convert itself) returns None, and
the command goes through typer as usual, with its own messages."""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from typer.models import ArgumentInfo, OptionInfo, ParamMeta
from typer.utils import get_params_from_function

# command path -> (module in edge.cli, function)
FAST: dict[tuple[str, ...], tuple[str, str]] = {
    ("fleet", "ls"): ("fleet", "ls"),
    ("fleet", "probe"): ("fleet", "probe"),
    ("push",): ("push", "push"),
}
# what a parameter may set and still mean only the value given: help, names, display
_COSMETIC = {
    "default",
    "param_decls",
    "help",
    "metavar",
    "hidden",
    "show_default",
    "show_choices",
    "show_envvar",
    "rich_help_panel",
    "shell_complete",
    "autocompletion",
}
_TYPES = (str, int, float, bool, Path)
_VALUE = {
    int: re.compile(r"-?(0|[1-9][0-9]*)"),
    float: re.compile(r"-?[0-9]+(\.[0-9]+)?"),
}


@dataclass(frozen=True)
class _Param:
    name: str
    type: type
    option: bool
    default: Any  # inspect.Parameter.empty: required
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


def _leaf_type(hint: Any) -> type | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    return hint if hint in _TYPES else None


def _param(meta: ParamMeta) -> _Param | None:
    info, kind = meta.default, _leaf_type(meta.annotation)
    if kind is None or not isinstance(info, (OptionInfo, ArgumentInfo)):
        return None
    plain = type(info)()
    if any(v != getattr(plain, k, None) for k, v in vars(info).items() if k not in _COSMETIC):
        return None
    default = inspect.Parameter.empty if info.default is ... else info.default
    if default not in (inspect.Parameter.empty, None) and type(default) is not kind:
        return None  # typer would convert it
    if isinstance(info, ArgumentInfo):
        return None if kind is bool else _Param(meta.name, kind, False, default)
    flag = "--" + meta.name.replace("_", "-")  # typer's own default names
    decls = info.param_decls or ((f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,))
    names = tuple(d.split("/")[0] for d in decls)
    false_names = tuple(d.split("/", 1)[1] for d in decls if "/" in d)
    if (kind is bool) != (default is False) or (kind is not bool and false_names):
        return None
    if any(not n.startswith("-") or " " in n for n in names + false_names):
        return None
    return _Param(meta.name, kind, True, default, names, false_names)


@cache
def spec(function: Callable[..., Any]) -> tuple[_Param, ...] | None:
    """The parameters of a typer command function, read as typer reads them, or None if
    one is beyond this parser."""
    params = []
    for meta in get_params_from_function(function).values():
        made = _param(meta)
        if made is None:
            return None
        params.append(made)
    return tuple(params)


def _value(param: _Param, text: str) -> Any:
    if text.startswith("-") and param.type is not int and param.type is not float:
        return None  # typer's parser decides whether that is a value
    if param.type in _VALUE and not _VALUE[param.type].fullmatch(text):
        return None
    if param.type is Path and not text:
        return None
    return param.type(text)


def parse_command(params: Sequence[_Param], args: Sequence[str]) -> dict[str, Any] | None:
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
            value = _value(param, attached)
            if value is None:
                return None
            kwargs[param.name] = value
            continue
        if not positional:
            return None
        param = positional.pop(0)
        value = _value(param, arg)
        if value is None:
            return None
        kwargs[param.name] = value
    for param in params:
        if param.name not in kwargs:
            if param.default is inspect.Parameter.empty:
                return None  # typer's "Missing argument" message
            kwargs[param.name] = param.default
    return kwargs


def parse(args: Sequence[str]) -> Call | None:
    """`edge [-q] [-v...] COMMAND ...` as a Call, for the commands of FAST; else None."""
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
    for path, (module_name, attr) in FAST.items():
        if tuple(args[at : at + len(path)]) == path:
            function = getattr(importlib.import_module(f"edge.cli.{module_name}"), attr)
            params = spec(function)
            kwargs = None if params is None else parse_command(params, args[at + len(path) :])
            return None if kwargs is None else Call(function, kwargs, quiet, verbose)
    return None
