"""`edge export MODEL --format onnx --out FILE`: SavedModel -> ONNX on the host, checked
with onnxruntime against TensorFlow (and Q/DQ INT8 or FP16 on request)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from edge.cli._utils import JsonOpt, console, print_json
from edge.core.untrusted import safe_text
from edge.ops.export import ExportOptions, ExportResult, export_onnx


class Format(str, Enum):
    onnx = "onnx"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1e-2 and value else f"{value:.{digits}f}"


def _shape(shape: list[int | None]) -> str:
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def export_table(r: ExportResult) -> Table:
    """The result as a two-column table (fits 80 columns)."""
    t = Table(title="ONNX export", show_header=False)
    t.add_column("", style="bold")
    t.add_column("", overflow="fold", max_width=60)
    t.add_row("output", safe_text(r.output))
    t.add_row(
        "opset / precision", f"{r.opset} / {r.precision}" + (" (Q/DQ)" if r.quantized else "")
    )
    for kind, tensors in (("input", r.inputs), ("output", r.outputs)):
        for i in tensors:
            t.add_row(kind, f"{safe_text(i.name)} {i.dtype} {_shape(i.shape)}")
    v = r.validation
    t.add_row(
        "vs TensorFlow",
        f"abs {_num(v.max_abs_err)}, rel {_num(v.max_rel_err)}, "
        f"top-1 {_num(v.top1_agreement)}, {v.samples} samples",
    )
    if r.accuracy_delta:
        d = r.accuracy_delta
        t.add_row(
            "INT8 vs FP32",
            f"top-1 {_num(d['top1_agreement'])}, drop {_num(d['drop'])}, "
            f"abs {_num(d['max_abs_err'])}, {d['samples']} samples",
        )
    t.add_row("time", f"{r.seconds:.1f} s" + (" (cached)" if r.cached else ""))
    return t


def export(
    model: Annotated[Path, typer.Argument(help="SavedModel directory on this machine.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The ONNX file to write.")],
    format: Annotated[Format, typer.Option("--format", help="Export format.")] = Format.onnx,
    opset: Annotated[
        Optional[int],
        typer.Option(help="ONNX opset (default: 17, or the highest --tensorrt reads)."),
    ] = None,
    tensorrt: Annotated[
        Optional[str],
        typer.Option(help="Target TensorRT version (e.g. 8.5, 10.3) for the default opset."),
    ] = None,
    nchw: Annotated[
        Optional[list[str]],
        typer.Option("--nchw", help="An NHWC input to take as NCHW; repeat per input."),
    ] = None,
    int8: Annotated[bool, typer.Option("--int8", help="Insert Q/DQ (needs --calib).")] = False,
    calib: Annotated[
        Optional[Path], typer.Option(help="Calibration data: .npz or a dir of <input>.npy.")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 graph, FP32 I/O.")] = False,
    max_accuracy_drop: Annotated[
        Optional[float],
        typer.Option(
            help="Refuse INT8 when its drop vs FP32 exceeds this: 1 - top-1 agreement "
            "(the max relative error for outputs without classes)."
        ),
    ] = None,
    signature: Annotated[str, typer.Option(help="Signature key.")] = "serving_default",
    samples: Annotated[int, typer.Option(help="Samples to validate on.")] = 8,
    json_out: JsonOpt = False,
) -> None:
    """Export a SavedModel to ONNX and validate it with onnxruntime against TensorFlow."""
    options = ExportOptions(
        opset=opset,
        nchw_inputs=list(nchw or []),
        int8=int8,
        calib=calib,
        fp16=fp16,
        max_accuracy_drop=max_accuracy_drop,
        signature_key=signature,
        validate_samples=samples,
        tensorrt=tensorrt,
    )
    result = export_onnx(model, out, options)
    if json_out:
        print_json(result.to_dict())
    else:
        console.print(export_table(result))
