"""`edge jobs ls|attach|logs|cancel`: jobs that run detached on devices."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from device_agent.protocol import JobState

from ..connect import open_client
from ..devices import Device, resolve_targets
from ..errors import DeviceError
from ..fleet_run import fan_out
from ..jobs import follow_to_end
from ..render import RESULT_VIEWS, print_failures, result_view
from ..untrusted import clean, safe_text
from ._utils import JsonOpt, any_failed, console, err_console, print_json, typer_factory
from .progress import event_printer

app = typer_factory("Jobs on devices: list, attach to, read the log of, cancel.")


@dataclass
class Listing:
    """The jobs of one device (or why they could not be listed)."""

    device: str
    status: str
    jobs: list[JobState] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None

TargetsArg = Annotated[Optional[str], typer.Argument(
    help="Devices (names, tag:NAME, all, local); default: every device and local.")]
DeviceOpt = Annotated[Optional[str], typer.Option("--to", "-t", help="The device running the "
                                                  "job (default: search every device).")]


def _targets(targets: str | None) -> list[Device]:
    if targets:
        return resolve_targets(targets)
    try:
        return resolve_targets("local,all")
    except DeviceError:  # an empty inventory
        return resolve_targets("local")


def _find(job_id: str, to: str | None) -> Device:
    """The device that holds `job_id`."""
    for device in _targets(to):
        try:
            with open_client(device) as client:
                client.status(job_id)
                return device
        except DeviceError:
            continue
    raise DeviceError(f"No device has a job {job_id!r}.",
                      "List jobs with: edge jobs ls (and pass --to DEVICE).")


@app.command("ls")
def ls(targets: TargetsArg = None, json_out: JsonOpt = False) -> None:
    """List jobs on devices, newest last."""
    devices = _targets(targets)

    def work(device: Device) -> Listing:
        with open_client(device) as client:
            return Listing(device.name, "succeeded", client.jobs())

    run = fan_out(devices, work, lambda d, e: Listing(d.name, "failed", [], e.message, e.hint))
    if json_out:
        print_json([{"device": r.device, **j.to_dict()} for r in run.results for j in r.jobs])
    else:
        t = Table(title="Jobs")
        for col in ("device", "job", "kind", "status", "age", "error"):
            t.add_column(col)
        now = time.time()
        for r in run.results:
            for j in r.jobs:
                t.add_row(*(safe_text(c) for c in (r.device, j.job_id, j.kind, j.status)),
                          f"{(now - j.created_at) / 60:.0f} min", safe_text((j.error or "")[:60]))
        console.print(t)
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
            raise DeviceError(f"{device.name}: job {job_id} is of unknown kind {kind!r}",
                              f"Reinstall the device's agent: edge agent install {device.name}")
        result = follow_to_end(client, kind, job_id,
                               None if json_out else event_printer(err_console))
    if json_out:
        print_json([result.to_dict()])
    else:
        console.print(result_view(kind, [result]))  # what the command that ran it printed
        print_failures(err_console, [result])
    if any_failed([result]):
        raise typer.Exit(1)


@app.command()
def logs(job_id: str, to: DeviceOpt = None,
         tail: Annotated[int, typer.Option(help="Last N lines (0: all).")] = 0) -> None:
    """Print a job's worker log."""
    device = _find(job_id, to)
    with open_client(device) as client, tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "worker.log"
        client.transport.download(client.path("jobs", job_id, "worker.log"), local)
        lines = local.read_text(errors="replace").splitlines()
    for line in lines[-tail:] if tail else lines:
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
        console.print(safe_text(f"{device.name}: job {job_id} is {state.status}"),
                      highlight=False)
