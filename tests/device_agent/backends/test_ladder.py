"""The out-of-memory ladder (backends/ladder.py): the real out-of-memory texts of the
converter's stack, the halving down to the floor with the remedies, and the ladder around
the real tftrt backend."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from device_agent import planner
from device_agent.backends import ladder, tftrt
from device_agent.errors import AgentError, BackendUnavailable
from device_agent.protocol import ConvertOptions, DeviceFacts

MB = 1 << 20

# Real texts (sources in ladder.py's OOM_PATTERNS comment).
TF_OOM = (
    "Graph execution error:\n\nOOM when allocating tensor with shape[1,112,112,96] and type "
    "float on /job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc\n"
    "\t [[{{node TRTEngineOp_000_000}}]]"
)
TRT_OOM = (
    "[TRT] Requested amount of GPU memory (15485030400 bytes) could not be allocated. "
    "There may not be enough free memory for allocation to succeed."
)
OOM_TEXTS = [
    TF_OOM,
    TRT_OOM,
    "Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.59GiB. The caller indicates "
    "that this is not a failure",
    "failed to allocate 4.51G (4839756032 bytes) from device: CUDA_ERROR_OUT_OF_MEMORY: out of "
    "memory",
    "[virtualMemoryBuffer.cpp::resizePhysical::154] Error Code 2: OutOfMemory (Requested size "
    "was 16581132288 bytes.)",
    "[defaultAllocator.cpp::allocate::31] Error Code 1: Cuda Runtime (out of memory)",
    "[ERROR] Tactic Device request: 2168MB Available: 1536MB. Device memory is insufficient to "
    "use tactic.",
    "[WARNING] Skipping tactic 1 due to oom error on requested size of 2168 detected for tactic 1.",
    "[W] [TRT] GPU memory allocation error during getBestTactic: conv0_fwd",
    "[TensorRT] ERROR: FAILED_ALLOCATION: std::bad_alloc",
]
NOT_OOM_TEXTS = [
    "Tensorflow has not been built with TensorRT support.",
    "Incompatible TensorRT major version",
    "Specified device is not a GPU: /device:CPU:0",
    "Could not find any implementation for node conv0_fwd",
    "Op type not registered 'CreateTRTResourceHandle'",
]


@pytest.mark.parametrize("text", OOM_TEXTS)
def test_real_out_of_memory_texts_are_recognized(text: str) -> None:
    assert ladder.is_out_of_memory(text)
    assert ladder.is_out_of_memory(RuntimeError(text))


@pytest.mark.parametrize("text", NOT_OOM_TEXTS)
def test_other_errors_are_not_out_of_memory(text: str) -> None:
    assert not ladder.is_out_of_memory(text)
    assert not ladder.is_out_of_memory(RuntimeError(text))


def test_real_tensorflow_oom_exception_types() -> None:
    import tensorflow as tf

    assert ladder.is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, TF_OOM))
    assert ladder.is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "exhausted"))
    assert ladder.is_out_of_memory(MemoryError())
    assert not ladder.is_out_of_memory(tf.errors.InvalidArgumentError(None, None, "bad shape"))


class ConverterDouble:
    """The one double here: a backend that OOMs above `fits_at` with the real texts."""

    def __init__(self, fits_at: int, error: Exception) -> None:
        self.fits_at, self.error, self.calls = fits_at, error, []  # type: ignore[var-annotated]

    def __call__(self, workspace: int) -> str:
        self.calls.append(workspace)
        if workspace > self.fits_at:
            raise self.error
        return f"converted with {workspace}"


def test_oom_ladder_halves_until_it_fits() -> None:
    import tensorflow as tf

    double = ConverterDouble(64 * MB, tf.errors.ResourceExhaustedError(None, None, TF_OOM))
    logs: List[str] = []
    result, attempts = ladder.run_with_retries(double, 256 * MB, log=logs.append)
    assert result == f"converted with {64 * MB}"
    assert double.calls == [256 * MB, 128 * MB, 64 * MB]
    assert [(a.workspace_bytes, a.outcome) for a in attempts] == [
        (256 * MB, "oom"), (128 * MB, "oom"), (64 * MB, "ok")]  # fmt: skip
    assert attempts[0].error is not None and attempts[0].error.startswith(
        "ResourceExhaustedError: OOM when allocating tensor with shape[1,112,112,96]"
    )
    assert attempts[-1].error is None and all(a.seconds >= 0 for a in attempts)
    assert "retrying with 128 MB" in logs[0]


def test_oom_ladder_stops_at_the_floor_with_the_attempts_and_remedies() -> None:
    double = ConverterDouble(0, RuntimeError(TRT_OOM))
    with pytest.raises(AgentError) as info:
        ladder.run_with_retries(double, 200 * MB)
    assert double.calls == [200 * MB, 100 * MB, 50 * MB, ladder.WORKSPACE_FLOOR]
    attempts = info.value.attempts  # type: ignore[attr-defined]
    assert [a.outcome for a in attempts] == ["oom"] * 4
    assert attempts[-1].workspace_bytes == ladder.WORKSPACE_FLOOR
    message = str(info.value)
    assert "200 MB, 100 MB, 50 MB, 32 MB" in message and "Requested amount of GPU memory" in message
    assert "swap" in message and "swapfile" in (info.value.hint or "")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_non_oom_error_is_reraised_at_once() -> None:
    double = ConverterDouble(0, ValueError("Specified device is not a GPU: /device:CPU:0"))
    with pytest.raises(ValueError) as info:
        ladder.run_with_retries(double, 256 * MB)
    assert double.calls == [256 * MB]
    attempts = info.value.attempts  # type: ignore[attr-defined]
    assert [(a.outcome, a.error) for a in attempts] == [
        ("error", "ValueError: Specified device is not a GPU: /device:CPU:0")]  # fmt: skip


def test_ladder_around_the_real_tftrt_backend(tmp_path: Path) -> None:
    # This TensorFlow has no TensorRT: the real backend's error is not an OOM -> no retry.
    options = ConvertOptions(backend="tftrt", precision="FP16")

    def convert(workspace: int) -> Any:
        opts = dataclasses.replace(options, max_workspace_size_bytes=workspace)
        return tftrt.convert(opts, str(tmp_path), str(tmp_path / "out"), str(tmp_path),
                             None, None, lambda _: None)  # fmt: skip

    with pytest.raises(BackendUnavailable) as info:
        ladder.run_with_retries(convert, 256 * MB)
    assert [a.outcome for a in info.value.attempts] == ["error"]  # type: ignore[attr-defined]


def test_the_remedies_at_the_floor_follow_the_precision() -> None:
    for precision, offers_fp16 in (("FP32", True), ("INT8", True), ("FP16", False)):
        with pytest.raises(AgentError) as info:
            ladder.run_with_retries(
                ConverterDouble(0, RuntimeError(TRT_OOM)), 64 * MB, precision=precision
            )
        short, hint = ladder.oom_remedies(precision)
        assert f"Remedies: {short}." in info.value.message and info.value.hint == hint
        assert ("convert with FP16" in info.value.message) is offers_fp16, precision
        assert ("--precision FP16" in hint) is offers_fp16, precision


@pytest.mark.parametrize("precision", ["FP32", "FP16"])
def test_the_memory_plan_refuses_with_the_same_remedies(precision: str) -> None:
    facts = DeviceFacts(
        agent_version="0", protocol=1, python="3.8", machine="x86_64", hostname="h",
        memory_total_mb=2048, memory_available_mb=1024, swap_total_mb=0, disk_free_mb=1,
    )  # fmt: skip
    with pytest.raises(AgentError) as info:
        planner.plan_memory(facts, 2000 * MB, precision)
    short, hint = ladder.oom_remedies(precision)
    assert f"Remedies: {short}." in info.value.message and info.value.hint == hint


def test_the_ladder_does_not_import_the_planner() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import device_agent.backends.ladder\n"
        "print('device_agent.planner' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(Path(__file__).parents[3])],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert out.strip() == "False"
