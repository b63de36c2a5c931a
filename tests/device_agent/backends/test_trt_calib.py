"""trt_calib's calibrator logic with a plain base class standing for
trt.IInt8EntropyCalibrator2 and the numpy pycuda stand-in. The same calibrator as a subclass
of each line's REAL class is driven in test_trt_bindings.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List

import numpy as np
import pytest

from device_agent.backends import trt_calib
from device_agent.backends.cuda_io import BatchFeeder
from device_agent.errors import AgentError

sys.path.insert(0, str(Path(__file__).parent))
from cuda_standin import StandinCuda  # noqa: E402


class _Base:
    def __init__(self) -> None:
        self.base_initialised = True


def _trt() -> Any:
    return SimpleNamespace(__version__="10.3.0", IInt8EntropyCalibrator2=_Base)


def _setup(tmp_path: Path, n: int = 3) -> Any:
    cuda = StandinCuda()
    feeder = BatchFeeder(cuda, {"b": ((2, 2), np.float32), "a": ((3,), np.int32)})
    batches = [
        {"a": np.full(3, i, np.int32), "b": np.full((2, 2), i / 2, np.float32)} for i in range(n)
    ]
    path = str(tmp_path / "cache" / "calib.bin")
    return cuda, feeder, batches, path


def test_batches_land_in_device_memory_in_the_order_trt_names(tmp_path: Path) -> None:
    cuda, feeder, batches, path = _setup(tmp_path)
    calib = trt_calib.make_calibrator(_trt(), feeder, batches, 2, path)
    assert isinstance(calib, _Base) and calib.base_initialised
    assert calib.get_batch_size() == 2
    seen: List[Any] = []
    while True:
        ptrs = calib.get_batch(["a", "b"])
        if ptrs is None:
            break
        a = cuda.memory_at(ptrs[0]).data.view(np.int32)[:3]
        b = cuda.memory_at(ptrs[1]).data.view(np.float32)[:4]
        seen.append((a.copy(), b.copy()))
    assert len(seen) == 3 and calib.batches_fed == 3
    for i, (a, b) in enumerate(seen):
        assert np.array_equal(a, batches[i]["a"]) and np.allclose(b, batches[i]["b"].ravel())
    calib.check()


def test_unknown_input_names_end_calibration_with_the_error_kept(tmp_path: Path) -> None:
    _, feeder, batches, path = _setup(tmp_path)
    calib = trt_calib.make_calibrator(_trt(), feeder, batches, 2, path)
    assert calib.get_batch(["a", "zzz"]) is None
    with pytest.raises(AgentError, match="zzz"):
        calib.check()


def test_cache_is_absent_then_written_durably_and_read_back(tmp_path: Path) -> None:
    _, feeder, batches, path = _setup(tmp_path)
    calib = trt_calib.make_calibrator(_trt(), feeder, batches, 2, path)
    assert calib.read_calibration_cache() is None
    calib.write_calibration_cache(memoryview(b"TRT-8601-EntropyCalibration2\n"))
    assert Path(path).read_bytes() == b"TRT-8601-EntropyCalibration2\n"
    assert os.listdir(os.path.dirname(path)) == ["calib.bin"]  # no temp file left
    again = trt_calib.make_calibrator(_trt(), feeder, batches, 2, path)
    assert again.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n"
    Path(path).write_bytes(b"")
    assert again.read_calibration_cache() is None  # an empty file is no cache


def test_no_cache_path_keeps_nothing(tmp_path: Path) -> None:
    _, feeder, batches, _ = _setup(tmp_path)
    calib = trt_calib.make_calibrator(_trt(), feeder, batches, 1, None)
    calib.write_calibration_cache(b"x")
    assert calib.read_calibration_cache() is None


def test_tensorrt_11_is_refused_with_the_fix(tmp_path: Path) -> None:
    _, feeder, batches, path = _setup(tmp_path)
    with pytest.raises(AgentError, match="11") as info:
        trt_calib.make_calibrator(SimpleNamespace(__version__="11.4.0"), feeder, batches, 2, path)
    assert "qdq" in (info.value.hint or "").lower()


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    _, feeder, batches, path = _setup(tmp_path)
    with pytest.raises(AgentError):
        trt_calib.make_calibrator(_trt(), feeder, batches, 0, path)
