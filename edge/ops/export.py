"""`edge export`: a SavedModel to ONNX on the host, checked before anything is pushed.

1. tf2onnx on the serving signature (input/output names kept, NCHW inputs on request),
   at the opset the target TensorRT reads (`opset_for_tensorrt`).
2. onnxruntime (CPU) against TensorFlow on the same inputs: the calibration samples when
   given, else synthesized ones. `validation` is the written model against TensorFlow
   (for --int8, the FP32 export against TensorFlow).
3. --int8: Q/DQ from the calibration data, then INT8 against FP32 on those samples
   (`accuracy_delta`), refused beyond --max-accuracy-drop. --fp16: an FP16 graph, FP32 I/O.
4. The result is cached by content (SavedModel tree digest, calibration digest, options,
   tool versions) under the cache dir: the same export is not made twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_agent import __version__
from device_agent.manifest import build_manifest, tree_digest
from device_agent.protocol import TensorInfo
from device_agent.savedmodel_meta import read_signature
from edge.core.errors import EdgeError
from edge.core.paths import cache_dir
from edge.ops import onnx_export as ox
from edge.ops.push import check_saved_model
from edge.ops.quantize import quantize_qdq, to_fp16

DEFAULT_OPSET = 17  # read by every supported TensorRT line (8.5 stops at 17)
CALIB_LIMIT = 512  # calibration samples used for Q/DQ and the INT8 delta at most


@dataclass
class ExportOptions:
    """What `edge export` makes. opset None: `opset_for_tensorrt(tensorrt)`, or 17."""

    opset: int | None = None
    nchw_inputs: list[str] = field(default_factory=list)
    int8: bool = False
    calib: Path | None = None
    fp16: bool = False
    max_accuracy_drop: float | None = None
    signature_key: str = "serving_default"
    tags: list[str] = field(default_factory=lambda: ["serve"])
    validate_samples: int = 8
    tensorrt: str | None = None  # the target's TensorRT version, for the default opset

    def resolved_opset(self) -> int:
        """The opset to export at (checked against what tf2onnx writes)."""
        if self.opset is None:
            return ox.opset_for_tensorrt(self.tensorrt) if self.tensorrt else DEFAULT_OPSET
        if not ox.MIN_OPSET <= self.opset <= ox.TF2ONNX_MAX_OPSET:
            raise EdgeError(
                f"opset {self.opset} is out of range.",
                f"Pass --opset {ox.MIN_OPSET}..{ox.TF2ONNX_MAX_OPSET} (tf2onnx 1.17's maximum).",
            )
        return self.opset


@dataclass
class Validation:
    """One model against its reference on the same samples (worst output first)."""

    max_abs_err: float
    max_rel_err: float
    top1_agreement: float | None
    samples: int
    per_output: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, c: ox.Comparison) -> Validation:
        per = {k: dataclasses.asdict(v) for k, v in c.per_output.items()}
        return cls(c.max_abs_err, c.max_rel_err, c.top1_agreement, c.samples, per)


@dataclass
class ExportResult:
    """What `edge export --json` prints; `to_dict`/`from_dict` round-trip it."""

    output: str
    opset: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    quantized: bool
    validation: Validation
    precision: str = "FP32"  # FP32, FP16, or INT8 (Q/DQ)
    accuracy_delta: dict[str, Any] | None = None  # INT8 vs FP32: top1, errors, drop
    seconds: float = 0.0
    cached: bool = False
    cache_key: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExportResult:
        d = dict(data)
        d["inputs"] = [TensorInfo(**t) for t in d["inputs"]]
        d["outputs"] = [TensorInfo(**t) for t in d["outputs"]]
        d["validation"] = Validation(**d["validation"])
        return cls(**d)


def tool_versions() -> dict[str, str]:
    """The versions that make an export: a change of any of them is a new cache entry."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"jetson-edge": __version__}
    for dist in ("tensorflow-cpu", "tensorflow", "tf2onnx", "onnx", "onnxruntime"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def _calib_digest(calib: Path | None) -> str | None:
    if calib is None:
        return None
    return tree_digest(build_manifest(str(calib), kind="calib"))


def cache_key(model: Path, options: ExportOptions, opset: int) -> str:
    """sha256 over the model's tree digest, the calibration digest, options, tool versions."""
    opts = dataclasses.asdict(options)
    opts.update(calib=None, opset=opset, tensorrt=None)  # the data's digest, not its path
    doc = {
        "model": tree_digest(build_manifest(str(model))),
        "calib": _calib_digest(options.calib),
        "options": opts,
        "versions": tool_versions(),
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def export_cache_dir() -> Path:
    """Where finished exports are kept: `<cache dir>/onnx-export/<key>/`."""
    return cache_dir() / "onnx-export"


def _check_options(options: ExportOptions, inputs: list[TensorInfo]) -> None:
    names = {i.name for i in inputs}
    unknown = [n for n in options.nchw_inputs if n not in names]
    if unknown:
        raise EdgeError(
            f"--nchw names no input of the signature: {', '.join(unknown)}",
            f"The inputs are: {', '.join(sorted(names))}.",
        )
    for n in options.nchw_inputs:
        shape = next(i.shape for i in inputs if i.name == n)
        if len(shape) != 4:
            raise EdgeError(
                f"--nchw {n}: the input has shape {shape}, not rank 4 (NHWC).",
                "Pass --nchw only for image inputs.",
            )
    if options.int8 and options.fp16:
        raise EdgeError("--int8 and --fp16 are exclusive.", "Pass one of them.")
    if options.int8 and options.calib is None:
        raise EdgeError("--int8 needs calibration data.", "Pass --calib DATA (.npz or .npy dir).")
    if options.max_accuracy_drop is not None and not options.int8:
        raise EdgeError("--max-accuracy-drop applies to --int8 only.", "Add --int8 --calib DATA.")
    if options.validate_samples < 1:
        raise EdgeError("validate_samples must be >= 1.", "Validate on at least one sample.")


def _samples(
    model: Path, options: ExportOptions, inputs: list[TensorInfo], tmp: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """(validation inputs, calibration inputs or None), in TensorFlow's layout. Wrong
    calibration data fails here, before any export work."""
    if options.calib is None:
        from device_agent.signature import synth_inputs

        return synth_inputs(inputs, options.validate_samples, seed=0), None
    from device_agent.calib import check_against_signature, open_calibration

    data = open_calibration(str(options.calib), cache_dir=tmp)
    check_against_signature(data, inputs)
    n = min(data.samples, CALIB_LIMIT)
    calib = {k: np.array(a[:n]) for k, a in data.arrays.items()}
    return {k: a[: options.validate_samples] for k, a in calib.items()}, calib


def _accuracy_delta(c: ox.Comparison) -> dict[str, Any]:
    """INT8 vs FP32: `drop` is 1 - top-1 agreement, or the max relative error when no
    output has classes (then the only measure of how far INT8 moved)."""
    drop = 1.0 - c.top1_agreement if c.top1_agreement is not None else c.max_rel_err
    return {
        "top1_agreement": c.top1_agreement,
        "max_abs_err": c.max_abs_err,
        "max_rel_err": c.max_rel_err,
        "drop": drop,
        "samples": c.samples,
    }


def export_onnx(model: Path, out: Path, options: ExportOptions | None = None) -> ExportResult:
    """Export `model` (a SavedModel dir) to the ONNX file `out`; see the module doc."""
    options = options or ExportOptions()
    started = time.monotonic()
    model = check_saved_model(model)
    signature = read_signature(str(model), options.signature_key, options.tags or None)
    opset = options.resolved_opset()
    _check_options(options, signature.inputs)
    with tempfile.TemporaryDirectory(prefix="edge-export-") as tmp:
        valid_in, calib_in = _samples(model, options, signature.inputs, tmp)
        key = cache_key(model, options, opset)
        entry = export_cache_dir() / key
        if (entry / "result.json").is_file() and (entry / "model.onnx").is_file():
            result = ExportResult.from_dict(json.loads((entry / "result.json").read_text()))
            _place(entry / "model.onnx", out)
            result.output, result.cached = str(out), True
            result.seconds = round(time.monotonic() - started, 3)
            return result
        result = _export(model, Path(tmp), options, opset, valid_in, calib_in)
        result.cache_key, result.versions = key, tool_versions()
        _store(entry, Path(tmp) / "final.onnx", result)
        _place(entry / "model.onnx", out)
    result.output = str(out)
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _export(
    model: Path,
    tmp: Path,
    options: ExportOptions,
    opset: int,
    valid_in: dict[str, np.ndarray],
    calib_in: dict[str, np.ndarray] | None,
) -> ExportResult:
    import onnx

    converted = ox.convert_saved_model(
        model, options.signature_key, options.tags, opset, options.nchw_inputs
    )
    proto = converted.proto
    fp32 = tmp / "fp32.onnx"
    onnx.save(proto, str(fp32))
    onnx_in, onnx_out = ox.describe_onnx(proto)
    nchw = options.nchw_inputs
    reference = ox.run_tensorflow(converted.signature_fn, valid_in)
    session = ox.ort_session(fp32)
    got = ox.run_ort(session, ox.onnx_feed(valid_in, onnx_in, nchw))
    samples = len(next(iter(valid_in.values())))
    final, precision, delta = fp32, "FP32", None
    validation = Validation.of(ox.compare_outputs(got, reference, samples))
    if options.fp16:
        final, precision = tmp / "fp16.onnx", "FP16"
        onnx.save(to_fp16(proto), str(final))
        half = ox.run_ort(ox.ort_session(final), ox.onnx_feed(valid_in, onnx_in, nchw))
        validation = Validation.of(ox.compare_outputs(half, reference, samples))
    if options.int8 and calib_in is not None:
        final, precision = tmp / "int8.onnx", "INT8"
        feed = ox.onnx_feed(calib_in, onnx_in, nchw)
        quantize_qdq(fp32, final, feed)
        want = ox.run_ort(session, feed)
        int8 = ox.run_ort(ox.ort_session(final), feed)
        delta = _accuracy_delta(ox.compare_outputs(int8, want, len(next(iter(feed.values())))))
        limit = options.max_accuracy_drop
        if limit is not None and delta["drop"] > limit:
            raise EdgeError(
                f"INT8 loses too much accuracy: the measured drop is {delta['drop']:.4f} "
                f"(top-1 agreement {delta['top1_agreement']}, max rel err "
                f"{delta['max_rel_err']:.4f}) > --max-accuracy-drop {limit}",
                "Raise --max-accuracy-drop, give more representative --calib data, "
                "or export FP16 (--fp16) / FP32.",
            )
    shutil.copyfile(final, tmp / "final.onnx")
    return ExportResult(
        output="",
        opset=opset,
        inputs=onnx_in,
        outputs=onnx_out,
        quantized=precision == "INT8",
        validation=validation,
        precision=precision,
        accuracy_delta=delta,
    )


def _store(entry: Path, model: Path, result: ExportResult) -> None:
    """Put a finished export in the cache, atomically (a half-written entry is no hit)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    shutil.copyfile(model, tmp / "model.onnx")
    (tmp / "result.json").write_text(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    shutil.rmtree(entry, ignore_errors=True)
    tmp.rename(entry)


def _place(src: Path, out: Path) -> None:
    out = out.expanduser()
    if out.is_dir():
        raise EdgeError(f"--out {out} is a directory.", "Pass a file name, e.g. model.onnx.")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    shutil.copyfile(src, partial)
    partial.replace(out)
