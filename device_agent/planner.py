"""Conversion planning: memory, cache key, the plan.

Pure functions (no TensorFlow import); Python 3.8, stdlib only. `make_plan` is what
`convert --dry-run` prints, so every number it uses is spelled out in `arithmetic`. The
segment-size sweep (choose_segment_size, run_sweep, sweep_sizes) lives in segments.py, the
out-of-memory retries and their remedies in backends/ladder.py (WORKSPACE_FLOOR too).

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
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from device_agent.backends import get as get_backend
from device_agent.backends import names as backend_names
from device_agent.backends.ladder import WORKSPACE_FLOOR, oom_remedies
from device_agent.errors import AgentError
from device_agent.protocol import (
    CalibPlan,
    ConversionPlan,
    ConverterKnobs,
    ConvertOptions,
    DeviceFacts,
    to_dict,
)
from device_agent.segments import choose_segment_size, run_sweep, sweep_sizes  # noqa: F401

MIB = 1 << 20

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
        lines = [
            f"{label}: unified memory (CPU and GPU share RAM): total {total} MB, "
            f"available {avail} MB, swap {swap} MB"
        ]
    else:
        lines = [
            f"{label} is not a Jetson: planning from host RAM the same way (a discrete "
            f"GPU's own memory is not measured): total {total} MB, available {avail} MB, "
            f"swap {swap} MB"
        ]
    extra = int(total * RESERVE_FRACTION)
    reserve = OS_RESERVE_MB + CUDA_CONTEXT_MB + extra
    lines.append(
        f"reserve for OS/CUDA context: OS {OS_RESERVE_MB} + CUDA context/cuDNN/cuBLAS "
        f"{CUDA_CONTEXT_MB} + 5% of RAM {extra} = {reserve} MB"
    )
    weights = _mb(model_bytes)
    host_copy = int(math.ceil(weights * HOST_COPY_FACTOR))
    swappable = min(swap, host_copy + TF_RUNTIME_MB)
    ceiling = total - reserve + swappable
    budget = min(avail + swap, ceiling)
    lines.append(
        f"budget = min(available {avail} + swap {swap}, total {total} - reserve "
        f"{reserve} + swappable host copies {swappable}) = {budget} MB"
    )
    factor = HOST_COPY_FACTOR + TF_COPY_FACTOR + ENGINE_FACTORS[precision]
    engine_mb = int(math.ceil(weights * ENGINE_FACTORS[precision]))
    working = int(math.ceil(weights * factor))
    lines.append(
        f"model weights {weights} MB x {factor:g} (TF copy 1 + frozen graph 1 + "
        f"{precision} engine build {ENGINE_FACTORS[precision]:g}) = {working} MB"
    )
    tf_mb = TF_RUNTIME_MB + TF_HEADROOM_MB
    lines.append(
        f"TensorFlow itself: runtime {TF_RUNTIME_MB} + allocator headroom "
        f"{TF_HEADROOM_MB} = {tf_mb} MB"
    )
    left = budget - working - tf_mb
    lines.append(f"left for the TensorRT workspace: {budget} - {working} - {tf_mb} = {left} MB")
    floor_mb = WORKSPACE_FLOOR // MIB
    if left < floor_mb:
        short, hint = oom_remedies(precision)
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
        lines.append(
            f"workspace = min({WORKSPACE_FRACTION:.0%} of {left} = {share} MB, "
            f"{cap_name} cap {cap // MIB} MB), floor {floor_mb} MB -> {ws_mb} MB"
        )
        workspace = ws_mb * MIB
    else:
        workspace = int(workspace_bytes)
        ws_mb = _mb(workspace)
        lines.append(f"workspace {ws_mb} MB as given ({workspace} bytes)")
        if ws_mb > left:
            lines.append(
                f"WARNING: the given workspace exceeds the {left} MB left; TensorRT "
                f"may skip tactics or run out of memory (the retry ladder halves it)"
            )
        elif workspace > cap:
            lines.append(f"note: above the {cap_name} default cap of {cap // MIB} MB")
        if workspace < WORKSPACE_FLOOR:
            lines.append(
                f"WARNING: below the {floor_mb} MB floor; TensorRT may find no "
                f"tactic for large layers and fall back to TensorFlow"
            )
    safe_limit = budget - host_copy - TF_RUNTIME_MB
    needed = weights + engine_mb + ws_mb + TF_HEADROOM_MB
    limit: Optional[int]
    if tf_limit_mb is not None:
        limit = int(tf_limit_mb)
        lines.append(f"TensorFlow GPU memory limit {limit} MB as given")
        if limit < needed:
            lines.append(
                f"WARNING: below the {needed} MB TensorFlow needs here (TF copy "
                f"{weights} + engine {engine_mb} + workspace {ws_mb} + headroom "
                f"{TF_HEADROOM_MB}); TensorRT allocates through TensorFlow"
            )
        elif limit > safe_limit:
            lines.append(f"WARNING: above the {safe_limit} MB that leaves the reserve free")
    elif facts.jetson is not None:
        limit = safe_limit
        lines.append(
            f"TensorFlow GPU memory limit = budget {budget} - frozen graph {host_copy}"
            f" - TF runtime {TF_RUNTIME_MB} = {limit} MB (a logical-device limit; it "
            f"holds TF's copy {weights}, the engine {engine_mb}, the workspace {ws_mb} "
            f"and activations: TensorRT allocates through TensorFlow's allocator)"
        )
    else:
        limit = None
        lines.append("TensorFlow GPU memory: growth (set_memory_growth), not a Jetson")
    return MemoryPlan(workspace, limit, lines, budget, working, left, cap)


# --------------------------------------------------------------------------- cache key

FINGERPRINT_KEYS = ("module", "compute_capability", "l4t", "tensorrt", "tensorflow")
HOST_SUFFIX = " host"
#: 2: the TensorRT version counts for engine-building backends only, and is known to the
#: job (version 1 keys were made from facts without it).
CACHE_KEY_VERSION = 2


def counts_tensorrt(backend: str) -> bool:
    """Whether the TensorRT version is part of `backend`'s cache key: it builds engines,
    or it is not a registered backend (`auto`, unresolved: counting it is the safe side)."""
    return backend not in backend_names() or get_backend(backend).builds_engines


def fingerprint(facts: DeviceFacts, engines: bool = True) -> Dict[str, Optional[str]]:
    """What a conversion depends on: module, compute capability, L4T, TensorFlow and, for a
    backend that builds engines (`engines`), TensorRT (loaded, else linked). The convert
    job and `plan` get theirs from `jobplan.key_fingerprint`, which knows TensorRT."""
    trt = (facts.tensorrt_loaded or facts.tensorrt_linked) if engines else None
    info = facts.jetson
    if info is None:
        module: Optional[str] = facts.machine + HOST_SUFFIX
        cc = l4t = None
    else:
        module, cc, l4t = info.device_class, info.compute_capability, info.l4t
    return {
        "module": module,
        "compute_capability": cc,
        "l4t": l4t,
        "tensorrt": trt,
        "tensorflow": facts.tensorflow,
    }


def artifact_options(options: ConverterKnobs) -> Dict[str, Any]:
    """The options that change the converted artifact: the converter's knobs, those only
    INT8 reads for INT8 alone (`protocol.ConverterKnobs`)."""
    int8, data = options.precision == "INT8", to_dict(options)
    return {
        f.name: data[f.name]
        for f in dataclasses.fields(ConverterKnobs)
        if int8 or not f.metadata.get("int8_only")
    }


def cache_key(
    model_digest: str,
    options: ConvertOptions,
    fp: Dict[str, Optional[str]],
    calib_digest: Optional[str] = None,
) -> str:
    """sha256 over canonical JSON of the model, artifact options, fingerprint (and the
    calibration data's digest for INT8). The TensorRT version counts only for a backend
    that builds engines (`counts_tensorrt(options.backend)`)."""
    fields = {k: fp.get(k) for k in FINGERPRINT_KEYS}
    if not counts_tensorrt(options.backend):
        fields["tensorrt"] = None
    payload = {
        "v": CACHE_KEY_VERSION,
        "model": model_digest,
        "options": artifact_options(options),
        "fingerprint": fields,
        "calib": calib_digest if options.precision == "INT8" else None,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def same_build_group(
    a: Dict[str, Optional[str]], b: Dict[str, Optional[str]], engines: bool = True
) -> bool:
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
    facts: DeviceFacts,
    options: ConvertOptions,
    backend: str,
    model_dir: str,
    model_bytes: int,
    model_digest: str,
    calib_samples: Optional[int],
    fallback_reason: Optional[str] = None,
    calib_digest: Optional[str] = None,
    fp: Optional[Dict[str, Optional[str]]] = None,
) -> ConversionPlan:
    """Everything resolved before the converter runs (what --dry-run prints). Only a
    backend that builds engines is refused for memory: the native one builds none. `fp`:
    the fingerprint the key is made from (`jobplan.key_fingerprint`; default: from
    `facts` as they are)."""
    engines = get_backend(backend)  # what the backend adds: Backend.plan
    try:
        memory = plan_memory(
            facts,
            model_bytes,
            options.precision,
            options.max_workspace_size_bytes,
            options.tf_gpu_memory_limit_mb,
        )
    except AgentError as exc:
        if engines.builds_engines:
            raise
        memory = MemoryPlan(0, options.tf_gpu_memory_limit_mb, [exc.message])
    if fp is None:
        fp = fingerprint(facts, engines.builds_engines)
    plan = ConversionPlan(
        backend=backend,
        workspace_arithmetic=list(memory.arithmetic),
        tf_gpu_memory_limit_mb=memory.tf_gpu_memory_limit_mb,
        build_shapes=[dict(shapes) for shapes in options.build_shapes],
        cache_key=cache_key(
            model_digest, dataclasses.replace(options, backend=backend), fp, calib_digest
        ),
        fingerprint=fp,
        fallback_reason=fallback_reason,
    )
    if engines.builds_engines:
        extra = engines.plan(options, memory.workspace_bytes, model_dir, calib_samples)
        plan.converter_kwargs, plan.env = extra.converter_kwargs, extra.env
        plan.workspace_bytes = extra.workspace_bytes
        plan.tensorrt = extra.tensorrt
        if extra.tensorrt is not None:
            plan.workspace_arithmetic.extend("tensorrt: " + n for n in extra.tensorrt.notes)
        plan.calibration = calibration_plan(options, calib_samples)
    else:
        plan.workspace_arithmetic.append(f"{backend} backend: no TensorRT workspace is used")
    return plan
