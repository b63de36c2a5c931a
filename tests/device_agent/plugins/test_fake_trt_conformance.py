"""The fake tensorrt (plugins/fake_trt) has only the real API of each line it claims.

For each line, one subprocess imports the fake claiming that version and lists every public
name it defines: module functions and classes, each class's methods (with their parameter
names), properties and class attributes, each enum's members and values, and the public
attributes of the objects a real build-and-run flow creates. A second subprocess, with
PYTHONPATH=.venv/trt/<line> and LD_LIBRARY_PATH=.venv/trt/<line>/lib (the real bindings,
tests/trt_bindings/setup.sh), checks each one exists there, that each method's parameter
names match the pybind signature in its `__doc__` (any overload), and that enum values are
equal. Any fake name absent from the real module fails the test, naming it.

The fake pycuda.driver is checked against the names and parameters in pycuda's own docs
(inducer/pycuda doc/source/driver.rst).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

FAKE = Path(__file__).resolve().parent / "fake_trt"
ROOT = Path(__file__).resolve().parents[3]
TRT = ROOT / ".venv" / "trt"

# claimed version -> the real bindings line it is checked against (8.5 against 8.6, its
# closest superset, as trt_api does)
CLAIMS = {
    "8.5.2.2": "8.6",
    "8.6.1": "8.6",
    "10.3.0.26": "10.3",
    "10.13.3.9": "10.13",
    "11.4.0.106": "11.4",
}

_SURFACE = r"""
import enum, inspect, json, sys, types
import tensorrt as trt

def params(fn):
    sig = inspect.signature(fn)
    return [p.name for p in sig.parameters.values() if p.name != "self"]

def is_fake(obj):
    return getattr(obj, "__module__", "").startswith("tensorrt")

def enum_members(e):
    return {k: int(v) for k, v in e.__members__.items()}

out = {"version": trt.__version__, "functions": {}, "classes": {}, "enums": {},
       "instances": {}}
for name, obj in vars(trt).items():
    if name.startswith("_") or isinstance(obj, types.ModuleType) or not is_fake(obj):
        continue
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        out["enums"][name] = enum_members(obj)
    elif isinstance(obj, type):
        members = {}
        for cls in reversed(obj.__mro__):
            if not is_fake(cls):
                continue
            for m, v in vars(cls).items():
                if m.startswith("_") and m != "__init__":
                    continue
                if m == "__init__" and cls is not obj:
                    continue
                if isinstance(v, property):
                    members[m] = {"kind": "property"}
                elif isinstance(v, (staticmethod, classmethod)):
                    members[m] = {"kind": "method", "params": params(v.__func__)}
                elif isinstance(v, type) and issubclass(v, enum.Enum):
                    members[m] = {"kind": "enum", "members": enum_members(v)}
                elif isinstance(v, enum.Enum):
                    members[m] = {"kind": "value", "value": int(v)}
                elif callable(v):
                    members[m] = {"kind": "method", "params": params(v)}
                else:
                    members[m] = {"kind": "attribute"}
        out["classes"][name] = members
    elif callable(obj):
        out["functions"][name] = params(obj)

# the public attributes of live objects, as a build and a run make them
import numpy as np, onnx
from onnx import TensorProto, helper
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
onnx.save(m, sys.argv[1])
lg = trt.Logger()
b = trt.Builder(lg)
explicit = trt.NetworkDefinitionCreationFlag.__members__.get("EXPLICIT_BATCH")
net = b.create_network(1 << int(explicit) if explicit is not None and trt.__version__[0] == "8"
                       else 0)
p = trt.OnnxParser(net, lg)
p.parse_from_file(sys.argv[1])
cfg = b.create_builder_config()
prof = b.create_optimization_profile()
cache = cfg.create_timing_cache(b"")
plan = b.build_serialized_network(net, cfg)
eng = trt.Runtime(lg).deserialize_cuda_engine(plan)
ctx = eng.create_execution_context()
p2 = trt.OnnxParser(b.create_network(0), lg)
p2.parse_from_file(sys.argv[1] + ".missing")
live = {"Logger": lg, "Builder": b, "INetworkDefinition": net, "OnnxParser": p,
        "ParserError": p2.get_error(0), "IBuilderConfig": cfg, "IOptimizationProfile": prof,
        "ITimingCache": cache, "IHostMemory": plan, "ICudaEngine": eng,
        "IExecutionContext": ctx, "EngineInspector": eng.create_engine_inspector(),
        "ILayer": net.get_layer(0), "ITensor": net.get_input(0)}
for cls, obj in live.items():
    out["instances"][cls] = sorted(k for k in vars(obj) if not k.startswith("_"))
print(json.dumps(out))
"""

_CHECK = r"""
import json, re, sys
import tensorrt as trt

