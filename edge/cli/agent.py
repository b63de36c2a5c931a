"""`edge agent install [TARGETS]`: ship the agent zipapp where it is missing."""

from __future__ import annotations

from typing import Annotated

import typer

from device_agent import __version__
from edge.cli._utils import JsonOpt, console, err_console, print_json, typer_factory
from edge.fleet.devices import resolve_targets
from edge.ops.agents import install_agents
from edge.views.fleet import agent_install_table
from edge.views.tables import print_failures

app = typer_factory("The on-device agent.")


@app.command()
def install(
    targets: Annotated[
        str, typer.Argument(help="Devices (names, tag:NAME, all, local).")
    ] = "local",
    json_out: JsonOpt = False,
) -> None:
    """Check each device's Python (3.8+) and numpy; install this agent version if missing."""
    run = install_agents(resolve_targets(targets))
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        console.print(agent_install_table(run.results, __version__))
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)
