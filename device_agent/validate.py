"""Compare a converted model with its source model on the same inputs (a `validate` job).

Numpy does the comparing; TensorFlow is imported lazily, only to run the two models.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .backends import check_artifact
from .backends.base import Backend
from .errors import AgentError
from .protocol import (
    PRECISIONS,
    SUCCEEDED,
    OutputCheck,
    TensorInfo,
    ValidateOptions,
    ValidateResult,
    ValidateSpec,
    ValidationReport,
)
from .savedmodel_meta import check_model_dir

Emit = Callable[..., None]  # emit(kind, message, **data), as in runner.py

# (atol, rtol) per TF-TRT precision mode. An element fails only beyond BOTH (see below).
DEFAULT_TOLERANCES: Dict[str, Tuple[float, float]] = {
    # FP32 is not bit-exact: TensorRT fuses layers and picks kernels with another summation
    # order, and on Ampere Jetsons (Orin) TensorRT and TensorFlow both allow TF32 tensor-core
    # math for FP32 by default (10-bit mantissa products), so allow ~1e-3 relative.
    "FP32": (1e-4, 1e-3),
    # FP16 weights and activations: ~3 significant digits, errors compound across layers.
    "FP16": (1e-2, 1e-2),
    # INT8 is quantized (256 levels per tensor): elementwise closeness is loose by nature;
    # top1_agreement is the more telling figure for classifiers.
    "INT8": (1e-1, 1e-1),
}

# Polygraphy adds float64 eps to zero reference values before dividing; same floor here.
_TINY = float(np.finfo(np.float64).eps)


def tolerances(
    precision: str, atol: Optional[float] = None, rtol: Optional[float] = None
) -> Tuple[float, float]:
    """(atol, rtol) for `precision`; a tolerance given explicitly wins over its default."""
    if precision not in DEFAULT_TOLERANCES:
        raise AgentError(
            f"Unknown precision {precision!r} for validation.",
            f"Use one of {', '.join(PRECISIONS)}.",
        )
    d_atol, d_rtol = DEFAULT_TOLERANCES[precision]
    return (d_atol if atol is None else float(atol), d_rtol if rtol is None else float(rtol))


def is_classifier(info: TensorInfo) -> bool:
    """A float [batch, classes>1] output: top-1 agreement is reported for it."""
    shape = info.shape or []
    return (
        len(shape) == 2
        and shape[-1] is not None
        and shape[-1] > 1
        and info.dtype.startswith(("float", "bfloat", "half"))
    )


def compare_arrays(
    reference: np.ndarray, actual: np.ndarray, atol: float, rtol: float, classifier: bool
) -> OutputCheck:
    """Elementwise comparison of `actual` against `reference`.

    abs = |a - r|, rel = abs / max(|r|, eps). As in Polygraphy's default "elemwise" check
    (NVIDIA/TensorRT tools/Polygraphy/polygraphy/comparator/compare.py, CompareFunc.simple:
    `mismatches = (absdiff > atol | isnan(absdiff)) & (reldiff > rtol | isnan(reldiff))`),
    an element is mismatched only when it exceeds BOTH atol and rtol * |r|. Unlike
    Polygraphy, NaN == NaN and equal infinities count as matching; NaN or inf on one side
    only is a mismatch, and the max errors are then reported as inf.
    """
    ref, act = np.asarray(reference), np.asarray(actual)
    if ref.shape != act.shape:
        raise AgentError(
            f"Output shapes differ: reference {list(ref.shape)}, converted {list(act.shape)}.",
            "The converted model must keep the source model's output shapes; "
            "check the conversion's dynamic-shape profiles.",
        )
    if ref.dtype.kind != act.dtype.kind and not {ref.dtype.kind, act.dtype.kind} <= set("iu"):
        raise AgentError(
            f"Output dtypes differ: reference {ref.dtype} (shape {list(ref.shape)}), "
            f"converted {act.dtype} (shape {list(act.shape)}).",
            "The converted model must keep the source model's output dtypes.",
        )
    if ref.dtype.kind in "OSUV":  # strings and the like: exact equality only
        mismatched = int(np.count_nonzero(ref != act))
        return OutputCheck(0.0, 0.0, mismatched == 0, mismatched, int(ref.size))
    r, a = ref.astype(np.float64), act.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        same_nonfinite = (np.isnan(r) & np.isnan(a)) | (np.isinf(r) & (r == a))
        abs_err = np.where(same_nonfinite, 0.0, np.abs(a - r))
        rel_err = np.where(same_nonfinite, 0.0, abs_err / np.maximum(np.abs(r), _TINY))
        bad = ((abs_err > atol) | np.isnan(abs_err)) & ((rel_err > rtol) | np.isnan(rel_err))
    mismatched = int(np.count_nonzero(bad))
    top1 = None
    if classifier and ref.ndim == 2 and ref.shape[-1] > 1 and ref.shape[0] > 0:
        top1 = float(np.mean(np.argmax(ref, axis=-1) == np.argmax(act, axis=-1)))
    return OutputCheck(
        max_abs_err=_max(abs_err),
        max_rel_err=_max(rel_err),
        passed=mismatched == 0,
        mismatched=mismatched,
        elements=int(ref.size),
        top1_agreement=top1,
    )


def _max(err: np.ndarray) -> float:
    if err.size == 0:
        return 0.0
    if not np.all(np.isfinite(err)):
        return float("inf")
    return float(err.max())


def _merge(total: Optional[OutputCheck], rows: int, new: OutputCheck, new_rows: int) -> OutputCheck:
    """Accumulate per-batch checks: max of maxima, sums of counts, top-1 over all rows."""
    if total is None:
        return new
    top1 = None
    if total.top1_agreement is not None and new.top1_agreement is not None:
        hits = round(total.top1_agreement * rows) + round(new.top1_agreement * new_rows)
        top1 = hits / max(rows + new_rows, 1)
    mismatched = total.mismatched + new.mismatched
    return OutputCheck(
        max_abs_err=max(total.max_abs_err, new.max_abs_err),
        max_rel_err=max(total.max_rel_err, new.max_rel_err),
        passed=mismatched == 0,
        mismatched=mismatched,
        elements=total.elements + new.elements,
        top1_agreement=top1,
    )


def _names(infos: List[TensorInfo]) -> List[str]:
    return [i.name for i in infos]


def _as_input(value: Any, info: TensorInfo) -> np.ndarray:
    """Real samples may come as float64 or lists: cast to the signature's numeric dtype."""
    try:
        return np.asarray(value, dtype=np.dtype(info.dtype))
    except TypeError:  # e.g. "string": leave it to TensorFlow
        return np.asarray(value)


