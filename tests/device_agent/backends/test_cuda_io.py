"""cuda_io's own logic (shapes, dtypes, names, order, what is timed) against a numpy
stand-in for pycuda.driver. The GPU proof of the same code with the real pycuda on an
NVIDIA GPU is benchmarks/gpu/pycuda_proof.py (numbers in the issue 12 note)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

from device_agent.backends.cuda_io import BatchFeeder, IOBuffers, time_runs
from device_agent.errors import AgentError

sys.path.insert(0, str(Path(__file__).parent))
from cuda_standin import StandinCuda as _Cuda  # noqa: E402


def test_round_trip_keeps_every_byte() -> None:
    cuda = _Cuda()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3), dtype=np.float32)
    ids = rng.integers(0, 99, (2, 7), dtype=np.int32)
    bufs = IOBuffers(cuda, {"x": ((2, 5, 3), np.float32), "ids": ((2, 7), "int32")})
    bufs.put("x", x)
    bufs.put("ids", ids)
    assert np.array_equal(bufs.get("x"), x) and np.array_equal(bufs.get("ids"), ids)
    assert bufs.ptr("x") != bufs.ptr("ids")
    bufs.free()
    assert all(a.freed for a in cuda.allocs)


@pytest.mark.parametrize(
    ("name", "array", "word"),
    [
        ("x", np.zeros((1, 5, 3), np.float32), "shape"),
        ("x", np.zeros((2, 5, 3), np.float64), "float64"),
        ("y", np.zeros((2, 5, 3), np.float32), "No tensor named 'y'"),
    ],
)
def test_wrong_batches_are_refused_by_name(name: str, array: np.ndarray, word: str) -> None:
    bufs = IOBuffers(_Cuda(), {"x": ((2, 5, 3), np.float32)})
    with pytest.raises(AgentError, match=word):
        bufs.put(name, array)


def test_dynamic_dimensions_need_a_shape() -> None:
    with pytest.raises(AgentError, match="dynamic") as info:
        IOBuffers(_Cuda(), {"x": ((-1, 5), np.float32)})
    assert "--input-shape" in (info.value.hint or "")


def test_feeder_answers_addresses_in_input_order_after_the_copies() -> None:
    cuda = _Cuda()
    feeder = BatchFeeder(cuda, {"b": ((2,), np.float32), "a": ((3,), np.float32)})
    ptrs = feeder.feed({"a": np.ones(3, np.float32), "b": np.zeros(2, np.float32)})
    assert ptrs == [feeder.buffers.ptr("b"), feeder.buffers.ptr("a")]
    assert cuda.calls[-1] == "sync"  # TensorRT may read the memory once get_batch returns
    with pytest.raises(AgentError, match="lacks a"):
        feeder.feed({"b": np.zeros(2, np.float32)})


@pytest.mark.parametrize("transfers", [True, False])
def test_time_runs_times_the_copies_only_when_asked(transfers: bool) -> None:
    cuda = _Cuda()
    bufs = IOBuffers(cuda, {"in": ((4,), np.float32), "out": ((4,), np.float32)})
    launched: List[Any] = []
    times = time_runs(
        cuda,
        bufs,
        launched.append,
        iterations=3,
        warmup=2,
        inputs={"in": np.ones(4, np.float32)},
        outputs=["out"],
        transfers=transfers,
    )
    assert times == [1.5, 1.5, 1.5] and len(launched) == 5
    per_run = cuda.calls[cuda.calls.index("event") :]
    copies = per_run.count("htod") + per_run.count("dtoh")
    assert copies == (10 if transfers else 0)
