"""`edge agent install --to TARGETS`: ship the agent zipapp where it is missing."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from device_agent import __version__
from edge.cli._utils import (
    JsonOpt,
    LegacyTargetsArg,
    console,
    err_console,
    pick_targets,
    print_json,
    targets_option,
    typer_factory,
)
from edge.fleet.devices import resolve_targets
from edge.ops.agents import install_agents
from edge.views.fleet import agent_install_table
from edge.views.tables import print_failures

app = typer_factory("The on-device agent.")


@app.command()
def install(
    legacy: LegacyTargetsArg = None,
    to: Annotated[Optional[str], targets_option("local")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check each device's Python (3.8+) and numpy; install this agent version if missing."""
    run = install_agents(resolve_targets(pick_targets(to, legacy, "local") or "local"))
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        console.print(agent_install_table(run.results, __version__))
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)
