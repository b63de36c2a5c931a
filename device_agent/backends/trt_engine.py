"""The runtime side of the TensorRT Python API (8.5+, name-based I/O), for the engine runner
and the build summary: deserialize a plan, list its I/O tensors, bind shapes and addresses,
run with `execute_async_v3`, read the engine inspector's JSON, and map trt.DataType to numpy.

Like trt_api, `trt` is always passed in; tests/device_agent/backends/test_trt_bindings.py
checks every call here against the real bindings of 8.6, 10.3, 10.13 and 11.4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import AgentError

#: trt.DataType member name -> numpy dtype name (the types an engine's I/O can have and
#: numpy can hold; BF16/FP8/INT4/FP4 have no numpy type and are refused by name)
_NUMPY = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    """The numpy dtype of a trt.DataType member (AgentError for types numpy lacks)."""
    for name, member in trt.DataType.__members__.items():
        if member == dtype:
            if name in _NUMPY:
                return np.dtype(_NUMPY[name])
            raise AgentError(
                f"The engine has a {name} tensor, which numpy cannot hold.",
                "Keep the model's inputs and outputs in FP32/FP16/INT8/INT32 (cast in the ONNX).",
            )
    raise AgentError(f"Unknown TensorRT data type {dtype!r}.", "Rebuild the engine.")


def trt_dtype(trt: Any, dtype: Any) -> Any:
    """The trt.DataType member of a numpy dtype (AgentError when this line has none)."""
    name = np.dtype(dtype).name
    for trt_name, np_name in _NUMPY.items():
        if np_name == name and trt_name in trt.DataType.__members__:
            return trt.DataType.__members__[trt_name]
    raise AgentError(
        f"TensorRT {getattr(trt, '__version__', '')} has no data type for numpy {name}.",
        "Cast the data to float32, float16, int8, int32 or bool.",
    )


def deserialize(
    trt: Any, logger: Any, plan_bytes: bytes, dla_core: Optional[int] = None
) -> Tuple[Any, Any]:
    """(ICudaEngine, Runtime) of a serialized plan; keep the runtime alive as long as the
    engine. AgentError when TensorRT refuses it, as it does for a plan built by another
    TensorRT version or for another GPU."""
    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(bytes(plan_bytes))
    if engine is None:
        raise AgentError(
            "TensorRT could not load the engine plan (its log above says why).",
            "Plans only load on the TensorRT version and GPU that built them: rebuild it here.",
        )
    return engine, runtime


@dataclass(frozen=True)
class IoTensor:
    """One I/O tensor of an engine: its shape has -1 for dynamic dimensions."""

    name: str
    is_input: bool
    shape: Tuple[int, ...]
    dtype: np.dtype


def io_tensors(trt: Any, engine: Any) -> List[IoTensor]:
    """The engine's I/O tensors in its order (`num_io_tensors`, 8.5+)."""
    out = []
    for i in range(int(engine.num_io_tensors)):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        shape = tuple(int(d) for d in engine.get_tensor_shape(name))
        dtype = numpy_dtype(trt, engine.get_tensor_dtype(name))
        out.append(IoTensor(name, mode == trt.TensorIOMode.INPUT, shape, dtype))
    return out


def create_context(engine: Any) -> Any:
    context = engine.create_execution_context()
    if context is None:
        raise AgentError(
            "TensorRT could not create an execution context (out of device memory?).",
            "Close other models on the device, or rebuild with a smaller workspace.",
        )
    return context


def set_input_shape(context: Any, name: str, shape: Sequence[int]) -> None:
    """Bind a dynamic input's shape for the next run (within the profile's min..max)."""
    if not context.set_input_shape(name, tuple(int(d) for d in shape)):
        raise AgentError(
            f"{name}: TensorRT refused the shape {tuple(shape)}.",
            "Run with shapes inside the engine's profile (--input-shape min/opt/max).",
        )


def output_shape(context: Any, name: str) -> Tuple[int, ...]:
    """An output's concrete shape once every input shape is set."""
    return tuple(int(d) for d in context.get_tensor_shape(name))


def set_addresses(context: Any, addresses: Dict[str, int]) -> None:
    """Give the context the device address of every I/O tensor."""
    for name, ptr in addresses.items():
        if not context.set_tensor_address(name, int(ptr)):
            raise AgentError(f"TensorRT refused the address of {name}.", "Rebuild the engine.")


def execute(context: Any, stream_handle: int) -> None:
    """Queue one inference on the stream (`execute_async_v3`, 8.5+)."""
    if not context.execute_async_v3(int(stream_handle)):
        raise AgentError(
            "TensorRT failed to run the engine (its log above says why).",
            "Check the input shapes and that the device has free memory.",
        )


def engine_information(trt: Any, engine: Any) -> str:
    """The engine inspector's JSON for the whole engine (layer detail needs the config's
    profiling_verbosity DETAILED at build time; trt_api.configure sets it)."""
    inspector = engine.create_engine_inspector()
    return str(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def dla_cores(builder_or_runtime: Any) -> int:
    """How many DLA cores the device has (`num_DLA_cores` of a Builder or Runtime)."""
    return int(builder_or_runtime.num_DLA_cores)
