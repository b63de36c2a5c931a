"""The fake tensorrt + pycuda (plugins/fake_trt) build and run a small ONNX through the
agent's own trt_api/trt_engine/cuda_io calls, and the outputs match onnxruntime run
directly; an INT8 build calls the calibrator over every batch; 11.x has no INT8 flag.

Each case runs in a subprocess, because the fake reads its version at import (as the real
module is one version): PYTHONPATH=plugins/fake_trt:<repo>, FAKE_TRT_VERSION=<version>.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict

import pytest

FAKE = Path(__file__).resolve().parent / "fake_trt"
ROOT = Path(__file__).resolve().parents[3]

# A model: y = Relu(MatMul(x, W) + b), x: [batch, 4] (batch dynamic), W: 4x3; z = Sigmoid(y)
_MODEL = """
import numpy as np, onnx
from onnx import TensorProto, helper, numpy_helper
def model(path, op="Relu", dtype=TensorProto.FLOAT):
    rng = np.random.default_rng(0)
    W = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["a"], name="add"),
             helper.make_node(op, ["a"], ["y"], name="act"),
             helper.make_node("Sigmoid", ["y"], ["z"], name="sig")]
    g = helper.make_graph(nodes, "g",
        [helper.make_tensor_value_info("x", dtype, ["batch", 4])],
        [helper.make_tensor_value_info("y", dtype, ["batch", 3]),
         helper.make_tensor_value_info("z", dtype, ["batch", 3])], [W, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
"""

_BUILD_AND_RUN = """
import json, sys
import numpy as np, onnxruntime as ort
import pycuda.autoinit  # noqa: F401
import pycuda.driver as cuda
import tensorrt as trt
from device_agent.backends import cuda_io, trt_api, trt_engine
precision, path, calib_batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
prior = sys.argv[4].encode() if len(sys.argv) > 4 else None
model(path)
version = trt_api.version_of(trt)
logger = trt_api.make_logger(trt)
builder = trt_api.create_builder(trt, logger)
calls = {"get_batch": 0, "write": 0, "read": 0}
calibrator = None
if precision == "int8":
    class Calib(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.feeder = cuda_io.BatchFeeder(cuda, {"x": ((2, 4), np.float32)})
            self.left = calib_batches
            self.cache = None
        def get_batch_size(self):
            return 2
        def get_batch(self, names):
            calls["get_batch"] += 1
            if self.left == 0:
                return None
            self.left -= 1
            return self.feeder.feed({"x": np.full((2, 4), float(self.left + 1), np.float32)})
        def read_calibration_cache(self):
            calls["read"] += 1
            return prior
        def write_calibration_cache(self, cache):
            calls["write"] += 1
            self.cache = bytes(cache)
    calibrator = Calib()
settings = trt_api.BuildSettings(precision=precision, workspace_bytes=1 << 26,
    profiles={"x": ((1, 4), (2, 4), (8, 4))}, optimization_level=2, timing_cache=b"",
    calibrator=calibrator)
mode = trt_api.resolve_int8_mode(version, settings)
strong = trt_api.strongly_typed(version, precision, mode)
network = trt_api.create_network(trt, version, builder, strong)
parser, issues = trt_api.parse_onnx(trt, version, network, logger, path)
assert not issues, issues
config = builder.create_builder_config()
config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
notes = trt_api.configure(trt, version, builder, network, config, settings)
plan = trt_api.build_serialized(builder, network, config)
cache = trt_api.serialized_timing_cache(config)
engine, runtime = trt_engine.deserialize(trt, logger, plan)
ios = trt_engine.io_tensors(trt, engine)
context = trt_engine.create_context(engine)
x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
trt_engine.set_input_shape(context, "x", x.shape)
spec = {"x": (x.shape, np.float32)}
for t in ios:
    if not t.is_input:
        spec[t.name] = (trt_engine.output_shape(context, t.name), t.dtype)
bufs = cuda_io.IOBuffers(cuda, spec)
trt_engine.set_addresses(context, {n: bufs.ptr(n) for n in spec})
bufs.put("x", x)
trt_engine.execute(context, bufs.stream.handle)
got = {n: bufs.get(n).tolist() for n in ("y", "z")}
want = dict(zip(["y", "z"], [a.tolist() for a in
    ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(["y", "z"], {"x": x})]))
refused = context.set_input_shape("x", (9, 4))
print(json.dumps({"got": got, "want": want, "calls": calls,
    "cache": calibrator.cache.decode() if calibrator and calibrator.cache else None,
    "io": [[t.name, t.is_input, list(t.shape), str(t.dtype)] for t in ios],
    "flags": trt_api.builder_flags(trt, config), "timing_cache": len(cache or b""),
    "info": json.loads(trt_engine.engine_information(trt, engine)),
    "notes": notes,
    "refused_out_of_profile": not refused}))
"""


def _env(version: str, **extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(FAKE), str(ROOT)])
    env["FAKE_TRT_VERSION"] = version
    env.update(extra)
    return env


def _run(script: str, version: str, *args: str, **extra: str) -> Any:
    code = textwrap.dedent(_MODEL) + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=_env(version, **extra),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _close(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6))


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0.26", "10.13.3.9", "11.4.0.106"])
def test_fp32_build_runs_like_onnxruntime(tmp_path: Path, version: str) -> None:
    out = _run(_BUILD_AND_RUN, version, "fp32", str(tmp_path / "m.onnx"), "0")
    assert _close(out["got"]["y"], out["want"]["y"]) and _close(out["got"]["z"], out["want"]["z"])
    assert len(out["got"]["y"]) == 3  # the batch of 3 set at run time, inside the profile
    assert out["io"][0] == ["x", True, [-1, 4], "float32"]
    assert {n for n, inp, _, _ in out["io"] if not inp} == {"y", "z"}
    assert out["refused_out_of_profile"]
    assert out["timing_cache"] > 2
    layers = out["info"]["Layers"]
    assert [layer["Name"] for layer in layers] == ["mm", "add", "act", "sig"]
    assert all("FP32" in layer["Outputs"][0]["Format/Datatype"] for layer in layers)
    assert out["calls"]["get_batch"] == 0


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0.26"])
def test_int8_build_calls_the_calibrator_over_all_batches(tmp_path: Path, version: str) -> None:
    out = _run(_BUILD_AND_RUN, version, "int8", str(tmp_path / "m.onnx"), "3")
    assert out["calls"] == {"get_batch": 4, "read": 1, "write": 1}  # 3 batches, then None
    assert "INT8" in out["flags"] and "FP16" in out["flags"]
    lines = out["cache"].splitlines()
    assert lines[0].startswith("TRT-") and lines[0].endswith("EntropyCalibration2")
    scales = dict(line.split(": ") for line in lines[1:])
    # the largest batch was all 3.0: the input's scale is its amax / 127, read from device memory
    import struct

    assert abs(struct.unpack(">f", bytes.fromhex(scales["x"]))[0] - 3.0 / 127) < 1e-7
    assert all("Int8" in layer["Outputs"][0]["Format/Datatype"] for layer in out["info"]["Layers"])
    assert _close(out["got"]["z"], out["want"]["z"])


def test_11x_lacks_int8_flag_and_calibrator() -> None:
    script = """
import json, tensorrt as trt
print(json.dumps({"flags": list(trt.BuilderFlag.__members__),
    "ncf": list(trt.NetworkDefinitionCreationFlag.__members__),
    "calib": hasattr(trt, "IInt8EntropyCalibrator2"),
    "cfg": hasattr(trt.IBuilderConfig, "int8_calibrator")}))
"""
    new = _run(script, "11.4.0.106")
    old = _run(script, "10.3.0.26")
    assert "INT8" not in new["flags"] and "FP16" not in new["flags"]
    assert "EXPLICIT_BATCH" not in new["ncf"] and not new["calib"] and not new["cfg"]
    assert "INT8" in old["flags"] and old["calib"] and old["cfg"]


def test_parser_rejects_listed_op_with_real_error_api(tmp_path: Path) -> None:
    script = """
import json, sys, tensorrt as trt
from device_agent.backends import trt_api
model(sys.argv[1])
v = trt_api.version_of(trt)
logger = trt.Logger(trt.Logger.ERROR)
net = trt_api.create_network(trt, v, trt.Builder(logger), False)
_, issues = trt_api.parse_onnx(trt, v, net, logger, sys.argv[1])
print(json.dumps([[i.node, i.name, i.op_type, i.code] for i in issues]))
"""
    issues = _run(script, "10.3.0.26", str(tmp_path / "m.onnx"), FAKE_TRT_REJECT="Sigmoid")
    assert issues == [[3, "sig", "Sigmoid", "UNSUPPORTED_NODE"]]
    old = _run(script, "8.6.1", str(tmp_path / "m.onnx"), FAKE_TRT_REJECT="Add")
    assert old == [[1, None, None, "UNSUPPORTED_NODE"]]  # 8.x names only the index
    assert _run(script, "10.3.0.26", str(tmp_path / "m.onnx")) == []


def test_plan_of_another_version_is_refused(tmp_path: Path) -> None:
    build = """
import sys, tensorrt as trt
from device_agent.backends import trt_api
model(sys.argv[1])
v = trt_api.version_of(trt)
lg = trt.Logger()
b = trt.Builder(lg)
net = trt_api.create_network(trt, v, b, False)
trt_api.parse_onnx(trt, v, net, lg, sys.argv[1])
cfg = b.create_builder_config()
trt_api.configure(trt, v, b, net, cfg, trt_api.BuildSettings(profiles={"x": ((1, 4),) * 3}))
open(sys.argv[2], "wb").write(trt_api.build_serialized(b, net, cfg))
print("{}")
"""
    load = """
import json, sys, tensorrt as trt
e = trt.Runtime(trt.Logger(trt.Logger.INTERNAL_ERROR)).deserialize_cuda_engine(
    open(sys.argv[2], "rb").read())
print(json.dumps(e is not None))
"""
    plan = str(tmp_path / "p.plan")
    _run(build, "10.3.0.26", str(tmp_path / "m.onnx"), plan)
    assert _run(load, "10.3.0.26", "-", plan) is True
    assert _run(load, "10.13.3.9", "-", plan) is False


def test_int8_build_with_a_cache_skips_the_batches(tmp_path: Path) -> None:
    prior = "TRT-8601-EntropyCalibration2\nx: 3c010204\n"
    out = _run(_BUILD_AND_RUN, "8.6.1", "int8", str(tmp_path / "m.onnx"), "3", prior)
    assert out["calls"] == {"get_batch": 0, "read": 1, "write": 0}  # TensorRT uses the cache
    assert _close(out["got"]["y"], out["want"]["y"])


def _precisions(out: Any) -> set:
    return {layer["Outputs"][0]["Format/Datatype"] for layer in out["info"]["Layers"]}


def test_fp16_is_a_flag_on_10x_and_the_onnx_types_on_11x(tmp_path: Path) -> None:
    old = _run(_BUILD_AND_RUN, "10.3.0.26", "fp16", str(tmp_path / "m.onnx"), "0")
    assert "FP16" in old["flags"] and _precisions(old) == {"Row major linear Half"}
    new = _run(_BUILD_AND_RUN, "11.4.0.106", "fp16", str(tmp_path / "m.onnx"), "0")
    assert new["flags"] == [] and _precisions(new) == {"Row major linear FP32"}  # an FP32 ONNX
    assert any("strongly typed" in n for n in new["notes"])


def test_calibrator_must_call_the_base_init() -> None:
    script = """
import json, tensorrt as trt
class Bad(trt.IInt8EntropyCalibrator2):
    def __init__(self):
        self.x = 1
class Good(trt.IInt8EntropyCalibrator2):
    def __init__(self):
        trt.IInt8EntropyCalibrator2.__init__(self)
try:
    Bad()
    bad = "made"
except TypeError as e:
    bad = str(e)
Good()
print(json.dumps(bad))
"""
    assert "__init__() must be called" in _run(script, "10.13.3.9")


def test_a_calibrator_error_fails_the_build_not_the_process(tmp_path: Path) -> None:
    script = """
import json, sys, tensorrt as trt
from device_agent.backends import trt_api
model(sys.argv[1])
v = trt_api.version_of(trt)
lg = trt.Logger(trt.Logger.INTERNAL_ERROR)
b = trt.Builder(lg)
net = trt_api.create_network(trt, v, b, False)
trt_api.parse_onnx(trt, v, net, lg, sys.argv[1])
class Broken(trt.IInt8EntropyCalibrator2):
    def __init__(self):
        trt.IInt8EntropyCalibrator2.__init__(self)
    def get_batch(self, names):
        raise ValueError("no data")
cfg = b.create_builder_config()
trt_api.configure(trt, v, b, net, cfg, trt_api.BuildSettings(precision="int8",
    profiles={"x": ((1, 4),) * 3}, calibrator=Broken()))
print(json.dumps(b.build_serialized_network(net, cfg) is None))
"""
    assert _run(script, "10.3.0.26", str(tmp_path / "m.onnx")) is True
