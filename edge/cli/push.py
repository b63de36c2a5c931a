"""`edge push MODEL_DIR --to TARGETS`: send what each device lacks, verified, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.cli._utils import JsonOpt, TargetsOpt, console, err_console, output, print_json
from edge.fleet.devices import resolve_targets
from edge.ops import push as push_lib
from edge.ops.push import check_saved_model


def push(
    model: Annotated[Path, typer.Argument(help="SavedModel directory to push.")],
    to: TargetsOpt = "local",
    calib: Annotated[
        Optional[Path],
        typer.Option(help="Calibration data (.npz, or a directory of .npy) to push too."),
    ] = None,
    parallel: Annotated[int, typer.Option(help="Devices pushed at once.")] = 8,
    json_out: JsonOpt = False,
) -> None:
    """Push a SavedModel (and calibration data) to devices; only missing bytes travel."""
    devices = resolve_targets(to)
    model = check_saved_model(model)
    runs = []
    for source, kind in ((model, "model"), (calib, "calib")):
        if source is None:
            continue
        if json_out or output.quiet or not console.is_terminal:
            runs.append(push_lib.push(source, devices, kind, None, parallel))
        else:
            from edge.views.progress import PushBars  # rich: only where bars are drawn

            with PushBars(err_console) as bars:
                runs.append(push_lib.push(source, devices, kind, bars, parallel))
    results = [r for run in runs for r in run.results]
    if json_out:
        print_json([r.to_dict() for r in results])
    else:
        from edge.views.tables import print_failures, push_table

        console.print(push_table(results))
        print_failures(err_console, results)
    if not all(run.ok for run in runs):
        raise typer.Exit(1)
