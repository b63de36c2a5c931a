"""`edge validate MODEL CONVERTED --to DEVICES`: same inputs, both models, compare."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from device_agent.protocol import ValidateOptions

from .. import jobs
from ..devices import resolve_targets
from ..history import record_runs
from ..render import print_failures
from ..untrusted import safe_text
from ._options import parse_input_shapes
from ._utils import JsonOpt, TargetsOpt, console, err_console, print_json
from .convert import Precision
from .progress import event_printer


def validate(
    model: Annotated[Path, typer.Argument(help="The input (native) SavedModel.")],
    converted: Annotated[Path, typer.Argument(help="The converted SavedModel.")],
    to: TargetsOpt = "local",
    precision: Annotated[Precision, typer.Option(case_sensitive=False, help="Picks the "
                                                 "default tolerances.")] = Precision.FP32,
    atol: Annotated[Optional[float], typer.Option()] = None,
    rtol: Annotated[Optional[float], typer.Option()] = None,
    samples: Annotated[int, typer.Option(help="Batches of generated inputs.")] = 8,
    calib: Annotated[Optional[Path], typer.Option(help="Use these real samples instead.")
                     ] = None,
    input_shape: Annotated[Optional[list[str]], typer.Option(help="NAME=DIMS for dynamic "
                                                             "dimensions.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare a converted model with its input model: max abs/rel error per output,
    pass/fail (an element fails only beyond both atol and rtol), top-1 agreement."""
    options = ValidateOptions(precision=precision.value, atol=atol, rtol=rtol, samples=samples,
                              input_shapes=parse_input_shapes(input_shape)[0]
                              if input_shape else {})
    run = jobs.validate(model, converted, resolve_targets(to), options, calib,
                        on_event=None if json_out else event_printer(err_console))
    stored = record_runs("validate", run.results, model, run.model_digest, None)
    if json_out:
        print_json([r.to_dict() for r in run.results])
    else:
        t = Table(title="Validation")
        for col in ("device", "output", "max abs err", "max rel err", "mismatched", "top-1",
                    "result"):
            t.add_column(col)
        for r in run.results:
            v = r.validation
            for name, o in (v.outputs.items() if v else []):
                t.add_row(safe_text(r.device), safe_text(name), f"{o.max_abs_err:.3g}",
                          f"{o.max_rel_err:.3g}",
                          f"{o.mismatched}/{o.elements}",
                          "-" if o.top1_agreement is None else f"{o.top1_agreement:.1%}",
                          "[green]pass[/]" if o.passed else "[red]FAIL[/]")
            if v:
                t.caption = safe_text(f"{v.precision}: atol {v.atol:g}, rtol {v.rtol:g}; "
                                      f"inputs {v.inputs_from}, {v.samples} samples")
        console.print(t)
        print_failures(err_console, run.results)
        err_console.print(f"recorded as {', '.join(r.run_id for r in stored)} "
                          "(edge runs show ID)", style="dim")
    if not run.ok or any(r.validation and not r.validation.passed for r in run.results):
        raise typer.Exit(1)
