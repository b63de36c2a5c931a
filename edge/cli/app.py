"""The typer app of every command: the root options and the command groups, loaded for
any command line that edge.cli.quick does not run by itself."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Annotated

import typer

from edge.cli._utils import typer_factory
from edge.cli.main import COMMANDS, HELP, apply_root


def _version(value: bool) -> None:
    if value:
        from device_agent.protocol import PROTOCOL_VERSION
        from edge import __version__

        typer.echo(f"jetson-edge {__version__} (agent protocol {PROTOCOL_VERSION})")
        raise typer.Exit()


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
    apply_root(quiet, verbose)


def build_app(names: Sequence[str] = tuple(COMMANDS)) -> typer.Typer:
    """The root app with the commands and groups `names` (default: all of them)."""
    built = typer_factory(HELP, completion=True)
    built.callback()(root)
    for name in names:
        module_name, help = COMMANDS[name]
        module = importlib.import_module(f"edge.cli.{module_name}")
        if help is None:
            built.add_typer(module.app, name=name)
        elif name == "gc":
            built.command(name=name, help=module.HELP, short_help=help)(module.gc)
        else:
            built.command(name=name, help=help)(getattr(module, name))
    return built
