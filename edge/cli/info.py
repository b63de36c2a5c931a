"""`edge info [DEVICE]`: a device's facts."""

from __future__ import annotations

from typing import Annotated

import typer

from ..devices import resolve_targets
from ..facts import device_facts
from ..render import facts_table
from ._utils import JsonOpt, console, print_json


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
    facts = [(d.name, device_facts(d, deep=deep)) for d in devices]
    if json_out:
        out = [f.to_dict() | {"device": name} for name, f in facts]
        print_json(out[0] if len(out) == 1 else out)
        return
    for name, f in facts:
        console.print(facts_table(name, f))
