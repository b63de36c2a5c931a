"""The convert job: check, plan, (cache | shared build | sweep + build with OOM retries),
place the output, summarize, validate.

Everything that can fail cheaply fails before the converter starts: the model's
signature (read without TensorFlow), calibration data against it, the memory plan.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from .backends import get as get_backend
from .backends import select_backend
from .backends.base import Backend, BuildOutcome, BuildRequest
from .backends.ladder import build_with_ladder
from .backends.sweep import resolve_segment_size
from .calib import CalibrationData, batches, check_against_signature, open_calibration
from .config import load_config
from .durable import fsync_dir
from .errors import AgentError
from .facts import collect
from .jobplan import key_fingerprint
from .manifest import build_manifest, tree_digest
from .planner import make_plan
from .protocol import (
    SUCCEEDED,
    Attempt,
    ConversionSummary,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    JobSpec,
    SweepPoint,
    TensorInfo,
    ValidateOptions,
)
from .savedmodel_meta import check_model_dir, read_signature
from .store import fsync_tree, hash_and_sync

Emit = Callable[..., None]
HEX = set("0123456789abcdef")


# ---------------------------------------------------------------------- helpers


def _is_digest(name: str) -> bool:
    return len(name) == 64 and set(name) <= HEX


def model_identity(path: str) -> Tuple[str, int]:
    """(tree digest, bytes) of a model tree. A pushed tree is named by its digest."""
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    name = os.path.basename(os.path.normpath(path))
    if _is_digest(name) and os.path.basename(os.path.dirname(os.path.normpath(path))) in (
        "models",
        "calib",
    ):
        return name, total
    return tree_digest(build_manifest(path)), total


def link_tree(src: str, dst: str) -> None:
    """Recreate `src` at `dst` with hard links (copies across filesystems)."""
    for dirpath, _, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = os.path.normpath(os.path.join(dst, rel))
        os.makedirs(target, exist_ok=True)
        for name in files:
            s, d = os.path.join(dirpath, name), os.path.join(target, name)
            try:
                os.link(s, d)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                    raise
                shutil.copy2(s, d)


def _calib_file(path: str) -> str:
    """A pushed calibration tree holds one .npz, or the .npy files themselves."""
    if os.path.isdir(path):
        npz = [f for f in os.listdir(path) if f.endswith(".npz")]
        if len(npz) == 1:
            return os.path.join(path, npz[0])
    return path


def prepare_calibration(
    spec: JobSpec, inputs: List[TensorInfo], job_dir: str, emit: Emit
) -> Tuple[Optional[CalibrationData], Optional[str]]:
    """Open and check the job's calibration data before the converter starts."""
    if not spec.calib:
        return None, None
    data = open_calibration(_calib_file(spec.calib), cache_dir=os.path.join(job_dir, "calib"))
    check_against_signature(data, inputs)
    digest, _ = model_identity(spec.calib) if os.path.isdir(spec.calib) else (None, 0)
    emit(
        "log",
        f"calibration data: {data.samples} samples of "
        + ", ".join(f"{k}:{d}{s}" for k, (d, s) in sorted(data.inputs.items())),
    )
    return data, digest


def calibration_fn(
    data: CalibrationData, inputs: List[TensorInfo], batch_size: int, count: int
) -> Callable[[], Iterator[Tuple[Any, ...]]]:
    order = [i.name for i in inputs]
    return lambda: batches(data, batch_size, count, order)


def synthetic_fn(
    inputs: List[TensorInfo], shapes: List[Dict[str, List[int]]], batch_size: int, count: int = 1
) -> Callable[[], Iterator[Tuple[Any, ...]]]:
    """Generated inputs in signature (sorted-name) order, one set per profile."""
    from .signature import synth_inputs

    def fn() -> Iterator[Tuple[Any, ...]]:
        for n in range(count):
            for overrides in shapes or [{}]:
                arrays = synth_inputs(inputs, batch_size, overrides, seed=n)
                yield tuple(arrays[i.name] for i in inputs)

    return fn


