"""Explicit quantization (Q/DQ) and FP16 for an ONNX model, made on the host.

TensorRT 11 has no calibrator and no FP16/INT8 builder flags: it builds only strongly
typed networks, so INT8 comes as Q/DQ nodes and FP16 as an FP16 graph, both from here.
The Q/DQ form is the one TensorRT consumes: symmetric int8 activations and weights,
per-channel weights, QuantFormat.QDQ (onnxruntime's static quantization, MinMax).
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge.core.errors import EdgeError


def _reader(feed: Mapping[str, np.ndarray], batch: int) -> Any:
    """An onnxruntime CalibrationDataReader over `feed` (axis 0 = samples), `batch` at a time."""
    base: Any = importlib.import_module("onnxruntime.quantization").CalibrationDataReader

    class Reader(base):
        def __init__(self) -> None:
            self.batches = self._batches()

        def _batches(self) -> Iterator[dict[str, np.ndarray]]:
            n = len(next(iter(feed.values())))
            for lo in range(0, n, batch):
                yield {k: np.ascontiguousarray(v[lo : lo + batch]) for k, v in feed.items()}

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

        def rewind(self) -> None:
            self.batches = self._batches()

    return Reader()


def quantize_qdq(fp32: Path, out: Path, feed: Mapping[str, np.ndarray], batch: int = 8) -> int:
    """Write the Q/DQ INT8 model of `fp32` to `out`, calibrated on `feed` (the calibration
    samples, as the ONNX model takes them). Returns the number of QuantizeLinear nodes."""
    import onnx

    q = importlib.import_module("onnxruntime.quantization")
    quant_pre_process = importlib.import_module(
        "onnxruntime.quantization.shape_inference"
    ).quant_pre_process

    with tempfile.TemporaryDirectory(prefix="edge-qdq-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference + graph clean-up: what onnxruntime asks for before quantizing
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        except Exception:  # an optional step: quantize the model as exported
            prepared = fp32
        try:
            q.quantize_static(
                str(prepared),
                str(out),
                _reader(feed, batch),
                quant_format=q.QuantFormat.QDQ,
                activation_type=q.QuantType.QInt8,
                weight_type=q.QuantType.QInt8,
                per_channel=True,
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
            )
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EdgeError(
                f"onnxruntime cannot quantize the model: {first[:300]}",
                "Export without --int8, and use the device's INT8 calibrator (TensorRT 8.5-10).",
            ) from exc
    model = onnx.load(str(out), load_external_data=False)
    count = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")
    if count == 0:
        raise EdgeError(
            "onnxruntime inserted no Q/DQ nodes: the model has no op it quantizes.",
            "Export it without --int8 (FP32 or --fp16).",
        )
    return count


def to_fp16(proto: Any) -> Any:
    """The FP16 copy of an ONNX ModelProto with its inputs and outputs kept in FP32
    (keep_io_types), for TensorRT 11's strongly typed networks."""
    float16 = importlib.import_module("onnxruntime.transformers.float16")
    return float16.convert_float_to_float16(proto, keep_io_types=True)
