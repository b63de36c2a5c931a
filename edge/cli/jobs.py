"""`edge jobs ls|attach|logs|cancel`: jobs that run detached on devices."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.agent.follow import follow_to_end
from edge.agent.sessions import open_client
from edge.cli._utils import (
    JsonOpt,
    LegacyTargetsArg,
    any_failed,
    console,
    err_console,
    pick_targets,
    print_json,
    progress_sink,
    targets_option,
    typer_factory,
)
from edge.core.errors import DeviceError
from edge.core.untrusted import clean, safe_text
from edge.fleet.devices import Device, resolve_targets
from edge.ops.joblist import find_job, list_jobs
from edge.views.fleet import jobs_table
from edge.views.tables import RESULT_VIEWS, print_failures, result_view

app = typer_factory("Jobs on devices: list, attach to, read the log of, cancel.")


TargetsOpt = Annotated[Optional[str], targets_option("every device and local")]
# the device running the job: searched for on the targets
DeviceOpt = Annotated[Optional[str], targets_option("search every device and local")]


def _targets(targets: str | None) -> list[Device]:
    if targets:
        return resolve_targets(targets)
    try:
        return resolve_targets("local,all")
    except DeviceError:  # an empty inventory
        return resolve_targets("local")


def _find(job_id: str, to: str | None) -> Device:
    """The device that holds `job_id`."""
    return find_job(job_id, _targets(to))


@app.command("ls")
def ls(legacy: LegacyTargetsArg = None, to: TargetsOpt = None, json_out: JsonOpt = False) -> None:
    """List jobs on devices, newest last."""
    run = list_jobs(_targets(pick_targets(to, legacy, None)))
    if json_out:
        print_json([{"device": r.device, **j.to_dict()} for r in run.results for j in r.jobs])
    else:
        console.print(jobs_table(run.results))
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)


@app.command()
def attach(job_id: str, to: DeviceOpt = None, json_out: JsonOpt = False) -> None:
    """Follow a job to its end (from the start of its events) and show its result."""
    device = _find(job_id, to)
    with open_client(device) as client:
        kind = client.status(job_id).kind
        if kind not in RESULT_VIEWS:
            raise DeviceError(
                f"{device.name}: job {job_id} is of unknown kind {kind!r}",
                f"Reinstall the device's agent: edge agent install --to {device.name}",
            )
        result = follow_to_end(client, kind, job_id, progress_sink(json_out))
    if json_out:
        print_json([result.to_dict()])
    else:
        console.print(result_view(kind, [result]))  # what the command that ran it printed
        print_failures(err_console, [result])
    if any_failed([result]):
        raise typer.Exit(1)


@app.command()
def logs(
    job_id: str,
    to: DeviceOpt = None,
    tail: Annotated[int, typer.Option(help="Last N lines (0: all).")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Print a job's worker log."""
    device = _find(job_id, to)
    with open_client(device) as client, tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "worker.log"
        client.transport.download(client.path("jobs", job_id, "worker.log"), local)
        lines = local.read_text(errors="replace").splitlines()
    shown = lines[-tail:] if tail else lines
    if json_out:
        print_json({"device": device.name, "job_id": job_id, "lines": [clean(s) for s in shown]})
        return
    for line in shown:
        typer.echo(clean(line))


@app.command()
def cancel(job_id: str, to: DeviceOpt = None, json_out: JsonOpt = False) -> None:
    """Cancel a queued or running job."""
    device = _find(job_id, to)
    with open_client(device) as client:
        state = client.cancel(job_id)
    if json_out:
        print_json({"device": device.name, **state.to_dict()})
    else:
        console.print(safe_text(f"{device.name}: job {job_id} is {state.status}"), highlight=False)
