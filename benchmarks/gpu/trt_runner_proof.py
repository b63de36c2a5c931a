"""EngineRunner and the calibrator with the REAL pycuda on an NVIDIA GPU. No TensorRT runs
here: the engine's execute_async_v3 launches a real kernel y = 2x + 1 on the runner's
stream, so buffers, dynamic-shape reallocation, copies, CUDA graph capture and the
calibrator's device feeding are checked against numpy."""

import enum
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import pycuda.autoinit  # noqa
import pycuda.driver as cuda
from pycuda.compiler import SourceModule

from device_agent.backends.trt_runner import EngineRunner
from device_agent.backends.cuda_io import BatchFeeder
from device_agent.backends import trt_calib

mod = SourceModule("""
__global__ void affine(const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = 2.0f * x[i] + 1.0f;
}""")
affine = mod.get_function("affine")
DataType = enum.Enum("DataType", "FLOAT HALF INT8 INT32 BOOL")
Mode = enum.Enum("Mode", "INPUT OUTPUT")
STREAMS = {}


class Ctx:
    def __init__(self):
        self.shapes, self.addr, self.executes = {}, {}, 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return self.shapes["x"]

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr
        return True

    def execute_async_v3(self, handle):
        n = int(np.prod(self.shapes["x"]))
        affine(
            np.intp(self.addr["x"]),
            np.intp(self.addr["y"]),
            np.int32(n),
            block=(256, 1, 1),
            grid=((n + 255) // 256, 1),
            stream=STREAMS[handle],
        )
        self.executes += 1
        return True


def fake_trt():
    ctx = Ctx()
    io = {"x": (Mode.INPUT, (-1, 1000)), "y": (Mode.OUTPUT, (-1, 1000))}
    engine = SimpleNamespace(
        num_io_tensors=2,
        get_tensor_name=lambda i: list(io)[i],
        get_tensor_mode=lambda n: io[n][0],
        get_tensor_shape=lambda n: io[n][1],
        get_tensor_dtype=lambda n: DataType.FLOAT,
        create_execution_context=lambda: ctx,
    )

    def rt(logger):
        return SimpleNamespace(deserialize_cuda_engine=lambda plan: engine)

    def logger(sev):
        return None

    logger.VERBOSE, logger.WARNING = 0, 1
    return SimpleNamespace(
        __version__="10.3.0", DataType=DataType, TensorIOMode=Mode, Runtime=rt, Logger=logger
    )


def runner(plan, **meta):
    r = EngineRunner(plan, meta, trt=fake_trt(), cuda=cuda)
    STREAMS[int(r.stream.handle)] = r.stream
    return r


out = {"device": cuda.Device(0).name(), "pycuda": __import__("pycuda").VERSION_TEXT}
tmp = tempfile.mkdtemp()
plan = tmp + "/m.plan"
Path(plan).write_bytes(b"PLAN")
rng = np.random.default_rng(0)

r = runner(plan)
exact = {}
for n in (8, 64, 2):
    x = rng.standard_normal((n, 1000)).astype(np.float32)
    y = r.run({"x": x})["y"]
    exact[n] = bool(y.shape == x.shape and np.allclose(y, 2 * x + 1, rtol=1e-6, atol=1e-6))
out["run_exact_by_batch"] = exact
out["allocations_for_8_64_2"] = r.allocations
r.close()

timing = {}
for name, meta in {
    "transfers": {},
    "no_transfers": {"transfers": False},
    "graph_transfers": {"cuda_graph": True},
    "graph_no_transfers": {"cuda_graph": True, "transfers": False},
}.items():
    r = runner(plan, **meta)
    x = rng.standard_normal((64, 1000)).astype(np.float32)
    call = r.timed_call({"x": x})
    for _ in range(20):
        call()
    t0 = time.perf_counter()
    for _ in range(500):
        call()
    dt = (time.perf_counter() - t0) / 500 * 1e3
    cuda.memcpy_dtoh(r.buffers.host["y"], r.buffers.device["y"])
    ok = bool(np.allclose(r.buffers.host["y"][: x.size].reshape(x.shape), 2 * x + 1, atol=1e-6))
    timing[name] = {
        "ms_per_call": round(dt, 4),
        "output_correct": ok,
        "executes": r.context.executes,
    }
    r.close()
out["timed_call"] = timing


class Base:
    def __init__(self):
        pass


feeder = BatchFeeder(cuda, {"a": ((4, 224, 224, 3), np.float32), "b": ((4, 16), np.int32)})
batches = [
    {
        "a": rng.standard_normal((4, 224, 224, 3)).astype(np.float32),
        "b": rng.integers(0, 9, (4, 16)).astype(np.int32),
    }
    for _ in range(4)
]
cal = trt_calib.make_calibrator(
    SimpleNamespace(IInt8EntropyCalibrator2=Base), feeder, batches, 4, tmp + "/c.cache"
)
eq = []
for i in range(5):
    ptrs = cal.get_batch(["b", "a"])
    if ptrs is None:
        eq.append("end")
        break
    b = np.empty((4, 16), np.int32)
    a = np.empty((4, 224, 224, 3), np.float32)
    cuda.memcpy_dtoh(b, ptrs[0])
    cuda.memcpy_dtoh(a, ptrs[1])
    eq.append(bool(np.array_equal(a, batches[i]["a"]) and np.array_equal(b, batches[i]["b"])))
cal.write_calibration_cache(b"cache")
out["calibrator_batches_equal"] = eq
out["calibrator_cache_roundtrip"] = cal.read_calibration_cache() == b"cache"
print(json.dumps(out, indent=1))
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
