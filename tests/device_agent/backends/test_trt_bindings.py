"""The TensorRT code bound to the REAL Python bindings of every line it claims.

For each line (8.6 — also standing for 8.5, which has no wheel and whose API 8.6 extends —
10.3, 10.13, 11.4) a subprocess imports the real `tensorrt` (tests/trt_bindings/setup.sh:
the bindings wheel over gcc-built stub libraries, so nothing can be built) and drives every
trt_api / trt_engine / trt_calib / trt_runner / trt_inspect function that touches `trt`
with "checking doubles": stand-ins for Builder, INetworkDefinition, IBuilderConfig, ...
whose every attribute read, attribute write and method call is checked against the real
class of that line: the attribute exists, the pybind signature in its `__doc__` (any
overload) takes the arguments' count and types, enum values are members of the real enum,
and each scripted return value has the type the signature returns. The calibrator is the
real subclass of that line's IInt8EntropyCalibrator2, instantiated and called.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[3]
TRT = ROOT / ".venv" / "trt"
LINES = ("8.6", "10.3", "10.13", "11.4")
PREFIX = "tensorrt_bindings.tensorrt."


# -- the checker -----------------------------------------------------------------------------


class Checker:
    """Checks calls and values against the real `trt` module; keeps what it checked."""

    def __init__(self, trt: Any) -> None:
        self.trt = trt
        self.checked: List[str] = []
        self.failed: List[str] = []

    def fail(self, what: str, why: str) -> None:
        self.failed.append(f"{what}: {why}")
        raise AssertionError(f"{what}: {why}")

    def real(self, type_name: str) -> Any:
        name = type_name.strip()
        if name.startswith(PREFIX):
            name = name[len(PREFIX) :]
        if "::" in name:  # a C++ spelling in the doc: nvinfer1::IEngineInspector, ...
            name = name.rsplit("::", 1)[1]
            if getattr(self.trt, name, None) is None and name.startswith("I"):
                name = name[1:]  # the bindings name IEngineInspector EngineInspector
        return getattr(self.trt, name, None)

    def type_ok(self, type_name: str, value: Any) -> bool:
        """Would pybind accept `value` for a parameter documented as `type_name`?"""
        t = type_name.strip()
        if t.startswith("Optional[") or t.startswith("typing.Optional["):
            return value is None or self.type_ok(t[t.index("[") + 1 : -1], value)
        if t in ("object", "typing.Any"):
            return True
        if t == "None":
            return value is None
        if t in ("int", "typing.SupportsInt"):
            return isinstance(value, int) and not isinstance(value, bool)
        if t == "bool":
            return isinstance(value, bool)
        if t in ("float", "typing.SupportsFloat"):
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if t == "str":
            return isinstance(value, str)
        if t in ("buffer", "typing_extensions.Buffer", "collections.abc.Buffer"):
            return isinstance(value, (bytes, bytearray, memoryview))
        if t in ("tuple", PREFIX + "Dims", PREFIX + "Dims32", PREFIX + "Dims64") or re.match(
            r"^(typing\.)?(List|list|Sequence|typing\.Sequence)\[(int|typing\.SupportsInt)\]$", t
        ):
            dims = [getattr(self.trt, n, None) for n in ("Dims", "Dims32", "Dims64")]
            if any(isinstance(d, type) and isinstance(value, d) for d in dims):
                return True
            return isinstance(value, (tuple, list)) and all(
                isinstance(d, int) and not isinstance(d, bool) for d in value
            )
        cls = self.real(t)
        if cls is None or not isinstance(cls, type):
            self.failed.append(f"unhandled documented type {t!r}")
            return False
        if hasattr(cls, "__members__"):  # a pybind enum: a real member of it
            return isinstance(value, cls)
        if cls.__name__ == "IHostMemory":  # a buffer; stood for by bytes
            return isinstance(value, (bytes, bytearray, memoryview, cls))
        if isinstance(value, Double):
            return issubclass(value._cls, cls)
        return isinstance(value, cls)

    def signatures(
        self, what: str, doc: Optional[str], name: str
    ) -> List[Tuple[List[Tuple[str, str, bool]], str]]:
        """[(params [(name, type, has_default)], return type)] of every overload (self dropped)."""
        sigs = []
        for line in (doc or "").splitlines():
            line = re.sub(r"^\d+\.\s+", "", line.strip())
            m = re.match(re.escape(name) + r"\((.*)\) -> (.+)$", line)
            if not m:
                continue
            params = []
            for part in _split(m.group(1))[1:]:
                pname, _, rest = part.partition(": ")
                ptype, eq, _default = rest.partition(" = ")
                params.append((pname.strip(), ptype.strip(), bool(eq)))
            sigs.append((params, m.group(2).strip()))
        if not sigs:
            self.fail(what, f"no pybind signature in its __doc__: {doc!r:.200}")
        return sigs

    def call(
        self,
        what: str,
        doc: Optional[str],
        name: str,
        args: Tuple[Any, ...],
        kwargs: Dict[str, Any],
    ) -> str:
        """Check one call; the return type of the overload that takes it."""
        reasons = []
        for params, ret in self.signatures(what, doc, name):
            if len(args) > len(params):
                reasons.append(f"{len(args)} args for {len(params)} params")
                continue
            ok = True
            for i, (pname, ptype, has_default) in enumerate(params):
                if i < len(args):
                    value, given = args[i], True
                elif pname in kwargs:
                    value, given = kwargs[pname], True
                else:
                    value, given = None, False
                if not given:
                    if not has_default:
                        ok = False
                        reasons.append(f"missing {pname}")
                        break
                    continue
                if not self.type_ok(ptype, value):
                    ok = False
                    reasons.append(f"{pname}: {type(value).__name__} {value!r:.60} is not {ptype}")
                    break
            unknown = set(kwargs) - {p[0] for p in params}
            if ok and not unknown:
                self.checked.append(what)
                return ret
        self.fail(what, "; ".join(reasons) or "no overload takes it")
        return ""

    def returned(self, what: str, ret_type: str, value: Any) -> Any:
        if not self.type_ok(ret_type, value):
            self.fail(what, f"the double's return {value!r:.60} is not the real {ret_type}")
        return value


def _split(params: str) -> List[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


class Double:
    """Stands for an instance of the real class `cls`. `script` gives what reads and calls
    answer: a value, or a function of the call's arguments."""

    def __init__(self, checker: Checker, cls: Any, **script: Any) -> None:
        object.__setattr__(self, "_checker", checker)
        object.__setattr__(self, "_cls", cls)
        object.__setattr__(self, "_script", script)
        object.__setattr__(self, "_set", {})

    def _attr(self, name: str) -> Any:
        what = f"{self._cls.__name__}.{name}"
        real = getattr(self._cls, name, None)
        if real is None:
            self._checker.fail(what, f"no such attribute on the real {self._cls.__name__}")
        return what, real

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        checker: Checker = self._checker
        what, real = self._attr(name)
        if isinstance(real, property):
            ret = checker.signatures(what, real.fget.__doc__, "")[0][1] if real.fget else ""
            if name in self._set:
                value = self._set[name]
            elif name in self._script:
                value = self._script[name]
            else:
                checker.fail(what, "read, but the test scripted no value")
            checker.checked.append(what)
            return checker.returned(what, ret, value)

        def method(*args: Any, **kwargs: Any) -> Any:
            ret = checker.call(what, real.__doc__, name, args, kwargs)
            answer = self._script.get(name)
            if callable(answer) and not isinstance(answer, Double):
                answer = answer(*args, **kwargs)
            elif name not in self._script and ret != "None":
                checker.fail(what, f"called, but the test scripted no {ret}")
            return checker.returned(what, ret, answer)

        return method

    def __setattr__(self, name: str, value: Any) -> None:
        checker: Checker = self._checker
        what, real = self._attr(name)
        what += "="
        if not isinstance(real, property) or real.fset is None:
            checker.fail(what, "not a settable property of the real class")
        params, _ = checker.signatures(what, real.fset.__doc__, "")[0]
        if not checker.type_ok(params[0][1], value):
            checker.fail(what, f"{type(value).__name__} {value!r:.60} is not {params[0][1]}")
        checker.checked.append(what)
        self._set[name] = value