class ModelCache:
    """cache/<key>/{model/, summary.json, complete}: converted models by cache key.

    An entry is written in a staging directory, every file and directory of it fsynced,
    and `complete` written last: it records the model's tree digest and the summary's
    sha256. Only then is the entry renamed into place. `lookup` checks both (hashing the
    model) before an entry is used, so an entry torn by a power cut or altered since is
    discarded, and rebuilt by the job, never reused."""

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "cache")

    def path(self, key: str) -> str:
        return os.path.join(self.dir, key, "model")

    def lookup(self, key: str) -> Optional[ConversionSummary]:
        """The summary of a verified entry for `key`; a bad entry is discarded (None)."""
        entry = os.path.join(self.dir, key)
        if not os.path.lexists(entry):
            return None
        summary = self._verified(entry)
        if summary is None:
            self.discard(key)
        return summary

    @staticmethod
    def _verified(entry: str) -> Optional[ConversionSummary]:
        try:
            with open(os.path.join(entry, "complete")) as f:
                marker = json.load(f)
            with open(os.path.join(entry, "summary.json"), "rb") as f:
                raw = f.read()
            if hashlib.sha256(raw).hexdigest() != marker["summary_sha256"]:
                return None
            model = os.path.join(entry, "model")
            if os.path.islink(model) or not os.path.isdir(model):
                return None
            if tree_digest(build_manifest(model)) != marker["tree_digest"]:
                return None
            return ConversionSummary.from_json(raw.decode("utf-8"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AgentError):
            # no marker (torn), a marker from before digests, unreadable or unparsable
            return None

    def discard(self, key: str) -> None:
        """Remove the entry for `key`: renamed aside first, so no reader sees it half gone."""
        entry = os.path.join(self.dir, key)
        trash = tempfile.mkdtemp(prefix=f".bad-{key[:16]}-", dir=self.dir)
        try:
            os.rename(entry, os.path.join(trash, "entry"))
        except FileNotFoundError:  # another job discarded it first
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def staging(self, key: str) -> str:
        os.makedirs(self.dir, exist_ok=True)
        path = tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=self.dir)  # unique per job
        os.chmod(path, 0o755)
        return path

    def commit(self, key: str, staging: str, summary: ConversionSummary) -> str:
        """Make `staging` (holding model/) the entry for `key`, durably; returns the path
        of the entry's model (another job's, if it filled the key first with a good one)."""
        text = summary.to_json().encode("utf-8")
        _write_synced(os.path.join(staging, "summary.json"), text)
        model = os.path.join(staging, "model")
        digest = tree_digest(build_manifest(model, hash_file=hash_and_sync))
        fsync_tree(model)
        marker = {
            "tree_digest": digest,
            "summary_sha256": hashlib.sha256(text).hexdigest(),
            "time": time.time(),
        }
        _write_synced(os.path.join(staging, "complete"), json.dumps(marker).encode("ascii"))
        fsync_dir(staging)
        final = os.path.join(self.dir, key)
        for _ in range(3):
            try:
                os.rename(staging, final)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if self._verified(final) is not None:  # another job filled it: as good as ours
                shutil.rmtree(staging, ignore_errors=True)
                break
            self.discard(key)
        else:
            raise AgentError(
                f"Cannot install the cache entry {final}",
                "check the device root's cache/ directory",
            )
        fsync_dir(self.dir)
        return self.path(key)


def _write_synced(path: str, data: bytes) -> None:
    """Write a new file whole (short writes retried) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- building


def build_request(
    backend: Backend,
    options: ConvertOptions,
    spec: ConvertSpec,
    work_dir: str,
    inputs: List[TensorInfo],
    calib: Optional[CalibrationData],
    workspace: Optional[int],
    tf_limit_mb: Optional[int],
    calib_batches: int,
    emit: Emit,
) -> BuildRequest:
    """What the backend's build gets: inputs to build and (if it calibrates) calibrate on."""

    def log(msg: str) -> None:
        emit("log", msg)

    calib_fn = None
    if backend.calibrates(options):
        if calib is not None:
            calib_fn = calibration_fn(calib, inputs, options.calibration_batch_size, calib_batches)
        else:
            log(
                "no calibration data given: calibrating on generated inputs (accuracy will not "
                "be representative; pass --calib DATA)"
            )
            calib_fn = synthetic_fn(
                inputs,
                options.build_shapes,
                options.calibration_batch_size,
                options.calibration_batches,
            )
    return BuildRequest(
        options=options,
        model_dir=spec.model,
        work_dir=work_dir,
        inputs=inputs,
        build_inputs=synthetic_fn(inputs, options.build_shapes, 1),
        calibration=calib_fn,
        workspace_bytes=workspace,
        tf_gpu_memory_limit_mb=tf_limit_mb,
        log=log,
    )


def _build(
    backend: Backend, request: BuildRequest, output: str
) -> Tuple[BuildOutcome, List[Attempt], List[SweepPoint], ConvertOptions]:
    """prepare -> segment sweep -> build through the OOM ladder, for any backend."""
    backend.prepare(request)
    request, sweep = resolve_segment_size(backend, request)
    outcome, attempts = build_with_ladder(backend, request, output)
    return outcome, attempts, sweep, request.options


# ---------------------------------------------------------------------- the job


