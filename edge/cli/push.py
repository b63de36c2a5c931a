"""`edge push MODEL_DIR --to TARGETS`: send what each device lacks, verified, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from edge.cli import quick
from edge.cli._utils import JsonOpt, TargetsOpt


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
    quick.push(model, to, calib, parallel, json_out)
