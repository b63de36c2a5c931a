"""EngineRunner's logic (shapes, buffers, copies, what timed_call does, graph capture) with
a tiny engine in plain Python (y = 2x + 1, computed from the stand-in's device memory) and
the numpy pycuda stand-in. Its calls against each line's real bindings are checked in
test_trt_bindings.py; the real pycuda runs in benchmarks/gpu/pycuda_proof.py."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from device_agent.backends.trt_runner import EngineRunner
from device_agent.errors import AgentError

sys.path.insert(0, str(Path(__file__).parent))
from cuda_standin import StandinCuda, StandinCudart  # noqa: E402

DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 BOOL")
TensorIOMode = enum.Enum("TensorIOMode", "INPUT OUTPUT")


class _Context:
    def __init__(self, cuda: StandinCuda, ok: bool) -> None:
        self.cuda, self.ok = cuda, ok
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.addr: Dict[str, int] = {}
        self.executes = 0
        self.shape_calls: List[Tuple[int, ...]] = []

    def set_input_shape(self, name: str, shape: Tuple[int, ...]) -> bool:
        self.shape_calls.append(tuple(shape))
        self.shapes[name] = tuple(shape)
        return shape[0] <= 16  # the profile's max batch

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return self.shapes["x"]

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, handle: int) -> bool:
        n = int(np.prod(self.shapes["x"]))
        x = self.cuda.memory_at(self.addr["x"])
        y = self.cuda.memory_at(self.addr["y"])

        def work() -> None:
            self.executes += 1
            y.data.view(np.float32)[:n] = 2 * x.data.view(np.float32)[:n] + 1

        self.cuda.streams[handle].enqueue(work)
        return self.ok


def _trt(cuda: StandinCuda, ok: bool = True, plan_ok: bool = True, version: str = "10.3.0") -> Any:
    ctx = _Context(cuda, ok)
    io = {"x": (TensorIOMode.INPUT, (-1, 3)), "y": (TensorIOMode.OUTPUT, (-1, 3))}
    engine = SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: list(io)[i],
        get_tensor_mode=lambda n: io[n][0],
        get_tensor_shape=lambda n: io[n][1],
        get_tensor_dtype=lambda n: DataType.FLOAT,
        create_execution_context=lambda: ctx,
    )

    class Runtime:
        def __init__(self, logger: Any) -> None:
            self.DLA_core: Optional[int] = None

        def deserialize_cuda_engine(self, plan: bytes) -> Any:
            return engine if plan_ok and plan == b"PLAN" else None

    return SimpleNamespace(
        __version__=version,
        DataType=DataType,
        TensorIOMode=TensorIOMode,
        Runtime=Runtime,
        ctx=ctx,
    )


@pytest.fixture()
def plan(tmp_path: Path) -> str:
    p = tmp_path / "m.plan"
    p.write_bytes(b"PLAN")
    return str(p)


def _runner(plan: str, **meta: Any) -> Tuple[EngineRunner, Any, StandinCuda]:
    cuda = StandinCuda()
    cudart = StandinCudart(cuda, meta.pop("fail", ""))
    trt = _trt(cuda, **meta.pop("trt_kw", {}))
    trt.Logger = lambda severity: ("logger", severity)
    trt.Logger.VERBOSE, trt.Logger.WARNING = 0, 1  # type: ignore[attr-defined]
    return EngineRunner(plan, meta, trt=trt, cuda=cuda, cudart=cudart), trt, cuda


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3)).astype(np.float32)


def test_run_computes_through_device_memory(plan: str) -> None:
    r, _, _ = _runner(plan)
    assert [(t.name, t.dtype, t.shape) for t in r.inputs] == [("x", "float32", [None, 3])]
    x = _x(2)
    y = r.run({"x": x})["y"]
    assert y.shape == (2, 3) and np.allclose(y, 2 * x + 1)


def test_dynamic_shapes_grow_the_buffers_and_reuse_them_when_smaller(plan: str) -> None:
    r, trt, _ = _runner(plan)
    for n in (2, 4):
        x = _x(n, n)
        assert np.allclose(r.run({"x": x})["y"], 2 * x + 1)
    assert r.allocations == 2
    x = _x(1, 9)
    y = r.run({"x": x})["y"]
    assert y.shape == (1, 3) and np.allclose(y, 2 * x + 1)
    assert r.allocations == 2 and trt.ctx.shape_calls == [(2, 3), (4, 3), (1, 3)]


@pytest.mark.parametrize("transfers", [True, False])
def test_timed_call_copies_only_with_transfers(plan: str, transfers: bool) -> None:
    r, trt, cuda = _runner(plan, transfers=transfers)
    call = r.timed_call({"x": _x(4)})
    before = len(cuda.calls)
    call()
    call()
    done = cuda.calls[before:]
    assert done.count("htod") == (2 if transfers else 0)
    assert done.count("dtoh") == (2 if transfers else 0)
    assert trt.ctx.executes == 3  # one warm-up run before timing, then the two calls


def test_cuda_graph_replays_the_captured_run(plan: str) -> None:
    r, trt, cuda = _runner(plan, cuda_graph=True, transfers=True)
    x = _x(3, 5)
    call = r.timed_call({"x": x})
    assert "begin_capture" in cuda.calls and "end_capture" in cuda.calls
    executes = trt.ctx.executes
    call()
    assert cuda.calls.count("graph_launch") == 1 and trt.ctx.executes == executes + 1
    assert r.buffers is not None
    assert np.allclose(r.buffers.host["y"][:9].reshape(3, 3), 2 * x + 1)


@pytest.mark.parametrize("fail", ["begin", "end", "instantiate", "launch"])
def test_cuda_graph_errors_name_the_runtime_call(plan: str, fail: str) -> None:
    r, _, _ = _runner(plan, cuda_graph=True, fail=fail)
    with pytest.raises(AgentError, match="CUDA graph capture failed") as info:
        r.timed_call({"x": _x(2)})()
    assert fail.lower() in str(info.value).lower()


@pytest.mark.parametrize(
    ("feed", "word"),
    [
        ({}, "lacks x"),
        ({"x": _x(2), "z": _x(2)}, "unknown z"),
        ({"x": _x(2).astype(np.float64)}, "float64"),
        ({"x": np.zeros((2, 4), np.float32)}, "shape"),
        ({"x": np.zeros((2, 3, 1), np.float32)}, "shape"),
        ({"x": np.zeros((17, 3), np.float32)}, "refused the shape"),
    ],
)
def test_bad_feeds_are_refused_by_name(plan: str, feed: Dict[str, Any], word: str) -> None:
    r, _, _ = _runner(plan)
    with pytest.raises(AgentError, match=word):
        r.run(feed)


def test_failed_execution_and_unloadable_plans_are_agent_errors(plan: str, tmp_path: Path) -> None:
    r, _, _ = _runner(plan, trt_kw={"ok": False})
    with pytest.raises(AgentError, match="failed to run"):
        r.run({"x": _x(2)})
    with pytest.raises(AgentError, match="could not load"):
        _runner(plan, trt_kw={"plan_ok": False})
    with pytest.raises(AgentError, match="Cannot read"):
        _runner(str(tmp_path / "missing.plan"))
    with pytest.raises(AgentError, match="7.1"):
        _runner(plan, trt_kw={"version": "7.1.3"})


def test_close_frees_device_memory(plan: str) -> None:
    r, _, cuda = _runner(plan)
    r.run({"x": _x(2)})
    r.close()
    assert cuda.allocs and all(a.freed for a in cuda.allocs)
