"""`edge mux start|stop|status`: keep SSH connections warm across commands."""

from __future__ import annotations

from typing import Annotated

import typer

from edge.cli._utils import JsonOpt, console, print_json, typer_factory

app = typer_factory("Connection multiplexer (like ControlPersist): warm SSH across commands.")


@app.command()
def start(
    idle: Annotated[float, typer.Option(help="Exit after this many idle seconds.")] = 600.0,
    json_out: JsonOpt = False,
) -> None:
    """Start the multiplexer; later `edge` commands reuse its connections."""
    from edge.transport import mux

    pid = mux.start(idle)
    if json_out:
        print_json({"started": bool(pid), "pid": pid or None, "socket": str(mux.socket_path())})
        return
    console.print(
        f"multiplexer {'started (pid ' + str(pid) + ')' if pid else 'already running'}"
        f" on {mux.socket_path()}",
        highlight=False,
    )


@app.command()
def stop(json_out: JsonOpt = False) -> None:
    """Stop the multiplexer and close its connections."""
    from edge.transport import mux

    stopped = mux.stop()
    if json_out:
        print_json({"stopped": bool(stopped)})
    else:
        console.print("stopped" if stopped else "not running")


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """Whether the multiplexer runs, and where its socket is."""
    from edge.transport import mux

    info = mux.state()  # refuses (an error with a hint) a socket that is not the user's own
    if json_out:
        print_json(info)
    else:
        what = (
            f"running (pid {info['pid']}, {info['active']} requests in flight)"
            if info["running"]
            else "not running"
        )
        console.print(f"{what} ({info['socket']})", highlight=False)
