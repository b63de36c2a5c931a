"""`edge info [DEVICE]`: a device's facts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from device_agent.protocol import SUCCEEDED, DeviceFacts, DeviceResult
from edge.cli._utils import JsonOpt, console, err_console, print_json
from edge.fleet.devices import Device, resolve_targets
from edge.fleet.group import fan_out
from edge.ops.info import device_facts
from edge.views.tables import facts_table, print_failures


@dataclass
class _Info(DeviceResult):
    facts: DeviceFacts | None = None


def info(
    device: Annotated[str, typer.Argument(help="Device name (default: local).")] = "local",
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="Import TensorFlow on the device to report TensorRT support (slower)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show facts for each device: module, JetPack, memory, disk, TensorFlow."""
    devices = resolve_targets(device)
    if len(devices) == 1:  # one device: its error is the command's error
        facts = device_facts(devices[0], deep=deep)
        if json_out:
            print_json(facts.to_dict() | {"device": devices[0].name})
        else:
            console.print(facts_table(devices[0].name, facts))
        return

    def work(d: Device) -> _Info:
        return _Info(d.name, SUCCEEDED, facts=device_facts(d, deep=deep))

    # Every device's facts, in target order; a device that fails does not hide the others.
    run = fan_out(devices, work, _Info)
    if json_out:
        print_json(
            [
                r.facts.to_dict() | {"device": r.device}
                if r.facts
                else {"device": r.device, "status": r.status, "error": r.error, "hint": r.hint}
                for r in run.results
            ]
        )
    else:
        for r in run.results:
            if r.facts:
                console.print(facts_table(r.device, r.facts))
        print_failures(err_console, run.failed)
    if not run.ok:
        raise typer.Exit(1)