class EnumProxy:
    """A real enum whose member reads are checked (the member exists on this line)."""

    def __init__(self, checker: Checker, enum: Any) -> None:
        self._checker, self._enum = checker, enum
        self.__members__ = enum.__members__

    def __getattr__(self, name: str) -> Any:
        what = f"{self._enum.__name__}.{name}"
        if name not in self._enum.__members__:
            self._checker.fail(what, "not a member of the real enum")
        self._checker.checked.append(what)
        return getattr(self._enum, name)


class TrtProxy:
    """The `trt` module as the code sees it: real classes and enums, checked on access;
    constructors in `factories` check the real __init__ signature and answer a double."""

    def __init__(self, checker: Checker, factories: Dict[str, Callable[..., Any]]) -> None:
        self._checker, self._factories = checker, factories
        self.__version__ = checker.trt.__version__

    def __getattr__(self, name: str) -> Any:
        checker = self._checker
        real = getattr(checker.trt, name, None)
        if real is None:
            if name == "IInt8EntropyCalibrator2":  # the code asks with getattr(..., None)
                checker.checked.append(f"trt.{name} (absent)")
                raise AttributeError(name)
            checker.fail(f"trt.{name}", "the real module has no such name")
        checker.checked.append(f"trt.{name}")
        if name in self._factories:
            factory = self._factories[name]

            def construct(*args: Any, **kwargs: Any) -> Any:
                checker.call(f"{name}.__init__", real.__init__.__doc__, "__init__", args, kwargs)
                return factory(*args, **kwargs)

            return construct
        if isinstance(real, type) and hasattr(real, "__members__"):
            return EnumProxy(checker, real)
        return real