fake = json.loads(sys.stdin.read())
problems = []

def split_params(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur); cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    names = [p.split(":")[0].split("=")[0].strip() for p in parts]
    return [n for n in names if n and n != "self" and not n.startswith("*")]

def signatures(fn, name):
    doc = getattr(fn, "__doc__", None) or ""
    sigs = []
    for line in doc.splitlines():
        m = re.match(r"^\s*(?:\d+\.\s*)?" + re.escape(name) + r"\((.*)\)\s*->", line)
        if m and "*args" not in m.group(1):
            sigs.append(split_params(m.group(1)))
    return sigs

def check_method(where, real_fn, name, params):
    sigs = signatures(real_fn, name)
    if not sigs and not type(real_fn).__name__.startswith(("instancemethod", "builtin")):
        import inspect  # a Python function of the real package (trt.nptype)
        try:
            sigs = [[p for p in inspect.signature(real_fn).parameters if p != "self"]]
        except (TypeError, ValueError):
            pass
    if not sigs:
        problems.append(f"{where}: no pybind signature in the real __doc__")
    elif params not in sigs:
        problems.append(f"{where}{tuple(params)} does not match the real {sigs}")

def check_enum(where, real_enum, members):
    real = {k: int(v) for k, v in real_enum.__members__.items()}
    for k, v in members.items():
        if k not in real:
            problems.append(f"{where}.{k} is not in the real enum")
        elif real[k] != v:
            problems.append(f"{where}.{k} = {v}, the real value is {real[k]}")

if fake["version"].split(".")[0] != trt.__version__.split(".")[0]:
    problems.append(f"the fake claims {fake['version']}, the real line is {trt.__version__}")
for name, params in fake["functions"].items():
    if not hasattr(trt, name):
        problems.append(f"trt.{name} is not in the real module")
    else:
        check_method(f"trt.{name}", getattr(trt, name), name, params)
for name, members in fake["enums"].items():
    if not hasattr(trt, name):
        problems.append(f"trt.{name} is not in the real module")
    else:
        check_enum(f"trt.{name}", getattr(trt, name), members)
for cname, members in fake["classes"].items():
    real = getattr(trt, cname, None)
    if real is None:
        problems.append(f"trt.{cname} is not in the real module")
        continue
    for m, info in members.items():
        where = f"trt.{cname}.{m}"
        if m == "__init__":
            init = real.__dict__.get("__init__")
            if init is not None and signatures(init, "__init__"):
                check_method(where, init, "__init__", info["params"])
            continue  # a class the real module never lets Python construct
        if not hasattr(real, m):
            problems.append(f"{where} is not in the real module")
            continue
        rv = getattr(real, m)
        kind = info["kind"]
        if kind == "property" and not isinstance(inspect_prop(real, m), property):
            problems.append(f"{where} is a property in the fake, not in the real module")
        elif kind == "method":
            check_method(where, rv, m, info["params"])
        elif kind == "enum":
            check_enum(where, rv, info["members"])
        elif kind == "value" and int(rv) != info["value"]:
            problems.append(f"{where} = {info['value']}, the real value is {int(rv)}")
for cname, attrs in fake["instances"].items():
    real = getattr(trt, cname)
    for a in attrs:
        if not hasattr(real, a):
            problems.append(f"a trt.{cname} object has .{a}, which the real one lacks")