def run_convert(spec: ConvertSpec, job_dir: str, emit: Emit) -> ConvertResult:
    """Convert spec.model on this device; see the module docstring for the steps."""
    options = spec.convert
    if spec.simulate_board or spec.simulate_jetpack:
        raise AgentError(
            "A convert job cannot run as a simulated board.",
            "Use --board/--jetpack with --dry-run only.",
        )
    check_model_dir(spec.model)
    root = os.path.dirname(os.path.dirname(os.path.abspath(job_dir)))
    started = time.time()
    signature = read_signature(spec.model, options.signature_key, options.tags)
    calib, calib_digest = prepare_calibration(spec, signature.inputs, job_dir, emit)
    emit("log", f"selecting backend {options.backend!r}")
    name, fallback = select_backend(options.backend)
    backend = get_backend(name)
    if fallback:
        emit("log", fallback)
    facts = collect(sysroot=load_config(root).sysroot, root_dir=root)
    digest, nbytes = model_identity(spec.model)
    plan = make_plan(
        facts,
        options,
        name,
        spec.model,
        nbytes,
        digest,
        calib.samples if calib else None,
        fallback,
        calib_digest=calib_digest,
        fp=key_fingerprint(facts, name),
    )
    for line in plan.workspace_arithmetic:
        emit("log", "plan: " + line)
    result = ConvertResult(
        device=socket.gethostname(),
        status=SUCCEEDED,
        backend=name,
        fallback_reason=fallback,
        precision=backend.precision(options),
        options=options,
        plan=plan,
    )
    cache = ModelCache(root)
    key = plan.cache_key or digest
    hit = cache.lookup(key) if options.use_cache else None
    if spec.prebuilt and hit is None:
        emit("progress", f"installing the build shared by {spec.prebuilt_from}", phase="share")
        staging = cache.staging(key)
        link_tree(spec.prebuilt, os.path.join(staging, "model"))
        summary = spec.prebuilt_summary or ConversionSummary()
        model_path = cache.commit(key, staging, summary)
        result.cache, result.shared_from = "shared", spec.prebuilt_from
        result.engines_built = bool(summary.engines)
    elif hit is not None:
        emit("progress", f"cache hit {key[:12]}: skipping the converter", phase="cache")
        summary, model_path, result.cache = hit, cache.path(key), "hit"
        result.engines_built = bool(hit.engines)
    else:
        emit("progress", f"converting with {name} ({options.precision})", phase="convert")
        work_dir = os.path.join(job_dir, "artifacts")
        os.makedirs(work_dir, exist_ok=True)
        staging = cache.staging(key) if options.use_cache else work_dir
        calib_batches = plan.calibration.batches if plan.calibration else 0
        request = build_request(
            backend,
            options,
            spec,
            work_dir,
            signature.inputs,
            calib,
            plan.workspace_bytes,
            plan.tf_gpu_memory_limit_mb,
            calib_batches,
            emit,
        )
        request.onnx, request.trt_plan = spec.onnx, plan.tensorrt
        request.fingerprint, request.root, request.calib_key = plan.fingerprint, root, key
        outcome, result.attempts, result.segment_sweep, result.options = _build(
            backend, request, os.path.join(staging, "model")
        )
        summary, result.engines_built = outcome.summary, outcome.engines_built
        model_path = (
            cache.commit(key, staging, summary)
            if options.use_cache
            else os.path.join(staging, "model")
        )
    result.artifact, result.tensorrt = backend.artifact_info(model_path)
    summary.inputs = summary.inputs or signature.inputs
    summary.outputs = summary.outputs or signature.outputs
    result.summary = summary
    result.output_model = _place_output(model_path, spec.output)
    os.makedirs(os.path.join(job_dir, "artifacts"), exist_ok=True)
    with open(os.path.join(job_dir, "artifacts", "summary.txt"), "w") as f:
        f.write(backend.render_summary(summary) + "\n")
    if options.run_validation:
        result.validation = _validate(backend, spec, options, result, calib, signature.inputs, emit)
    result.seconds = round(time.time() - started, 3)
    return result


def _place_output(model_path: str, output: Optional[str]) -> str:
    if not output:
        return os.path.abspath(model_path)
    if os.path.exists(output) and os.listdir(output):
        raise AgentError(
            f"Output directory {output} already exists and is not empty.",
            "Choose another --output, or remove that directory first.",
        )
    link_tree(model_path, output)
    return os.path.abspath(output)


def _validate(
    backend: Backend,
    spec: ConvertSpec,
    options: ConvertOptions,
    result: ConvertResult,
    calib: Optional[CalibrationData],
    inputs: List[TensorInfo],
    emit: Emit,
) -> Any:
    from .validate import compare_models

    vopts = ValidateOptions(
        precision=result.precision or "FP32",
        atol=options.atol,
        rtol=options.rtol,
        signature_key=options.signature_key,
    )
    samples = None
    if calib is not None:
        order = [i.name for i in inputs]
        samples = (dict(zip(order, batch)) for batch in batches(calib, 1, vopts.samples, order))
    if spec.reference:
        from .validate import compare_with_reference

        emit("progress", "validating against the host's TensorFlow outputs", phase="validate")
        return compare_with_reference(
            result.output_model or "", spec.reference, vopts, emit, backend
        )
    emit("progress", "validating the converted model against the input model", phase="validate")
    report = compare_models(
        spec.model, result.output_model or "", vopts, samples, emit, converted_backend=backend
    )
    emit(
        "log",
        "validation {} (atol {}, rtol {})".format(
            "passed" if report.passed else "FAILED", report.atol, report.rtol
        ),
    )
    return report
