"""SavedModel -> ONNX with tf2onnx, and the comparisons that check an ONNX model.

The conversion takes the SavedModel's serving signature (tf2onnx's saved-model loader,
which freezes the signature's concrete function) and keeps the signature's input and
output names in the ONNX graph. TensorFlow, tf2onnx, onnx and onnxruntime are imported
lazily: `edge` itself imports without them (they are the `tf` extra).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_agent.protocol import TensorInfo
from edge.core.errors import EdgeError

# What tf2onnx 1.17 emits at most (its constants.OPSET_TO_IR_VERSION ends at 18).
TF2ONNX_MAX_OPSET = 18
MIN_OPSET = 13  # per-channel Q/DQ (the form TensorRT takes) needs opset 13

_TF_HINT = "Install the host's export tools: pip install 'jetson-edge[tf]'."


def opset_for_tensorrt(version: str) -> int:
    """The highest ONNX opset that both tf2onnx 1.17 writes and the ONNX parser of
    TensorRT `version` ("8.5.2", "10.3", "11.4.0.106") reads:

    - 8.5 and 8.6: 17 (their onnx-tensorrt parsers stop at opset 17);
    - 10.x and 11.x: 18, tf2onnx's maximum (the parsers read newer opsets too).

    Older TensorRT lines are refused (the agent targets JetPack 5.1 and newer)."""
    parts = version.strip().split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise EdgeError(
            f"{version!r} is not a TensorRT version.", "Give it as MAJOR.MINOR, e.g. 10.3."
        ) from None
    if (major, minor) in ((8, 5), (8, 6)):
        return 17
    if major in (10, 11):
        return TF2ONNX_MAX_OPSET
    raise EdgeError(
        f"TensorRT {version} is not supported by the ONNX export.",
        "Supported lines: 8.5, 8.6, 10.x, 11.x (JetPack 5.1 and newer); or pass --opset N.",
    )


@dataclass
class OutputCompare:
    """One output of two models compared on the same inputs."""

    max_abs_err: float
    max_rel_err: float  # max |a - b| / max |reference| (the output's own scale)
    top1_agreement: float | None  # argmax on the last axis; None for 1-class outputs


@dataclass
class Comparison:
    """Two models on the same samples: the worst output, and each output."""

    max_abs_err: float
    max_rel_err: float
    top1_agreement: float | None
    samples: int
    per_output: dict[str, OutputCompare] = field(default_factory=dict)


def compare_outputs(
    got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray], samples: int
) -> Comparison:
    """Compare outputs `got` against the reference `want` (the same keys)."""
    per: dict[str, OutputCompare] = {}
    for name in sorted(want):
        ref = np.asarray(want[name], dtype=np.float64)
        out = np.asarray(got[name], dtype=np.float64).reshape(ref.shape)
        diff = float(np.max(np.abs(out - ref))) if ref.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        top1 = None
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            top1 = float(np.mean(np.argmax(out, axis=-1) == np.argmax(ref, axis=-1)))
        per[name] = OutputCompare(diff, diff / scale if scale > 0 else diff, top1)
    tops = [c.top1_agreement for c in per.values() if c.top1_agreement is not None]
    return Comparison(
        max_abs_err=max((c.max_abs_err for c in per.values()), default=0.0),
        max_rel_err=max((c.max_rel_err for c in per.values()), default=0.0),
        top1_agreement=min(tops) if tops else None,
        samples=samples,
        per_output=per,
    )


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """Collect tf2onnx's log lines (it logs every unsupported op) and TensorFlow's
    deprecation warnings of the freezing it does, instead of showing them."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    saved = []
    for name in ("tf2onnx", "tensorflow"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.handlers[:]))
        logger.handlers = [handler]
        logger.setLevel(logging.WARNING if name == "tf2onnx" else logging.ERROR)
        logger.propagate = False
    try:
        yield buf
    finally:
        for logger, level, propagate, handlers in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)


def unsupported_ops(model: Any) -> list[str]:
    """The nodes of an ONNX ModelProto that no ONNX schema defines: the TensorFlow ops
    tf2onnx left as they were. Each as 'OpType (tf node name)'."""
    import onnx

    bad = []
    for node in model.graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            bad.append(f"{node.op_type} ({node.name})")
    return bad


@dataclass
class Converted:
    """tf2onnx's ONNX ModelProto, and the loaded signature function it was made from (the
    TensorFlow reference, without loading the SavedModel a second time)."""

    proto: Any
    signature_fn: Any
    loaded: Any  # keeps the signature's variables alive


