"""The ONNX a device's tensorrt plan asks for, exported once per command and pushed.

A device that plans the tensorrt backend answers with an `OnnxRequest` (opset for its
TensorRT, Q/DQ for explicit INT8, FP16 for TensorRT 11, NCHW inputs). Devices that ask
the same get the same export: it is made once (and the export cache makes a later command
with the same model and options skip it too), validated against TensorFlow on the host,
and pushed like any model, as a directory of `model.onnx` and `nodes.json` (each node's
name and op type, which TensorRT 8's parser errors do not give).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from device_agent.protocol import ConvertOptions
from device_agent.trt_types import OnnxRequest
from edge.ops.export import ExportOptions, ExportResult, export_onnx
from edge.ops.push import Payload, make_payload


@dataclass
class OnnxExports:
    """The exports of one `edge convert`, by request; thread-safe (devices plan at once).
    `max_accuracy_drop` refuses an INT8 export that loses more (top-1 agreement)."""

    model: Path
    calib: Path | None
    options: ConvertOptions
    work_dir: Path
    max_accuracy_drop: float | None = None
    results: dict[str, ExportResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _payloads: dict[str, Payload] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _reference: Payload | None = None
    _reference_lock: threading.Lock = field(default_factory=threading.Lock)

    def reference_payload(self, samples: int = 8) -> Payload:
        """`reference_payload` for this command's model, made on first use."""
        with self._reference_lock:
            if self._reference is None:
                self._reference = reference_payload(
                    self.model, self.calib, self.options, self.work_dir, samples
                )
                self.notes.append(f"reference outputs: TensorFlow on the host, {samples} samples")
            return self._reference

    def payload(self, request: OnnxRequest) -> Payload:
        """The pushed form of the export `request` names, made on first use."""
        key = request.key()
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._payloads:
                self._payloads[key] = self._make(key, request)
            return self._payloads[key]

    def _make(self, key: str, request: OnnxRequest) -> Payload:
        import onnx

        out_dir = self.work_dir / key
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / "model.onnx"
        result = export_onnx(
            self.model,
            target,
            ExportOptions(
                opset=request.opset,
                nchw_inputs=list(request.nchw),
                int8=request.quantize,
                calib=self.calib,
                fp16=request.fp16,
                max_accuracy_drop=self.max_accuracy_drop,
                signature_key=self.options.signature_key,
                tags=list(self.options.tags),
            ),
        )
        self.results[key] = result
        if result.accuracy_delta is not None:
            self.notes.append(
                f"ONNX {key}: INT8 top-1 agreement with FP32 "
                f"{result.accuracy_delta.get('top1_agreement')}, "
                f"drop {result.accuracy_delta.get('drop')}"
            )
        self.notes.append(
            f"ONNX {key}: max abs err {result.validation.max_abs_err:.3g} vs TensorFlow on "
            f"{result.validation.samples} samples" + (" (cached)" if result.cached else "")
        )
        graph = onnx.load(str(target), load_external_data=False).graph
        nodes = [[n.name, n.op_type] for n in graph.node]
        (out_dir / "nodes.json").write_text(json.dumps(nodes))
        return make_payload(out_dir)


def reference_payload(
    model: Path, calib: Path | None, options: ConvertOptions, work_dir: Path, samples: int = 8
) -> Payload:
    """Reference outputs for validating an engine on a board that may have no TensorFlow:
    the SavedModel run here on the calibration samples (else generated inputs), as
    `reference.npz` (`in.NAME` and `out.NAME` arrays, one row a sample)."""
    import tempfile

    import numpy as np
    import tensorflow as tf

    from device_agent.savedmodel_meta import read_signature
    from edge.ops import onnx_export as ox
    from edge.ops.export import _samples

    key, tags = options.signature_key, list(options.tags)
    inputs = read_signature(str(model), key, tags).inputs
    wanted = ExportOptions(calib=calib, signature_key=key, tags=tags, validate_samples=samples)
    with tempfile.TemporaryDirectory(prefix="edge-reference-") as tmp:
        feeds, _ = _samples(model, wanted, inputs, tmp)
    feeds = {k: v[:samples] for k, v in feeds.items()}
    fn = tf.saved_model.load(str(model), tags=tags).signatures[key]
    outputs = ox.run_tensorflow(fn, feeds)
    out_dir = work_dir / "reference"
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {f"in.{k}": np.asarray(v) for k, v in feeds.items()}
    arrays.update({f"out.{k}": np.asarray(v) for k, v in outputs.items()})
    np.savez(out_dir / "reference.npz", **arrays)
    return make_payload(out_dir, "calib")
