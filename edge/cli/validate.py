"""`edge validate MODEL CONVERTED --to DEVICES`: same inputs, both models, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from device_agent.protocol import ValidateOptions
from edge.cli._options import parse_input_shapes
from edge.cli._utils import JsonOpt, TargetsOpt, finish_run, progress_sink
from edge.cli.convert import Precision
from edge.fleet.devices import resolve_targets
from edge.ops import measure


def validate(
    model: Annotated[Path, typer.Argument(help="The input (native) SavedModel.")],
    converted: Annotated[Path, typer.Argument(help="The converted SavedModel.")],
    to: TargetsOpt = "local",
    precision: Annotated[
        Precision, typer.Option(case_sensitive=False, help="Picks the default tolerances.")
    ] = Precision.FP32,
    atol: Annotated[Optional[float], typer.Option()] = None,
    rtol: Annotated[Optional[float], typer.Option()] = None,
    samples: Annotated[int, typer.Option(help="Batches of generated inputs.")] = 8,
    calib: Annotated[Optional[Path], typer.Option(help="Use these real samples instead.")] = None,
    input_shape: Annotated[
        Optional[list[str]], typer.Option(help="NAME=DIMS for dynamic dimensions.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare a converted model with its input model: max abs/rel error per output,
    pass/fail (an element fails only beyond both atol and rtol), top-1 agreement."""
    options = ValidateOptions(
        precision=precision.value,
        atol=atol,
        rtol=rtol,
        samples=samples,
        input_shapes=parse_input_shapes(input_shape)[0] if input_shape else {},
    )
    run = measure.validate(
        model,
        converted,
        resolve_targets(to),
        options,
        calib,
        on_event=progress_sink(json_out),
    )
    finish_run("validate", run, model, None, json_out)