def compare_models(
    model_dir: str,
    converted_dir: str,
    options: ValidateOptions,
    inputs_iter: Optional[Iterator[Dict[str, np.ndarray]]] = None,
    emit: Optional[Emit] = None,
    converted_backend: Optional[Backend] = None,
) -> ValidationReport:
    """Run both models on the same inputs and compare every output.

    The source model is a SavedModel, run natively; the converted one is loaded by
    `converted_backend` (the backend that built it), else by the backend whose artifact
    format it is. The models are loaded one after the other (reference outputs are kept,
    the reference model is released first): Jetson memory is shared by CPU and GPU, and a
    converted model with its TensorRT engines next to the source model can exhaust a
    small board.
    """
    from .backends import FALLBACK, get, open_artifact
    from .signature import synth_inputs

    def say(kind: str, message: str, **data: Any) -> None:
        if emit is not None:
            emit(kind, message, **data)

    atol, rtol = tolerances(options.precision, options.atol, options.rtol)
    say("log", f"tolerances for {options.precision}: atol={atol:g}, rtol={rtol:g}")

    reference_model = get(FALLBACK).load(model_dir, options.signature_key)
    ref_in, ref_out = reference_model.inputs, reference_model.outputs
    if inputs_iter is not None:
        inputs_from = "calibration"
        batches: Iterable[Dict[str, np.ndarray]] = inputs_iter
    else:
        inputs_from = "generated"
        batches = (
            synth_inputs(ref_in, options.batch_size, options.input_shapes, options.seed + n)
            for n in range(options.samples)
        )
    runs: List[Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]] = []
    for n, batch in enumerate(batches):
        missing = sorted(set(_names(ref_in)) - set(batch))
        if missing:
            raise AgentError(
                f"Sample batch {n} lacks inputs {missing} (it has {sorted(batch)}).",
                "Provide samples keyed by the signature's input names.",
            )
        feed = {i.name: _as_input(batch[i.name], i) for i in ref_in}
        runs.append((feed, reference_model.run(feed)))
        say("progress", f"reference model: batch {n + 1}", phase="validate")
    if not runs:
        raise AgentError("No input samples to validate with.", "Use --samples 1 or more.")
    reference_model.close()
    del reference_model

    if converted_backend is not None:
        converted_model = converted_backend.load(converted_dir, options.signature_key)
    else:
        converted_model = open_artifact(converted_dir, options.signature_key)
    conv_in, conv_out = converted_model.inputs, converted_model.outputs
    if _names(ref_in) != _names(conv_in) or _names(ref_out) != _names(conv_out):
        raise AgentError(
            f"The models' signatures {options.signature_key!r} differ: "
            f"{model_dir} has inputs {_names(ref_in)} and outputs {_names(ref_out)}; "
            f"{converted_dir} has inputs {_names(conv_in)} and outputs {_names(conv_out)}.",
            "Compare a converted model with the model it was converted from.",
        )
    classifier = {info.name: is_classifier(info) for info in ref_out}
    checks: Dict[str, OutputCheck] = {}
    rows: Dict[str, int] = {}
    for n, (feed, reference) in enumerate(runs):
        actual = converted_model.run(feed)
        for name in _names(ref_out):
            check = compare_arrays(reference[name], actual[name], atol, rtol, classifier[name])
            batch_rows = int(reference[name].shape[0]) if reference[name].ndim else 1
            checks[name] = _merge(checks.get(name), rows.get(name, 0), check, batch_rows)
            rows[name] = rows.get(name, 0) + batch_rows
        say("progress", f"converted model: batch {n + 1} of {len(runs)}", phase="validate")
    converted_model.close()
    return _report(checks, options, atol, rtol, len(runs), inputs_from, emit)


