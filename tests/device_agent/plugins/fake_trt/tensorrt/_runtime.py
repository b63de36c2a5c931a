"""The fake TensorRT's runtime: deserializing a plan, the engine, its execution context
(onnxruntime on the fake pycuda's device memory) and the engine inspector."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import (
    _MAJOR,
    DataType,
    IHostMemory,
    ILogger,
    LayerInformationFormat,
    TensorIOMode,
    __version__,
    _engine,
    _log,
)

_SEV = ILogger.Severity


class Runtime:
    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self._dla = -1

    @property
    def DLA_core(self) -> int:  # noqa: N802
        return self._dla

    @DLA_core.setter
    def DLA_core(self, value: int) -> None:  # noqa: N802
        self._dla = int(value)

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return int(os.environ.get("FAKE_TRT_DLA", "0"))

    def deserialize_cuda_engine(self, serialized_engine: Any) -> Optional[ICudaEngine]:
        got = _engine.unpack(bytes(memoryview(serialized_engine)))
        if got is None:
            _log(self._logger, _SEV.ERROR, "[fake] Serialization assertion magicTagRead failed")
            return None
        header, onnx_bytes = got
        if header["version"] != __version__:
            _log(
                self._logger,
                _SEV.ERROR,
                f"[fake] the plan was built by TensorRT {header['version']}, "
                f"this is {__version__}: version tag mismatch",
            )
            return None
        return ICudaEngine(header, onnx_bytes)


class ICudaEngine:
    def __init__(self, header: Dict[str, Any], onnx_bytes: bytes) -> None:
        self._header, self._onnx_bytes = header, onnx_bytes
        self._io = {t["name"]: (t, True) for t in header["inputs"]}
        self._io.update({t["name"]: (t, False) for t in header["outputs"]})
        self._names = list(self._io)
        self._session: Any = None

    def _ort(self) -> Any:
        if self._session is None:
            self._session = _engine.session(self._onnx_bytes)
        return self._session

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    @property
    def num_layers(self) -> int:
        return len(self._header["layers"])

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    @property
    def device_memory_size(self) -> int:
        return int(self._header["workspace"]) // 1024

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def _tensor(self, name: str) -> Tuple[Dict[str, Any], bool]:
        if name not in self._io:
            raise KeyError(f"no I/O tensor named {name!r}")
        return self._io[name]

    def get_tensor_mode(self, name: str) -> Any:
        return TensorIOMode.INPUT if self._tensor(name)[1] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        return tuple(self._tensor(name)[0]["shape"])

    def get_tensor_dtype(self, name: str) -> Any:
        return DataType.__members__[self._tensor(name)[0]["dtype"]]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> List[Tuple[int, ...]]:
        return [tuple(d) for d in self._header["profiles"][name]]

    def serialize(self) -> IHostMemory:
        return IHostMemory(_engine.pack(self._header, self._onnx_bytes))

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext:
        return IExecutionContext(self)

    def _create_execution_context_8(self) -> IExecutionContext:
        return IExecutionContext(self)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._shapes: Dict[str, Tuple[int, ...]] = {
            t["name"]: tuple(t["shape"]) for t in engine._header["inputs"]
        }
        self._addresses: Dict[str, int] = {}
        self._out_shapes: Dict[Tuple[Tuple[int, ...], ...], Dict[str, Tuple[int, ...]]] = {}

    @property
    def engine(self) -> ICudaEngine:
        return self._engine

    def set_input_shape(self, name: str, shape: Any) -> bool:
        t, is_input = self._engine._tensor(name)
        dims = tuple(int(d) for d in shape)
        lo, _, hi = self._engine._header["profiles"][name] if is_input else ([], [], [])
        if not is_input or not _engine.in_profile(dims, lo, hi):
            return False
        self._shapes[name] = dims
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._engine._tensor(name)
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def _ready(self) -> bool:
        return all(all(d >= 0 for d in s) for s in self._shapes.values())

    def _outputs(self) -> Dict[str, Tuple[int, ...]]:
        key = tuple(self._shapes[n] for n in sorted(self._shapes))
        if key not in self._out_shapes:
            sess = self._engine._ort()
            feed = {
                t["name"]: np.zeros(self._shapes[t["name"]], _engine.NUMPY_OF[t["dtype"]])
                for t in self._engine._header["inputs"]
            }
            outs = sess.run([t["name"] for t in self._engine._header["outputs"]], feed)
            self._out_shapes[key] = {
                t["name"]: tuple(o.shape) for t, o in zip(self._engine._header["outputs"], outs)
            }
        return self._out_shapes[key]

    def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
        t, is_input = self._engine._tensor(name)
        if is_input:
            return self._shapes[name]
        if all(d >= 0 for d in t["shape"]) or not self._ready():
            return tuple(t["shape"])
        return self._outputs()[name]

    @property
    def all_binding_shapes_specified(self) -> bool:
        return self._ready()

    def execute_async_v3(self, stream_handle: int) -> bool:
        """Run the ONNX on the inputs at their device addresses; write the outputs to theirs.
        False (as TensorRT) when a shape or an address is missing."""
        header = self._engine._header
        if not self._ready() or any(n not in self._addresses for n in self._engine._io):
            return False
        feed = {
            t["name"]: _engine.read_array(
                self._addresses[t["name"]], self._shapes[t["name"]], _engine.NUMPY_OF[t["dtype"]]
            )
            for t in header["inputs"]
        }
        outs = self._engine._ort().run([t["name"] for t in header["outputs"]], feed)
        for t, value in zip(header["outputs"], outs):
            value = np.asarray(value, _engine.NUMPY_OF[t["dtype"]])
            _engine.write_array(self._addresses[t["name"]], value)
        return True


class EngineInspector:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._context: Optional[IExecutionContext] = None

    @property
    def execution_context(self) -> Optional[IExecutionContext]:
        return self._context

    @execution_context.setter
    def execution_context(self, value: IExecutionContext) -> None:
        self._context = value

    def get_engine_information(self, format: Any) -> str:  # noqa: A002
        header = self._engine._header
        detailed = header["verbosity"] == "DETAILED"
        if LayerInformationFormat(format) == LayerInformationFormat.ONELINE:
            return "\n".join(layer["name"] for layer in header["layers"]) + "\n"
        return _engine.inspector_json(
            header, detailed, "I/O Tensors" if _MAJOR >= 11 else "Bindings"
        )

    def get_layer_information(self, layer_index: int, format: Any) -> str:  # noqa: A002
        layer = self._engine._header["layers"][layer_index]
        if LayerInformationFormat(format) == LayerInformationFormat.ONELINE:
            return str(layer["name"])
        return json.dumps({"Name": layer["name"], "LayerType": layer["type"]})
