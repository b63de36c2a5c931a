"""Conversion planning: memory, OOM retries, segment-size sweep, cache key, the plan.

Pure functions (no TensorFlow import); Python 3.8, stdlib only. `make_plan` is what
`convert --dry-run` prints, so every number it uses is spelled out in `arithmetic`. The
segment-size sweep (choose_segment_size, run_sweep, sweep_sizes) lives in segments.py.

Memory (Jetson RAM is unified: CPU and GPU allocate from it), all in MB:
  reserve   = OS 512 + CUDA context/cuDNN/cuBLAS 512 + 5% of RAM
  budget    = min(available + swap, total - reserve + swappable host copies)
  working   = weights x (TF copy 1 + frozen graph 1 + engine: FP32 1, FP16 0.5, INT8 1.25)
  left      = budget - working - TensorFlow (runtime 512 + allocator headroom 256)
  workspace = clamp(50% of left, floor 32 MiB, per-board cap)
  TF limit  = budget - frozen graph - TF runtime (Jetson only: TF-TRT allocates engines and
              workspace through TensorFlow's allocator, guide 6.2 and 8.1)
TF keeps the variables (1x) and the frozen GraphDef holds them again as constants (1x);
TensorRT copies them into the engine: FP16 casts to half (0.5x), INT8 adds an FP32
calibration build (1x) to the int8 weights (0.25x). Swap cannot hold TensorRT/CUDA memory
(pinned on Tegra) but lets other processes and the host-only copies page out. Stock
JetPack's zram counts as swap yet lives in RAM: the refusal hint says to disable it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from device_agent.backends import get as get_backend
from device_agent.errors import AgentError
from device_agent.protocol import Attempt, CalibPlan, ConversionPlan, ConvertOptions, DeviceFacts
from device_agent.segments import choose_segment_size, run_sweep, sweep_sizes  # noqa: F401

T = TypeVar("T")
Log = Optional[Callable[[str], None]]
MIB = 1 << 20

WORKSPACE_FLOOR = 32 * MIB
WORKSPACE_FRACTION = 0.5
OS_RESERVE_MB = 512
# cuBLAS + cuDNN init on a Nano logs "GPU +154" and "GPU +241" MiB (triton-inference-server
# /server#4087), plus the CUDA context itself.
CUDA_CONTEXT_MB = 512
RESERVE_FRACTION = 0.05
TF_RUNTIME_MB = 512  # libtensorflow + Python + Grappler, host side
TF_HEADROOM_MB = 256  # TF allocator room for native-segment activations and input batches
HOST_COPY_FACTOR = 1.0  # the frozen GraphDef's constants (host only: swappable)
TF_COPY_FACTOR = 1.0  # TF's loaded variables (on the GPU allocator: pinned)
ENGINE_FACTORS = {"FP32": 1.0, "FP16": 0.5, "INT8": 1.25}
#: (largest nominal board memory in MB, default workspace cap in bytes); larger: last cap.
WORKSPACE_CAPS: Tuple[Tuple[int, int], ...] = (
    (2048, 128 * MIB), (4096, 256 * MIB), (8192, 1024 * MIB),
    (16384, 2048 * MIB), (32768, 3072 * MIB), (65536, 4096 * MIB),
)  # fmt: skip
WORKSPACE_CAP_MAX = 8192 * MIB


@dataclass
class MemoryPlan:
    """Workspace, TF GPU memory limit (None = memory growth) and the arithmetic."""

    workspace_bytes: int
    tf_gpu_memory_limit_mb: Optional[int]
    arithmetic: List[str] = field(default_factory=list)
    budget_mb: int = 0
    working_set_mb: int = 0
    left_mb: int = 0
    cap_bytes: int = 0


def workspace_cap(board_mb: int) -> int:
    """Default workspace cap (bytes) for a board of `board_mb` nominal memory."""
    for limit_mb, cap in WORKSPACE_CAPS:
        if board_mb <= limit_mb:
            return cap
    return WORKSPACE_CAP_MAX


def _mb(nbytes: int) -> int:
    return int(math.ceil(nbytes / MIB))


def _remedies(precision: str) -> Tuple[str, str]:
    """(short list for a message, commands for the hint)."""
    short = "add swap (e.g. a 4 GB swapfile; disable zram), use a smaller batch / build shapes"
    hint = (
        "Add a 4 GB swapfile: sudo fallocate -l 4G /swapfile && sudo chmod 600 /swapfile && "
        "sudo mkswap /swapfile && sudo swapon /swapfile (and in /etc/fstab); disable zram, "
        "which swaps into RAM: sudo systemctl disable nvzramconfig. Build with a batch of 1 / "
        "smaller --input-shape. "
    )
    if precision != "FP16":
        short += ", convert with FP16"
        hint += "Convert with --precision FP16 (the engine's weights halve). "
    short += ", close other processes"
    hint += "Close other processes (the desktop: sudo systemctl isolate multi-user.target)."
    return short, hint


def _board(facts: DeviceFacts) -> Tuple[str, int, Optional[str]]:
    """(label, nominal memory for the cap, device class) of the device."""
    info = facts.jetson
    if info is None:
        return f"{facts.machine} host {facts.hostname!r}", facts.memory_total_mb, None
    label = info.module + (f" ({info.device_class})" if info.device_class else "")
    return label, info.memory_mb or facts.memory_total_mb, info.device_class


def plan_memory(
    facts: DeviceFacts,
    model_bytes: int,
    precision: str,
    workspace_bytes: Optional[int] = None,
    tf_limit_mb: Optional[int] = None,
) -> MemoryPlan:
    """Workspace and TF GPU memory limit for this device and model (see module doc).
    Raises AgentError, with the numbers and remedies, when the model cannot fit."""
    if precision not in ENGINE_FACTORS:
        raise AgentError(f"unknown precision {precision!r}", "Use FP32, FP16 or INT8.")
    label, board_mb, device_class = _board(facts)
    total, avail, swap = facts.memory_total_mb, facts.memory_available_mb, facts.swap_total_mb
    if facts.jetson is not None:
        lines = [f"{label}: unified memory (CPU and GPU share RAM): total {total} MB, "
                 f"available {avail} MB, swap {swap} MB"]
    else:
        lines = [f"{label} is not a Jetson: planning from host RAM the same way (a discrete "
                 f"GPU's own memory is not measured): total {total} MB, available {avail} MB, "
                 f"swap {swap} MB"]
    extra = int(total * RESERVE_FRACTION)
    reserve = OS_RESERVE_MB + CUDA_CONTEXT_MB + extra
    lines.append(f"reserve for OS/CUDA context: OS {OS_RESERVE_MB} + CUDA context/cuDNN/cuBLAS "
                 f"{CUDA_CONTEXT_MB} + 5% of RAM {extra} = {reserve} MB")
    weights = _mb(model_bytes)
    host_copy = int(math.ceil(weights * HOST_COPY_FACTOR))
    swappable = min(swap, host_copy + TF_RUNTIME_MB)
    ceiling = total - reserve + swappable
    budget = min(avail + swap, ceiling)
    lines.append(f"budget = min(available {avail} + swap {swap}, total {total} - reserve "
                 f"{reserve} + swappable host copies {swappable}) = {budget} MB")
    factor = HOST_COPY_FACTOR + TF_COPY_FACTOR + ENGINE_FACTORS[precision]
    engine_mb = int(math.ceil(weights * ENGINE_FACTORS[precision]))
    working = int(math.ceil(weights * factor))
    lines.append(f"model weights {weights} MB x {factor:g} (TF copy 1 + frozen graph 1 + "
                 f"{precision} engine build {ENGINE_FACTORS[precision]:g}) = {working} MB")
    tf_mb = TF_RUNTIME_MB + TF_HEADROOM_MB
    lines.append(f"TensorFlow itself: runtime {TF_RUNTIME_MB} + allocator headroom "
                 f"{TF_HEADROOM_MB} = {tf_mb} MB")
    left = budget - working - tf_mb
    lines.append(f"left for the TensorRT workspace: {budget} - {working} - {tf_mb} = {left} MB")
    floor_mb = WORKSPACE_FLOOR // MIB
    if left < floor_mb:
        short, hint = _remedies(precision)
        raise AgentError(
            f"{label}: a {weights} MB {precision} model does not fit: budget {budget} MB "
            f"(total {total}, available {avail}, swap {swap}, reserve {reserve}) - working set "
            f"{working} MB - TensorFlow {tf_mb} MB = {left} MB, below the {floor_mb} MB "
            f"workspace floor. Remedies: {short}.",
            hint,
        )
    cap = workspace_cap(board_mb)
    cap_name = device_class or f"{board_mb} MB board"
    if workspace_bytes is None:
        share = int(left * WORKSPACE_FRACTION)
        ws_mb = max(floor_mb, min(share, cap // MIB))
        lines.append(f"workspace = min({WORKSPACE_FRACTION:.0%} of {left} = {share} MB, "
                     f"{cap_name} cap {cap // MIB} MB), floor {floor_mb} MB -> {ws_mb} MB")
        workspace = ws_mb * MIB
    else:
        workspace = int(workspace_bytes)
        ws_mb = _mb(workspace)
        lines.append(f"workspace {ws_mb} MB as given ({workspace} bytes)")
        if ws_mb > left:
            lines.append(f"WARNING: the given workspace exceeds the {left} MB left; TensorRT "
                         f"may skip tactics or run out of memory (the retry ladder halves it)")
        elif workspace > cap:
            lines.append(f"note: above the {cap_name} default cap of {cap // MIB} MB")
        if workspace < WORKSPACE_FLOOR:
            lines.append(f"WARNING: below the {floor_mb} MB floor; TensorRT may find no "
                         f"tactic for large layers and fall back to TensorFlow")
    safe_limit = budget - host_copy - TF_RUNTIME_MB
    needed = weights + engine_mb + ws_mb + TF_HEADROOM_MB
    limit: Optional[int]
    if tf_limit_mb is not None:
        limit = int(tf_limit_mb)
        lines.append(f"TensorFlow GPU memory limit {limit} MB as given")
        if limit < needed:
            lines.append(f"WARNING: below the {needed} MB TensorFlow needs here (TF copy "
                         f"{weights} + engine {engine_mb} + workspace {ws_mb} + headroom "
                         f"{TF_HEADROOM_MB}); TensorRT allocates through TensorFlow")
        elif limit > safe_limit:
            lines.append(f"WARNING: above the {safe_limit} MB that leaves the reserve free")
    elif facts.jetson is not None:
        limit = safe_limit
        lines.append(f"TensorFlow GPU memory limit = budget {budget} - frozen graph {host_copy}"
                     f" - TF runtime {TF_RUNTIME_MB} = {limit} MB (a logical-device limit; it "
                     f"holds TF's copy {weights}, the engine {engine_mb}, the workspace {ws_mb} "
                     f"and activations: TensorRT allocates through TensorFlow's allocator)")
    else:
        limit = None
        lines.append("TensorFlow GPU memory: growth (set_memory_growth), not a Jetson")
    return MemoryPlan(workspace, limit, lines, budget, working, left, cap)


# --------------------------------------------------------------------------- OOM ladder

# Real out-of-memory texts of the converter's stack (case-insensitive):
# - TensorFlow: "OOM when allocating tensor with shape[...]" (ResourceExhaustedError) and
#   "Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.59GiB" (both strings are in
#   libtensorflow_framework.so.2 of TF 2.15; logs in jeng1220/KerasToTensorRT#1, #2);
#   "Out of memory while trying to allocate", "Failed to allocate request for" (same lib).
# - CUDA via TF: "failed to allocate 4.51G (...) from device: CUDA_ERROR_OUT_OF_MEMORY: out
#   of memory" (tensorflow/tensorflow#36724, TF-TRT INT8 conversion).
# - TensorRT: "Requested amount of GPU memory (15485030400 bytes) could not be allocated",
#   "Error Code 1: Cuda Runtime (out of memory)" (NVIDIA/TensorRT#4258), "Error Code 2:
#   OutOfMemory" (NVIDIA/TensorRT#4254), "GPU memory allocation error during getBestTactic"
#   (NVIDIA/TensorRT#477), "Tactic Device request: 2168MB Available: 1536MB. Device memory is
#   insufficient to use tactic." / "Skipping tactic 1 due to oom error" on a Nano
#   (triton-inference-server/server#4087), "FAILED_ALLOCATION: std::bad_alloc"
#   (jkjung-avt/tensorrt_demos#105, enazoe/yolo-tensorrt#61).
# A process killed by the kernel OOM killer ("Killed") cannot be retried in-process.
OOM_PATTERNS = tuple(
    re.compile(p, re.I)
    for p in (
        r"\bOOM when allocating",
        r"ran out of memory trying to allocate",
        r"out of memory while trying to allocate",
        r"failed to allocate request for",
        r"CUDA_ERROR_OUT_OF_MEMORY",
        r"requested amount of GPU memory.*could not be allocated",
        r"\bOutOfMemory\b",
        r"\bout of memory\b",
        r"GPU memory allocation error",
        r"Tactic Device request: *\d+ *MB.*Available",
        r"device memory is insufficient",
        r"skipping tactic.*(oom error|insufficient memory)",
        r"std::bad_alloc",
    )
)
OOM_EXCEPTIONS = ("ResourceExhaustedError",)  # tf.errors; MemoryError is checked too


def _oom_line(text: str) -> Optional[str]:
    for line in text.splitlines():
        if any(p.search(line) for p in OOM_PATTERNS):
            return line.strip()
    return None


def is_out_of_memory(exc_or_text: Any) -> bool:
    """True for the converter stack's out-of-memory errors (an exception or its text)."""
    if isinstance(exc_or_text, BaseException):
        if isinstance(exc_or_text, MemoryError):
            return True
        if any(cls.__name__ in OOM_EXCEPTIONS for cls in type(exc_or_text).__mro__):
            return True
    return _oom_line(str(exc_or_text)) is not None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    line = _oom_line(text) or next((s.strip() for s in text.splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {line}"[:300]


def _attach(exc: BaseException, attempts: List[Attempt]) -> None:
    try:
        exc.attempts = list(attempts)  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover - exceptions without a __dict__
        pass


def run_with_retries(
    convert_fn: Callable[[int], T],
    first_workspace: int,
    floor: int = WORKSPACE_FLOOR,
    log: Log = None,
) -> Tuple[T, List[Attempt]]:
    """Call `convert_fn(workspace)`, halving the workspace down to `floor` on each
    out-of-memory error. A non-OOM error is re-raised at once; OOM at the floor raises
    AgentError. Either way the attempts so far are attached as `exc.attempts`."""
    attempts: List[Attempt] = []
    workspace = int(first_workspace)
    while True:
        start = time.monotonic()
        try:
            result = convert_fn(workspace)
        except Exception as exc:
            outcome = "oom" if is_out_of_memory(exc) else "error"
            attempts.append(Attempt(workspace, outcome, _first_line(exc), time.monotonic() - start))
            if outcome == "error":
                _attach(exc, attempts)
                raise
            if workspace <= floor:
                tried = ", ".join(f"{_mb(a.workspace_bytes or 0)} MB" for a in attempts)
                short, hint = _remedies("FP32")
                error = AgentError(
                    f"out of memory at every workspace size ({tried}); last error: "
                    f"{attempts[-1].error}. Remedies: {short}.",
                    hint,
                )
                _attach(error, attempts)
                raise error from exc
            smaller = max(int(floor), workspace // 2)
            if log:
                log(f"out of memory with a {_mb(workspace)} MB workspace ({attempts[-1].error});"
                    f" retrying with {_mb(smaller)} MB")
            workspace = smaller
            continue
        attempts.append(Attempt(workspace, "ok", None, time.monotonic() - start))
        return result, attempts


# --------------------------------------------------------------------------- cache key

FINGERPRINT_KEYS = ("module", "compute_capability", "l4t", "tensorrt", "tensorflow")
HOST_SUFFIX = " host"
#: ConvertOptions fields that do not change the converted SavedModel: checks after the
#: conversion, report/visualization outputs, the cache switch, and TF's allocator limit
#: (not stored in the graph, unlike max_workspace_size_bytes which TRTEngineOp keeps).
NON_ARTIFACT_FIELDS = ("run_validation", "atol", "rtol", "use_cache", "show_detailed_report",
                       "export_graph_viz", "tf_gpu_memory_limit_mb")
#: Only INT8 conversions read these (converter_kwargs sets use_calibration for INT8 only).
CALIBRATION_FIELDS = ("use_calibration", "calibration_batches", "calibration_batch_size")
CACHE_KEY_VERSION = 1


def fingerprint(facts: DeviceFacts) -> Dict[str, Optional[str]]:
    """What an engine depends on: module, compute capability, L4T, TensorRT, TensorFlow."""
    trt = facts.tensorrt_loaded or facts.tensorrt_linked
    info = facts.jetson
    if info is None:
        module: Optional[str] = facts.machine + HOST_SUFFIX
        cc = l4t = None
    else:
        module, cc, l4t = info.device_class, info.compute_capability, info.l4t
    return {"module": module, "compute_capability": cc, "l4t": l4t, "tensorrt": trt,
            "tensorflow": facts.tensorflow}


def artifact_options(options: ConvertOptions) -> Dict[str, Any]:
    """The options that change the converted artifact (see NON_ARTIFACT_FIELDS)."""
    data = options.to_dict()
    dropped = NON_ARTIFACT_FIELDS + (CALIBRATION_FIELDS if options.precision != "INT8" else ())
    for name in dropped:
        data.pop(name, None)
    return data


def cache_key(
    model_digest: str, options: ConvertOptions, fp: Dict[str, Optional[str]],
    calib_digest: Optional[str] = None,
) -> str:
    """sha256 over canonical JSON of the model, artifact options, fingerprint (and the
    calibration data's digest for INT8)."""
    payload = {
        "v": CACHE_KEY_VERSION,
        "model": model_digest,
        "options": artifact_options(options),
        "fingerprint": {k: fp.get(k) for k in FINGERPRINT_KEYS},
        "calib": calib_digest if options.precision == "INT8" else None,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_build_group(a: Dict[str, Optional[str]], b: Dict[str, Optional[str]],
                     engines: bool = True) -> bool:
    """Whether engines built on one can be reused on the other: every fingerprint field
    equal, and for Jetsons a known module, L4T and TensorRT (engine portability, ref 5).
    With `engines` False (the native backend builds none) TensorRT need not be known."""
    if any(a.get(k) != b.get(k) for k in FINGERPRINT_KEYS):
        return False
    module = a.get("module")
    if module is None:
        return False
    if module.endswith(HOST_SUFFIX):
        return True
    return a.get("l4t") is not None and (a.get("tensorrt") is not None or not engines)


# --------------------------------------------------------------------------- the plan


def calibration_plan(options: ConvertOptions, samples: Optional[int]) -> Optional[CalibPlan]:
    """INT8 calibration batches: min(requested, samples // batch size); None when the
    conversion does not calibrate; synthesized inputs (samples None) use the request."""
    if options.precision != "INT8" or not options.use_calibration:
        return None
    size = max(1, int(options.calibration_batch_size))
    if samples is None:
        return CalibPlan(batches=options.calibration_batches, batch_size=size)
    batches = min(options.calibration_batches, samples // size)
    if batches < 1:
        raise AgentError(
            f"INT8 calibration needs at least one batch of {size} samples; the calibration "
            f"data has {samples}.",
            "Push more samples with --calib, lower calibration_batch_size, or use FP16.",
        )
    return CalibPlan(batches=batches, batch_size=size, samples_available=samples)


def make_plan(
    facts: DeviceFacts, options: ConvertOptions, backend: str, model_dir: str, model_bytes: int,
    model_digest: str, calib_samples: Optional[int], fallback_reason: Optional[str] = None,
    calib_digest: Optional[str] = None,
) -> ConversionPlan:
    """Everything resolved before the converter runs (what --dry-run prints). Only the
    tftrt backend is refused for memory: the native one builds no engine."""
    engines = get_backend(backend)  # what the backend adds: Backend.plan
    try:
        memory = plan_memory(facts, model_bytes, options.precision,
                             options.max_workspace_size_bytes, options.tf_gpu_memory_limit_mb)
    except AgentError as exc:
        if engines.builds_engines:
            raise
        memory = MemoryPlan(0, options.tf_gpu_memory_limit_mb, [exc.message])
    fp = fingerprint(facts)
    plan = ConversionPlan(
        backend=backend,
        workspace_arithmetic=list(memory.arithmetic),
        tf_gpu_memory_limit_mb=memory.tf_gpu_memory_limit_mb,
        build_shapes=[dict(shapes) for shapes in options.build_shapes],
        cache_key=cache_key(model_digest, dataclasses.replace(options, backend=backend), fp,
                            calib_digest),
        fingerprint=fp,
        fallback_reason=fallback_reason,
    )
    if engines.builds_engines:
        extra = engines.plan(options, memory.workspace_bytes, model_dir)
        plan.converter_kwargs, plan.env = extra.converter_kwargs, extra.env
        plan.workspace_bytes = extra.workspace_bytes
        plan.calibration = calibration_plan(options, calib_samples)
    else:
        plan.workspace_arithmetic.append(f"{backend} backend: no TensorRT workspace is used")
    return plan
