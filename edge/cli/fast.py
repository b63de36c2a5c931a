"""The quick commands' parameters as typer reads them from their declarations (None where
a declaration is beyond edge.cli.quick's parser). edge.cli.quick declares the same
parameters for itself, so as to run without typer; a test checks that the two agree."""

from __future__ import annotations

import typing
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from typer.models import ArgumentInfo, OptionInfo, ParamMeta
from typer.utils import get_params_from_function

from edge.cli.quick import REQUIRED, Param

# command path -> (module in edge.cli, the typer command's function)
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


def _leaf_type(hint: Any) -> type | None:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    return hint if hint in _TYPES else None


def _param(meta: ParamMeta) -> Param | None:
    info, kind = meta.default, _leaf_type(meta.annotation)
    if kind is None or not isinstance(info, (OptionInfo, ArgumentInfo)):
        return None
    plain = type(info)()
    if any(v != getattr(plain, k, None) for k, v in vars(info).items() if k not in _COSMETIC):
        return None
    default = REQUIRED if info.default is ... else info.default
    if default is not REQUIRED and default is not None and type(default) is not kind:
        return None  # typer would convert it
    if isinstance(info, ArgumentInfo):
        return None if kind is bool else Param(meta.name, kind, False, default)
    flag = "--" + meta.name.replace("_", "-")  # typer's own default names
    decls = info.param_decls or ((f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,))
    names = tuple(d.split("/")[0] for d in decls)
    false_names = tuple(d.split("/", 1)[1] for d in decls if "/" in d)
    if (kind is bool) != (default is False) or (kind is not bool and false_names):
        return None
    if any(not n.startswith("-") or " " in n for n in names + false_names):
        return None
    return Param(meta.name, kind, True, default, names, false_names)


@cache
def spec(function: Callable[..., Any]) -> tuple[Param, ...] | None:
    """The parameters of a typer command function, read as typer reads them, or None if
    one is beyond this parser."""
    params = []
    for meta in get_params_from_function(function).values():
        made = _param(meta)
        if made is None:
            return None
        params.append(made)
    return tuple(params)
