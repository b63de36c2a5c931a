"""How the tensorrt backend's answers read: the device's TensorRT stack, the engine build
a device plans, and what the build did. Every string is the device's: shown through
`safe_text`."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from device_agent.protocol import ConversionSummary
from device_agent.trt_types import Capabilities, ShapeRange, TrtBuild, TrtPlan
from edge.core.untrusted import safe_text
from edge.views.layout import FitTable


def _dims(dims: Sequence[int]) -> str:
    return "x".join(str(d) for d in dims)


def profile_text(profiles: Sequence[dict[str, ShapeRange]]) -> str:
    """`x 1x224x224x3..8x224x224x3 (opt 8x...)`, one profile per line."""
    lines = []
    for i, profile in enumerate(profiles):
        parts = []
        for name, r in sorted(profile.items()):
            if r.min == r.max:
                parts.append(f"{name} {_dims(r.opt)}")
            else:
                parts.append(f"{name} {_dims(r.min)}..{_dims(r.max)} (opt {_dims(r.opt)})")
        lines.append(f"#{i} " + ", ".join(parts))
    return "\n".join(lines) or "-"


def capability_rows(caps: Capabilities) -> list[tuple[str, str]]:
    """Rows for `info --deep`: the TensorRT stack and each backend's answer."""
    rows = [
        ("tensorrt module", caps.tensorrt or "not installed"),
        ("TF-TRT", ("loads: " if caps.tftrt else "no: ") + caps.tftrt_reason),
        ("pycuda", caps.pycuda or "not installed"),
        ("DLA cores", "?" if caps.dla_cores is None else str(caps.dla_cores)),
        ("trtexec", caps.trtexec or "not found"),
        ("CUDA", caps.cuda or "not found"),
    ]
    for b in caps.backends:
        rows.append((f"backend {b.backend}", ("yes: " if b.available else "no: ") + b.reason))
    return rows


def backends_cell(caps: Capabilities | None) -> str:
    """The backends a device can run, for one table cell."""
    if caps is None:
        return "-"
    return " ".join(b.backend for b in caps.backends if b.available) or "none"


def plan_rows(trt: TrtPlan) -> list[tuple[str, str]]:
    """Rows of a dry run's plan for the tensorrt backend."""
    onnx = trt.onnx
    rows = [
        ("TensorRT", trt.version),
        ("precision", trt.precision + (f" ({trt.int8_mode})" if trt.int8_mode else "")),
        ("network", "strongly typed" if trt.strongly_typed else "weakly typed (builder flags)"),
        (
            "ONNX export",
            f"opset {onnx.opset}"
            + (", Q/DQ" if onnx.quantize else "")
            + (", FP16" if onnx.fp16 else "")
            + (f", NCHW {', '.join(onnx.nchw)}" if onnx.nchw else "")
            if onnx
            else "-",
        ),
        ("profiles", f"{trt.profile_strategy}:\n{profile_text(trt.profiles)}"),
        ("DLA core", "-" if trt.dla_core is None else f"{trt.dla_core} (GPU fallback)"),
    ]
    if trt.optimization_level is not None:
        rows.append(("optimization level", str(trt.optimization_level)))
    if trt.fp32_layers:
        rows.append(("FP32 layers", ", ".join(trt.fp32_layers)))
    return rows


def build_table(device: str, build: TrtBuild, summary: ConversionSummary | None) -> Table:
    """One device's engine build: what TensorRT was asked and what it made."""
    t = FitTable(title=safe_text(f"{device}: TensorRT {build.version} engine"), show_header=False)
    t.column("what", style="bold").column("value", "text")
    rows = [
        ("precision", build.precision + (f" ({build.int8_mode})" if build.int8_mode else "")),
        ("builder flags", ", ".join(build.builder_flags) or "-"),
        ("workspace", f"{build.workspace_bytes / 2**20:.0f} MiB" if build.workspace_bytes else "-"),
        ("profiles", profile_text(build.profiles)),
        ("DLA core", "-" if build.dla_core is None else str(build.dla_core)),
        ("timing cache", build.timing_cache or "-"),
        ("engine", f"{build.engine_bytes / 2**20:.1f} MiB in {build.build_seconds:.1f}s"),
    ]
    if build.calibration_cache:
        rows.append(("calibration cache", build.calibration_cache))
    if summary is not None and summary.layers_total is not None:
        rows.append(
            (
                "layers",
                f"{summary.layers_total} ({summary.layers_at_precision} at "
                f"{build.precision}, {summary.layers_on_dla or 0} on DLA)",
            )
        )
        for r in summary.parser_rejected[:10]:
            rows.append(("parser rejected", f"{r.node} ({r.op}): {r.reason}"))
    for k, v in rows:
        t.add_row(k, safe_text(v))
    return t