# -- the driver (runs in the subprocess, with one line's real tensorrt) ----------------------


def drive(trt: Any) -> Dict[str, Any]:
    """Drive every function that touches `trt`; what was checked, and what failed."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).parent))
    from cuda_standin import StandinCuda, StandinCudart

    from device_agent.backends import trt_api, trt_calib, trt_engine, trt_inspect, trt_runner
    from device_agent.backends.cuda_io import BatchFeeder
    from device_agent.errors import AgentError

    c = Checker(trt)
    errors: List[str] = []
    major = int(trt.__version__.split(".")[0])

    def step(name: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except AssertionError:
            errors.append(name)
        except Exception as e:  # a real bug in the code, or a binding the double rejects
            c.failed.append(f"{name}: {type(e).__name__}: {e}")
        return None

    def D(cls_name: str, **script: Any) -> Double:  # noqa: N802
        return Double(c, getattr(trt, cls_name), **script)

    # builder side ------------------------------------------------------------------------
    layer = D("ILayer", name="dense/MatMul", num_outputs=1, precision=trt.DataType.FLOAT)
    network = D("INetworkDefinition", num_layers=1, get_layer=lambda i: layer)
    profile = D("IOptimizationProfile")
    cache = D("ITimingCache", serialize=lambda: b"timing-cache")
    config = D(
        "IBuilderConfig",
        create_optimization_profile=profile,
        create_timing_cache=lambda blob: cache,
        get_timing_cache=lambda: cache,
        get_flag=lambda f: f in (trt.BuilderFlag.GPU_FALLBACK,),
        get_memory_pool_limit=lambda p: 1 << 20,
        add_optimization_profile=lambda p: 0,
        set_timing_cache=lambda cache, ignore_mismatch: True,
    )
    builder = D(
        "Builder",
        create_network=lambda flags=0: network,
        create_builder_config=lambda: config,
        create_optimization_profile=lambda: profile,
        build_serialized_network=lambda n, cfg: b"plan-bytes",
        num_DLA_cores=2,
    )
    errs = [
        D(
            "ParserError",
            node=lambda: 3,
            code=lambda: trt.ErrorCode.UNSUPPORTED_NODE,
            desc=lambda: "no importer for Foo",
            node_name=lambda: "foo_1",
            node_operator=lambda: "Foo",
        )
    ]
    parser = D(
        "OnnxParser",
        parse_from_file=lambda path: False,
        num_errors=len(errs),
        get_error=lambda i: errs[i],
    )
    engine_json = json.dumps(
        {
            "Layers": [
                {
                    "Name": "conv",
                    "LayerType": "CaskConvolution",
                    "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16 format"}],
                }
            ],
            "Bindings": ["x", "y"],
        }
    )
    inspector = D("EngineInspector", get_engine_information=lambda fmt: engine_json)
    io = [("x", trt.TensorIOMode.INPUT, (-1, 3)), ("y", trt.TensorIOMode.OUTPUT, (-1, 3))]
    shapes: Dict[str, Tuple[int, ...]] = {}
    context = D(
        "IExecutionContext",
        set_input_shape=lambda name, shape: shapes.__setitem__(name, tuple(shape)) or True,
        get_tensor_shape=lambda name: trt.Dims(shapes["x"]),
        set_tensor_address=lambda name, ptr: True,
        execute_async_v3=lambda handle: True,
    )
    engine = D(
        "ICudaEngine",
        num_io_tensors=len(io),
        get_tensor_name=lambda i: io[i][0],
        get_tensor_mode=lambda n: dict((a, b) for a, b, _ in io)[n],
        get_tensor_shape=lambda n: trt.Dims(dict((a, s) for a, _, s in io)[n]),
        get_tensor_dtype=lambda n: trt.DataType.FLOAT,
        create_execution_context=lambda: context,
        create_engine_inspector=lambda: inspector,
    )
    runtime = D("Runtime", deserialize_cuda_engine=lambda plan: engine, num_DLA_cores=0)
    proxy = TrtProxy(
        c,
        {
            "Builder": lambda logger: builder,
            "OnnxParser": lambda n, lg: parser,
            "Runtime": lambda lg: runtime,
        },
    )

    version = trt_api.version_of(proxy)
    logger = step("make_logger", lambda: trt_api.make_logger(proxy, verbose=True))
    b = step("create_builder", lambda: trt_api.create_builder(proxy, logger))
    step("create_network", lambda: trt_api.create_network(proxy, version, b, False))
    if major >= 10:
        step("create_network strong", lambda: trt_api.create_network(proxy, version, b, True))
    else:
        try:
            trt_api.create_network(proxy, version, b, True)
            c.failed.append("8.x strong network was not refused")
        except AgentError:
            pass
    issues = step(
        "parse_onnx",
        lambda: trt_api.parse_onnx(proxy, version, network, logger, "m.onnx", [("n", "Op")] * 5),
    )
    if issues is not None and (issues[1][0].node != 3 or issues[1][0].op_type not in ("Foo", "Op")):
        c.failed.append(f"parser issue read wrong: {issues[1]}")
    cfg = step("create_config", lambda: trt_api.create_config(b))
    settings = trt_api.BuildSettings(
        precision="fp16",
        workspace_bytes=1 << 28,
        profiles={"x": ((1, 3), (4, 3), (8, 3))},
        optimization_level=3,
        timing_cache=b"",
        dla_core=1,
        fp32_layers=("dense/MatMul",) if major < 11 else (),
    )
    step("configure fp16", lambda: trt_api.configure(proxy, version, b, network, cfg, settings))
    step(
        "add_profile",
        lambda: trt_api.add_profile(b, cfg, {"x": ((1, 3), (16, 3), (32, 3))}),
    )
    step("build_serialized", lambda: trt_api.build_serialized(b, network, cfg))
    step("serialized_timing_cache", lambda: trt_api.serialized_timing_cache(cfg))
    step("builder_flags", lambda: trt_api.builder_flags(proxy, cfg))
    step("memory_pools", lambda: trt_api.memory_pools(proxy, cfg))
    step("dla_cores", lambda: trt_engine.dla_cores(b))
    qdq = trt_api.BuildSettings(precision="int8", int8_mode="qdq", workspace_bytes=1 << 20)
    step(
        "configure int8 qdq",
        lambda: trt_api.configure(proxy, version, b, network, D("IBuilderConfig"), qdq),
    )

    # calibrator: the real subclass of this line's IInt8EntropyCalibrator2 ------------------
    cuda = StandinCuda()
    feeder = BatchFeeder(cuda, {"x": ((2, 3), np.float32)})
    batches = [{"x": np.full((2, 3), i, np.float32)} for i in range(2)]
    with tempfile.TemporaryDirectory() as tmp:
        cache_path = os.path.join(tmp, "calib.cache")
        if major >= 11:
            try:
                trt_calib.make_calibrator(proxy, feeder, batches, 2, cache_path)
                c.failed.append("11.x calibrator was not refused")
            except AgentError:
                c.checked.append("calibrator refused on 11")
        else:
            calib = trt_calib.make_calibrator(proxy, feeder, batches, 2, cache_path)
            if not isinstance(calib, trt.IInt8EntropyCalibrator2):
                c.failed.append("calibrator is not the real subclass")
            got = [
                calib.get_batch_size(),
                calib.get_batch(["x"]),
                calib.get_batch(["x"]),
                calib.get_batch(["x"]),
            ]
            if got[0] != 2 or got[1] != [feeder.buffers.ptr("x")] or got[3] is not None:
                c.failed.append(f"calibrator answers wrong: {got}")
            if calib.read_calibration_cache() is not None:
                c.failed.append("cache read before any was written")
            calib.write_calibration_cache(b"calib-table")
            if calib.read_calibration_cache() != b"calib-table":
                c.failed.append("cache does not round-trip")
            c.checked.append("IInt8EntropyCalibrator2 subclass")
            int8 = trt_api.BuildSettings(
                precision="int8", calibrator=calib, profiles={"x": ((1, 3), (2, 3), (2, 3))}
            )
            step(
                "configure int8 calibrator",
                lambda: trt_api.configure(
                    proxy,
                    version,
                    b,
                    network,
                    D(
                        "IBuilderConfig",
                        add_optimization_profile=lambda p: 0,
                        set_calibration_profile=lambda p: True,
                    ),
                    int8,
                ),
            )

        # runtime side ----------------------------------------------------------------------
        eng, _rt = step(
            "deserialize", lambda: trt_engine.deserialize(proxy, logger, b"plan", dla_core=0)
        ) or (None, None)
        step("io_tensors", lambda: trt_engine.io_tensors(proxy, eng))
        text = step("engine_information", lambda: trt_engine.engine_information(proxy, eng))
        if trt_inspect.summarize(text, "fp16")["layers_at_precision"] != 1:
            c.failed.append("inspector JSON summary wrong")
        step(
            "dtype round trip",
            lambda: [
                trt_engine.trt_dtype(proxy, n) for n in ("float32", "float16", "int8", "int32")
            ],
        )
        plan_path = os.path.join(tmp, "m.plan")
        with open(plan_path, "wb") as f:
            f.write(b"plan")

        def run_engine() -> None:
            r = trt_runner.EngineRunner(
                plan_path, {"cuda_graph": True}, trt=proxy, cuda=cuda, cudart=StandinCudart(cuda)
            )
            r.run({"x": np.ones((2, 3), np.float32)})
            r.run({"x": np.ones((4, 3), np.float32)})
            r.timed_call({"x": np.ones((4, 3), np.float32)})()
            r.close()

        step("EngineRunner", run_engine)
    return {
        "version": trt.__version__,
        "checked": c.checked,
        "failed": c.failed + errors,
        "caught": self_test(trt),
    }


def self_test(trt: Any) -> Dict[str, bool]:
    """Wrong uses a checker must reject on this line: name -> whether it was rejected."""
    major = int(trt.__version__.split(".")[0])
    bad: Dict[str, Callable[[Checker], Any]] = {
        "pool given as a str": lambda c: Double(c, trt.IBuilderConfig).set_memory_pool_limit(
            "WORKSPACE", 1
        ),
        "flag given as an int": lambda c: Double(c, trt.IBuilderConfig).set_flag(0),
        "a method the class lacks": lambda c: Double(c, trt.IBuilderConfig).set_max_workspace(1),
        "too many arguments": lambda c: Double(c, trt.IExecutionContext).execute_async_v3(1, 2),
        "setting a read-only property": lambda c: setattr(
            Double(c, trt.ICudaEngine), "num_io_tensors", 3
        ),
        "an enum member of another enum": lambda c: Double(c, trt.IBuilderConfig).set_flag(
            trt.MemoryPoolType.WORKSPACE
        ),
        "a double of the wrong class": lambda c: Double(c, trt.Builder).build_serialized_network(
            Double(c, trt.IBuilderConfig), Double(c, trt.IBuilderConfig)
        ),
        "a return of the wrong type": lambda c: Double(
            c, trt.ICudaEngine, get_tensor_name=lambda i: 7
        ).get_tensor_name(0),
        "the binding-index API removed in 10": lambda c: (
            Double(c, trt.ICudaEngine).num_bindings
            if major >= 10
            else Double(c, trt.ICudaEngine).no_such_thing
        ),
        "BuilderFlag.FP16 (gone in 11)": lambda c: (
            EnumProxy(c, trt.BuilderFlag).FP16
            if major >= 11
            else EnumProxy(c, trt.BuilderFlag).NO_SUCH_FLAG
        ),
    }
    caught = {}
    for name, fn in bad.items():
        try:
            fn(Checker(trt))
            caught[name] = False
        except AssertionError:
            caught[name] = True
    return caught


#: calls each line's run must have checked (the version branches each line takes)
COMMON = [
    "Builder.__init__",
    "Builder.create_network",
    "OnnxParser.__init__",
    "OnnxParser.parse_from_file",
    "OnnxParser.num_errors",
    "ParserError.node",
    "ParserError.code",
    "ParserError.desc",
    "Builder.create_builder_config",
    "IBuilderConfig.profiling_verbosity=",
    "ProfilingVerbosity.DETAILED",
    "IBuilderConfig.set_memory_pool_limit",
    "MemoryPoolType.WORKSPACE",
    "Builder.create_optimization_profile",
    "IOptimizationProfile.set_shape",
    "IBuilderConfig.add_optimization_profile",
    "IBuilderConfig.builder_optimization_level=",
    "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_timing_cache",
    "Builder.num_DLA_cores",
    "IBuilderConfig.default_device_type=",
    "IBuilderConfig.DLA_core=",
    "BuilderFlag.GPU_FALLBACK",
    "Builder.build_serialized_network",
    "IBuilderConfig.get_timing_cache",
    "ITimingCache.serialize",
    "IBuilderConfig.get_flag",
    "IBuilderConfig.get_memory_pool_limit",
    "Runtime.__init__",
    "Runtime.DLA_core=",
    "Runtime.deserialize_cuda_engine",
    "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_shape",
    "ICudaEngine.get_tensor_dtype",
    "TensorIOMode.INPUT",
    "ICudaEngine.create_execution_context",
    "ICudaEngine.create_engine_inspector",
    "EngineInspector.get_engine_information",
    "LayerInformationFormat.JSON",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.get_tensor_shape",
    "IExecutionContext.set_tensor_address",
    "IExecutionContext.execute_async_v3",
]
BY_LINE = {
    "8": [
        "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "IBuilderConfig.int8_calibrator=",
        "IBuilderConfig.set_calibration_profile",
        "ILayer.precision=",
        "ILayer.set_output_type",
        "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
        "IInt8EntropyCalibrator2 subclass",
    ],
    "10": [
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "ParserError.node_name",
        "ParserError.node_operator",
        "BuilderFlag.FP16",
        "BuilderFlag.INT8",
        "IBuilderConfig.int8_calibrator=",
        "IBuilderConfig.set_calibration_profile",
        "ILayer.precision=",
        "ILayer.set_output_type",
        "IInt8EntropyCalibrator2 subclass",
    ],
    "11": [
        "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
        "ParserError.node_name",
        "ParserError.node_operator",
        "calibrator refused on 11",
    ],
}


def trt_env(line: str) -> Dict[str, str]:
    d = TRT / line
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d), str(ROOT), str(ROOT / "tests")])
    env["LD_LIBRARY_PATH"] = str(d / "lib")
    return env


def run_line(line: str) -> Dict[str, Any]:
    if not (TRT / line / "lib").is_dir():
        raise AssertionError(
            f"{TRT / line} is missing: run `make trt-bindings` (it installs the real TensorRT "
            "bindings wheels with pip and builds their stub libraries)."
        )
    proc = subprocess.run(
        [sys.executable, __file__, line],
        env=trt_env(line),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


import pytest  # noqa: E402


@pytest.mark.parametrize("line", LINES)
def test_every_call_is_bound_to_the_real_bindings(line: str) -> None:
    result = run_line(line)
    assert result["version"].startswith(line + ".")
    assert result["failed"] == []
    assert result["caught"] and all(result["caught"].values()), result["caught"]
    checked = set(result["checked"])
    expected = COMMON + BY_LINE[line.split(".")[0]]
    missing = [e for e in expected if e not in checked]
    assert missing == [], f"not checked on {line}: {missing}"
    print(
        f"TensorRT {result['version']}: {len(result['checked'])} checked calls "
        f"({len(checked)} distinct), 0 failed"
    )


if __name__ == "__main__":
    import tensorrt

    print(json.dumps(drive(tensorrt)))