print(json.dumps(problems))
"""

# inspect_prop: a property found anywhere on the real class's MRO
_CHECK = _CHECK.replace(
    "import tensorrt as trt\n",
    "import tensorrt as trt\n"
    "def inspect_prop(cls, m):\n"
    "    for c in cls.__mro__:\n"
    "        if m in c.__dict__:\n"
    "            return c.__dict__[m]\n"
    "    return None\n",
    1,
)


def _real_env(line: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(TRT / line)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        [str(TRT / line / "lib"), env.get("LD_LIBRARY_PATH", "")]
    )
    return env


def _surface(version: str, tmp: Path) -> Any:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKE), str(ROOT)]))
    env["FAKE_TRT_VERSION"] = version
    proc = subprocess.run(
        [sys.executable, "-c", _SURFACE, str(tmp / "m.onnx")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _check_real(line: str, surface: Any) -> List[str]:
    if not (TRT / line / "tensorrt").is_dir():
        pytest.fail(f"no real TensorRT {line} bindings: run `bash tests/trt_bindings/setup.sh`")
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK],
        input=json.dumps(surface),
        env=_real_env(line),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return list(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("version", sorted(CLAIMS))
def test_fake_tensorrt_names_exist_in_the_real_line(version: str, tmp_path: Path) -> None:
    surface = _surface(version, tmp_path)
    assert surface["classes"] and surface["enums"]  # the surface was really listed
    assert "IBuilderConfig" in surface["classes"] and "execute_async_v3" in str(surface)
    problems = _check_real(CLAIMS[version], surface)
    assert problems == [], "\n".join(problems)


def test_checker_catches_a_name_the_real_line_lacks(tmp_path: Path) -> None:
    """The check itself fails on a wrong fake: an extra method, wrong parameters, an enum
    member 11.x lacks and a wrong enum value are each named."""
    surface = _surface("11.4.0.106", tmp_path)
    surface["classes"]["IBuilderConfig"]["max_workspace_size_fake"] = {"kind": "property"}
    surface["classes"]["IExecutionContext"]["execute_async_v3"]["params"] = ["stream"]
    surface["enums"]["BuilderFlag"]["INT8"] = 1
    surface["enums"]["DataType"]["HALF"] = 99
    surface["instances"]["ILayer"] = ["op"]
    problems = "\n".join(_check_real("11.4", surface))
    assert "IBuilderConfig.max_workspace_size_fake is not in the real module" in problems
    assert "IExecutionContext.execute_async_v3('stream',)" in problems
    assert "trt.BuilderFlag.INT8 is not in the real enum" in problems
    assert "trt.DataType.HALF = 99" in problems
    assert "trt.ILayer object has .op" in problems


# pycuda.driver names and parameters as pycuda's docs give them (inducer/pycuda,
# doc/source/driver.rst): functions, and classes with their methods. `Stream.handle` is the
# attribute TensorRT's samples pass to execute_async_v3.
PYCUDA_DRIVER: Dict[str, Any] = {
    "init": ["flags"],
    "mem_get_info": [],
    "mem_alloc": ["bytes"],
    "pagelocked_empty": ["shape", "dtype", "order", "mem_flags"],
    "pagelocked_zeros": ["shape", "dtype", "order", "mem_flags"],
    "memcpy_htod": ["dest", "src"],
    "memcpy_htod_async": ["dest", "src", "stream"],
    "memcpy_dtoh": ["dest", "src"],
    "memcpy_dtoh_async": ["dest", "src", "stream"],
    "Error": None,
    "LogicError": None,
    "MemoryError": None,
    # created by mem_alloc / make_context, never by user code: the fake's __init__ is internal
    "DeviceAllocation": {"__init__": None, "free": []},
    "Stream": {"__init__": ["flags"], "synchronize": [], "is_done": [], "handle": None},
    "Event": {
        "__init__": ["flags"],
        "record": ["stream"],
        "synchronize": [],
        "query": [],
        "time_since": ["event"],
        "time_till": ["event"],
    },
    "Device": {
        "__init__": ["number"],
        "count": [],
        "name": [],
        "compute_capability": [],
        "total_memory": [],
        "make_context": ["flags"],
    },
    "Context": {
        "__init__": None,
        "detach": [],
        "push": [],
        "pop": [],
        "get_device": [],
        "synchronize": [],
    },
}
#: the fake's own exports, for the fake tensorrt and tests (not pycuda's)
FAKE_ONLY = {"read_device", "write_device", "allocated_bytes"}


def _params(fn: Any) -> List[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_fake_pycuda_driver_names_are_pycudas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FAKE))
    for mod in [m for m in sys.modules if m == "pycuda" or m.startswith("pycuda.")]:
        monkeypatch.delitem(sys.modules, mod)
    import pycuda.driver as driver  # the fake

    assert str(Path(driver.__file__).resolve()).startswith(str(FAKE))
    problems = []
    for name, obj in vars(driver).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != driver.__name__:
            continue
        if name in FAKE_ONLY:
            continue
        if name not in PYCUDA_DRIVER:
            problems.append(f"pycuda.driver.{name} is not in pycuda's docs")
            continue
        want = PYCUDA_DRIVER[name]
        if isinstance(want, list):
            if _params(obj) != want:
                problems.append(f"pycuda.driver.{name}{tuple(_params(obj))} != docs {want}")
        elif isinstance(want, dict):
            for m, v in vars(obj).items():
                if m.startswith("_") and m != "__init__":
                    continue
                if m not in want:
                    problems.append(f"pycuda.driver.{name}.{m} is not in pycuda's docs")
                elif callable(getattr(obj, m)) and want[m] is not None:
                    fn = v.__func__ if isinstance(v, staticmethod) else v
                    got = _params(fn)
                    if got != want[m]:
                        problems.append(f"pycuda.driver.{name}.{m}{tuple(got)} != {want[m]}")
    driver.init()
    stream = driver.Stream()
    problems += [] if isinstance(stream.handle, int) else ["Stream.handle is not an int"]
    extra = sorted(k for k in vars(stream) if not k.startswith("_") and k != "handle")
    problems += [f"a Stream object has .{k}, not in pycuda's docs" for k in extra]
    assert problems == [], "\n".join(problems)