def _report(
    checks: Dict[str, OutputCheck],
    options: ValidateOptions,
    atol: float,
    rtol: float,
    samples: int,
    inputs_from: str,
    emit: Optional[Emit],
) -> ValidationReport:
    """The report of per-output checks, each logged."""
    for name, c in checks.items():
        top1 = "" if c.top1_agreement is None else f", top-1 agreement {c.top1_agreement:.3f}"
        if emit is not None:
            emit(
                "log",
                f"{name}: {'ok' if c.passed else 'MISMATCH'} max abs {c.max_abs_err:.3g}, "
                f"max rel {c.max_rel_err:.3g}, {c.mismatched}/{c.elements} beyond "
                f"tolerance{top1}",
            )
    return ValidationReport(
        passed=all(c.passed for c in checks.values()),
        precision=options.precision,
        atol=atol,
        rtol=rtol,
        samples=samples,
        inputs_from=inputs_from,
        outputs=checks,
    )


def _reference_arrays(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """(inputs, outputs) of the host's reference.npz (untrusted: checked, never pickled)."""
    import os
    import zipfile

    file = os.path.join(path, "reference.npz") if os.path.isdir(path) else path
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise AgentError(
            f"Cannot read the reference outputs {file}: {exc}.",
            "Convert again with --validate (the host computes and pushes them).",
        ) from exc
    ins = {k[3:]: v for k, v in arrays.items() if k.startswith("in.")}
    outs = {k[4:]: v for k, v in arrays.items() if k.startswith("out.")}
    rows = {v.shape[0] if v.ndim else -1 for v in [*ins.values(), *outs.values()]}
    if not ins or not outs or len(rows) != 1 or -1 in rows:
        raise AgentError(
            f"{file} is not a reference set (inputs and outputs, one row per sample).",
            "Convert again with --validate (the host computes and pushes them).",
        )
    return ins, outs


def compare_with_reference(
    converted_dir: str,
    reference: str,
    options: ValidateOptions,
    emit: Optional[Emit] = None,
    converted_backend: Optional[Backend] = None,
) -> ValidationReport:
    """The converted model against outputs the host computed with TensorFlow on the same
    inputs (a board without TensorFlow cannot run the source model)."""
    from .backends import open_artifact

    atol, rtol = tolerances(options.precision, options.atol, options.rtol)
    ins, want = _reference_arrays(reference)
    if converted_backend is not None:
        model = converted_backend.load(converted_dir, options.signature_key)
    else:
        model = open_artifact(converted_dir, options.signature_key)
    missing = sorted(
        (set(_names(model.inputs)) - set(ins)) | (set(_names(model.outputs)) - set(want))
    )
    if missing:
        model.close()
        raise AgentError(
            f"The reference set lacks {missing} of the converted model's tensors.",
            "Compare a converted model with the model it was converted from.",
        )
    samples = next(iter(ins.values())).shape[0]
    checks: Dict[str, OutputCheck] = {}
    rows: Dict[str, int] = {}
    try:
        for n in range(samples):
            feed = {i.name: _as_input(ins[i.name][n : n + 1], i) for i in model.inputs}
            actual = model.run(feed)
            for info in model.outputs:
                ref = want[info.name][n : n + 1]
                check = compare_arrays(ref, actual[info.name], atol, rtol, is_classifier(info))
                checks[info.name] = _merge(checks.get(info.name), rows.get(info.name, 0), check, 1)
                rows[info.name] = rows.get(info.name, 0) + 1
    finally:
        model.close()
    return _report(checks, options, atol, rtol, samples, "host-reference", emit)


def run_validate(
    spec: ValidateSpec, emit: Emit, inputs_iter: Optional[Iterator[Dict[str, np.ndarray]]] = None
) -> ValidateResult:
    """The body of a `validate` job: compare spec.converted against spec.model.

    The job status is about the job: SUCCEEDED whenever the comparison ran, even when the
    outputs disagree. The verdict is `result.validation.passed`; the CLI turns it into an
    exit code. An AgentError (missing model, signature mismatch...) propagates and the
    runner records a failed job.
    """
    options = spec.validation
    model = check_model_dir(spec.model, "source model")
    converted = check_artifact(spec.converted, "converted model")
    if spec.calib and inputs_iter is None:
        emit("log", f"calibration samples from {spec.calib} not loaded; using generated inputs")
    if spec.reference:
        emit("progress", f"validating {converted} against the host's outputs", phase="validate")
        report = compare_with_reference(converted, spec.reference, options, emit)
    else:
        emit("progress", f"validating {converted} against {model}", phase="validate")
        report = compare_models(model, converted, options, inputs_iter, emit)
    emit("log", f"validation {'passed' if report.passed else 'FAILED'}")
    return ValidateResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        model=model,
        converted=converted,
        validation=report,
    )
