"""The out-of-memory ladder for any backend's build: a backend that builds engines is retried
with half the workspace on each out-of-memory error, down to the 32 MiB floor; one that
builds none is run once. The remedies for running out of memory (also those of the memory
plan's refusal, `planner.plan_memory`) are here. Python 3.8, stdlib only.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from ..errors import AgentError
from ..protocol import Attempt
from .base import Backend, BuildOutcome, BuildRequest

T = TypeVar("T")
MIB = 1 << 20

#: The smallest workspace: the memory plan never plans less and the ladder stops there.
WORKSPACE_FLOOR = 32 * MIB
#: The first workspace when the memory plan gave none (as TF-TRT's own default, 1 GiB).
DEFAULT_WORKSPACE = 1 << 30


def _mb(nbytes: int) -> int:
    return int(math.ceil(nbytes / MIB))


def oom_remedies(precision: str) -> Tuple[str, str]:
    """What frees memory for a conversion: (short list for a message, commands for the
    hint). Converting with FP16 is offered unless the precision is FP16 already."""
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


# --------------------------------------------------------------------------- out of memory

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


# --------------------------------------------------------------------------- the ladder


def run_with_retries(
    convert_fn: Callable[[int], T],
    first_workspace: int,
    floor: int = WORKSPACE_FLOOR,
    log: Optional[Callable[[str], None]] = None,
    precision: str = "FP32",
) -> Tuple[T, List[Attempt]]:
    """Call `convert_fn(workspace)`, halving the workspace down to `floor` on each
    out-of-memory error. A non-OOM error is re-raised at once; OOM at the floor raises
    AgentError with the remedies for `precision`. Either way the attempts so far are
    attached as `exc.attempts`."""
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
                short, hint = oom_remedies(precision)
                error = AgentError(
                    f"out of memory at every workspace size ({tried}); last error: "
                    f"{attempts[-1].error}. Remedies: {short}.",
                    hint,
                )
                _attach(error, attempts)
                raise error from exc
            smaller = max(int(floor), workspace // 2)
            if log:
                log(
                    f"out of memory with a {_mb(workspace)} MB workspace ({attempts[-1].error});"
                    f" retrying with {_mb(smaller)} MB"
                )
            workspace = smaller
            continue
        attempts.append(Attempt(workspace, "ok", None, time.monotonic() - start))
        return result, attempts


def build_with_ladder(
    backend: Backend, request: BuildRequest, output_dir: str
) -> Tuple[BuildOutcome, List[Attempt]]:
    """Build into `output_dir` (cleared before every attempt); returns the outcome and the
    attempts. Errors propagate with `exc.attempts` attached for engine builds."""

    def attempt(workspace: Optional[int]) -> BuildOutcome:
        shutil.rmtree(output_dir, ignore_errors=True)
        return backend.build(request, workspace, output_dir)

    if not backend.builds_engines:
        start = time.time()
        outcome = attempt(None)
        return outcome, [Attempt(None, "ok", seconds=round(time.time() - start, 3))]
    first = int(request.workspace_bytes or DEFAULT_WORKSPACE)
    return run_with_retries(
        attempt, first, log=request.log, precision=backend.precision(request.options)
    )
