"""`edge agent install [TARGETS]`: ship the agent zipapp where it is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer
from rich.table import Table

from device_agent import __version__
from device_agent.protocol import JsonMixin

from ..connect import open_client
from ..devices import Device, resolve_targets
from ..fleet_run import fan_out
from ..render import print_failures
from ..untrusted import safe_text
from ._utils import JsonOpt, console, err_console, print_json, typer_factory

app = typer_factory("The on-device agent.")


@dataclass
class AgentInstall(JsonMixin):
    device: str
    status: str
    agent_version: str = __version__
    python: str | None = None
    numpy: str | None = None
    installed: bool = False
    error: str | None = None
    hint: str | None = None


@app.command()
def install(
    targets: Annotated[str, typer.Argument(help="Devices (names, tag:NAME, all, local).")
                       ] = "local",
    json_out: JsonOpt = False,
) -> None:
    """Check each device's Python (3.8+) and numpy; install this agent version if missing."""

    def work(device: Device) -> AgentInstall:
        with open_client(device) as client:
            check = client.ensure_agent()
            return AgentInstall(device.name, "succeeded", python=check.python,
                                numpy=check.numpy, installed=check.installed)

    run = fan_out(resolve_targets(targets), work,
                  lambda d, e: AgentInstall(d.name, "failed", error=e.message, hint=e.hint))
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        t = Table(title=f"Agent {__version__}")
        for col in ("device", "status", "python", "numpy", "action"):
            t.add_column(col)
        for r in run.results:
            t.add_row(*(safe_text(c) for c in (r.device, r.status, r.python or "-",
                                               r.numpy or "missing")),
                      "installed" if r.installed else ("up to date" if r.python else "-"))
        console.print(t)
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)
