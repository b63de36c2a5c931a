"""`edge info --to DEVICES`: each device's facts."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from edge.cli._utils import (
    JsonOpt,
    LegacyTargetsArg,
    console,
    err_console,
    pick_targets,
    print_json,
    targets_option,
)
from edge.fleet.devices import resolve_targets
from edge.ops.info import gather_facts
from edge.views.tables import facts_table, print_failures


def info(
    legacy: LegacyTargetsArg = None,
    to: Annotated[Optional[str], targets_option("local")] = None,
    deep: Annotated[
        bool,
        typer.Option(
            "--deep", help="Import TensorFlow on the device to report TensorRT support (slower)."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show facts for each device: module, JetPack, memory, disk, TensorFlow. --json is
    one object per device ({device, status, error, hint, facts}) whatever fails; exit 1
    if any device failed."""
    run = gather_facts(resolve_targets(pick_targets(to, legacy, "local") or "local"), deep=deep)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        for r in run.results:
            if r.facts:
                console.print(facts_table(r.device, r.facts))
        print_failures(err_console, run.results)
    if not run.ok:
        raise typer.Exit(1)