def convert_saved_model(
    model: Path,
    signature_key: str,
    tags: Sequence[str] | None,
    opset: int,
    nchw_inputs: Sequence[str],
) -> Converted:
    """tf2onnx on the SavedModel's signature, with the signature's input/output names.
    EdgeError naming the op(s) tf2onnx cannot convert."""
    try:
        tf2onnx = importlib.import_module("tf2onnx")
        tf_loader = importlib.import_module("tf2onnx.tf_loader")
    except ImportError as exc:
        raise EdgeError(f"tf2onnx is not installed ({exc}).", _TF_HINT) from None
    with _quiet():
        try:
            graph_def, ins, outs, fn, loaded, renames = tf_loader.from_saved_model(
                str(model),
                None,
                None,
                tag=list(tags) if tags else None,
                signatures=[signature_key],
                return_concrete_func=True,
                return_tensors_to_rename=True,
            )
            by_name = {v: k for k, v in renames.items()}
            proto, _ = tf2onnx.convert.from_graph_def(
                graph_def,
                input_names=ins,
                output_names=outs,
                opset=opset,
                inputs_as_nchw=[by_name.get(n, n) for n in nchw_inputs] or None,
                tensors_to_rename=renames,
            )
        except Exception as exc:  # tf2onnx raises bare Exceptions of many kinds
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EdgeError(
                f"tf2onnx cannot export {model}: {first[:300]}",
                "Convert it on the device with TF-TRT instead: --backend tftrt (or native).",
            ) from exc
    bad = unsupported_ops(proto)
    if bad:
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise EdgeError(
            f"tf2onnx cannot export {len(bad)} op(s) of {model}: {', '.join(bad[:10])}{more}",
            "ONNX has no such op: convert on the device with TF-TRT (--backend tftrt), "
            "or run it unconverted (--backend native).",
        )
    return Converted(proto, fn, loaded)


def describe_onnx(proto: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of an ONNX graph: name, numpy dtype name, shape (None: dynamic)."""
    import onnx

    def info(value: Any) -> TensorInfo:
        tt = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        return TensorInfo(name=value.name, dtype=dtype, shape=dims)

    inits = {i.name for i in proto.graph.initializer}
    ins = [info(v) for v in proto.graph.input if v.name not in inits]
    return ins, [info(v) for v in proto.graph.output]


def onnx_feed(
    arrays: Mapping[str, np.ndarray], inputs: Sequence[TensorInfo], nchw: Sequence[str]
) -> dict[str, np.ndarray]:
    """TensorFlow (NHWC) inputs as the ONNX model takes them: NCHW ones transposed, each
    cast to the ONNX input's dtype (an FP16 model keeps FP32 I/O, so mostly a no-op)."""
    dtypes = {i.name: i.dtype for i in inputs}
    feed = {}
    for name, arr in arrays.items():
        value = np.asarray(arr)
        if name in nchw and value.ndim == 4:
            value = value.transpose(0, 3, 1, 2)
        feed[name] = np.ascontiguousarray(value.astype(dtypes.get(name, value.dtype.name)))
    return feed


def ort_session(model: Path | bytes) -> Any:
    """An onnxruntime session on the CPU (the host's reference runtime)."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise EdgeError(f"onnxruntime is not installed ({exc}).", _TF_HINT) from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def run_ort(session: Any, feed: Mapping[str, np.ndarray], batch: int = 16) -> dict[str, Any]:
    """All outputs of `session` on `feed` (axis 0 = samples), run `batch` samples at a time."""
    names = [o.name for o in session.get_outputs()]
    n = len(next(iter(feed.values())))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for lo in range(0, n, batch):
        outs = session.run(names, {k: v[lo : lo + batch] for k, v in feed.items()})
        for k, v in zip(names, outs):
            parts[k].append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def run_tensorflow(fn: Any, arrays: Mapping[str, np.ndarray], batch: int = 16) -> dict[str, Any]:
    """The signature function `fn` on `arrays` (the reference the ONNX model must match)."""
    n = len(next(iter(arrays.values())))
    parts: dict[str, list[np.ndarray]] = {}
    for lo in range(0, n, batch):
        outs = fn(**{k: v[lo : lo + batch] for k, v in arrays.items()})
        for k, v in outs.items():
            parts.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}
