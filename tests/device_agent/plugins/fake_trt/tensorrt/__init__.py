"""A tiny TensorRT in pure Python on onnxruntime, for end-to-end tests without a GPU.

It claims the version in $FAKE_TRT_VERSION (default "10.3.0.26") and has only names that
the real bindings of that line have (test_fake_trt_conformance.py checks every class,
method, parameter and enum member against them): on 11.x there is no BuilderFlag.FP16/INT8,
no calibrator and no EXPLICIT_BATCH. $FAKE_TRT_DLA is num_DLA_cores (default 0);
$FAKE_TRT_REJECT is a comma list of ONNX ops the parser rejects. Device memory is the fake
pycuda's (pycuda/driver.py beside this package).
"""

from __future__ import annotations

import enum
import os
from typing import Any, Dict, List, Optional, Tuple

from . import _engine
from ._enums import TABLES

__version__ = os.environ.get("FAKE_TRT_VERSION", "10.3.0.26")
_parts = [int(p) for p in (__version__.split(".") + ["0", "0"])[:2]]
_MAJOR, _MINOR = _parts[0], _parts[1]
if _MAJOR == 8:
    _LINE = "8.6"
elif _MAJOR == 10:
    _LINE = "10.13" if _MINOR >= 13 else "10.3"
elif _MAJOR == 11:
    _LINE = "11.4"
else:
    raise ImportError(f"the fake tensorrt has no line for version {__version__}")
_T = TABLES[_LINE]


def _enum(name: str) -> Any:
    return enum.IntEnum(name, _T[name])


DataType = _enum("DataType")
BuilderFlag = _enum("BuilderFlag")
MemoryPoolType = _enum("MemoryPoolType")
NetworkDefinitionCreationFlag = _enum("NetworkDefinitionCreationFlag")
TensorIOMode = _enum("TensorIOMode")
LayerInformationFormat = _enum("LayerInformationFormat")
ProfilingVerbosity = _enum("ProfilingVerbosity")
DeviceType = _enum("DeviceType")
ErrorCode = _enum("ErrorCode")
if "CalibrationAlgoType" in _T:
    CalibrationAlgoType = _enum("CalibrationAlgoType")


def nptype(trt_type: Any) -> Any:
    """The numpy type of a DataType member."""
    import numpy as np

    return np.dtype(_engine.NUMPY_OF[DataType(trt_type).name]).type


class ILogger:
    """The logger interface; subclass and override `log`."""

    Severity: Any = _enum("Severity")
    INTERNAL_ERROR = Severity.INTERNAL_ERROR
    ERROR = Severity.ERROR
    WARNING = Severity.WARNING
    INFO = Severity.INFO
    VERBOSE = Severity.VERBOSE

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:
        pass


class Logger(ILogger):
    """Prints messages at `min_severity` or worse to stderr, as TensorRT's logger does."""

    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        self._min = min_severity

    @property
    def min_severity(self) -> Any:
        return self._min

    @min_severity.setter
    def min_severity(self, value: Any) -> None:
        self._min = value

    def log(self, severity: Any, msg: str) -> None:
        if int(severity) <= int(self._min):
            import sys

            sys.stderr.write(f"[TRT] [{ILogger.Severity(severity).name[0]}] {msg}\n")


def _log(logger: Any, severity: Any, msg: str) -> None:
    if logger is not None:
        logger.log(severity, msg)


class IHostMemory(bytes):
    """Serialized data (a plan, a timing cache), with the buffer protocol."""

    @property
    def nbytes(self) -> int:
        return len(self)

    @property
    def dtype(self) -> Any:
        return DataType.UINT8


class ITensor:
    def __init__(self, name: str, dtype: Any, shape: Tuple[int, ...], is_input: bool) -> None:
        self._name, self._dtype, self._shape = name, dtype, shape
        self._input, self._output = is_input, False

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> Any:
        return self._dtype

    @property
    def shape(self) -> Tuple[int, ...]:
        return self._shape

    @property
    def is_network_input(self) -> bool:
        return self._input

    @property
    def is_network_output(self) -> bool:
        return self._output


class ILayer:
    """One layer: the parser makes one per ONNX node."""

    def __init__(self, name: str, op: str, inputs: List[str], outputs: List[str]) -> None:
        self._name, self._op, self._inputs, self._outputs = name, op, inputs, outputs
        self._precision: Any = DataType.FLOAT
        self._precision_set = False
        self._output_types: Dict[int, Any] = {}

    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def precision(self) -> Any:
        return self._precision

    @precision.setter
    def precision(self, value: Any) -> None:
        self._precision, self._precision_set = DataType(value), True

    @property
    def precision_is_set(self) -> bool:
        return self._precision_set

    def reset_precision(self) -> None:
        self._precision, self._precision_set = DataType.FLOAT, False

    def _check(self, index: int) -> None:
        if not 0 <= index < len(self._outputs):
            raise IndexError(f"layer {self._name} has no output {index}")

    def set_output_type(self, index: int, dtype: Any) -> None:
        self._check(index)
        self._output_types[index] = DataType(dtype)

    def get_output_type(self, index: int) -> Any:
        self._check(index)
        return self._output_types.get(index, DataType.FLOAT)

    def output_type_is_set(self, index: int) -> bool:
        self._check(index)
        return index in self._output_types

    def reset_output_type(self, index: int) -> None:
        self._output_types.pop(index, None)


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self._flags = int(flags)
        self._layers: List[ILayer] = []
        self._inputs: List[ITensor] = []
        self._outputs: List[ITensor] = []
        self._onnx: Optional[Any] = None  # the parsed onnx.ModelProto
        self.name = "Unnamed Network 0"

    def _has_flag(self, flag: Any) -> bool:
        return bool(self._flags & (1 << int(flag)))

    @property
    def flags(self) -> int:
        return self._flags

    def get_flag(self, flag: Any) -> bool:
        return self._has_flag(flag)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


from ._build import (  # noqa: E402  (they use the classes above)
    Builder,
    IBuilderConfig,
    IInt8Calibrator,
    IInt8EntropyCalibrator2,
    IOptimizationProfile,
    ITimingCache,
    OnnxParser,
    ParserError,
)
from ._runtime import EngineInspector, ICudaEngine, IExecutionContext, Runtime  # noqa: E402

__all__ = [
    "Builder",
    "EngineInspector",
    "IBuilderConfig",
    "ICudaEngine",
    "IExecutionContext",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator2",
    "IOptimizationProfile",
    "ITimingCache",
    "OnnxParser",
    "ParserError",
    "Runtime",
]

# -- what each line lacks, as in the real bindings ------------------------------------------
if _MAJOR >= 11:
    del IInt8Calibrator, IInt8EntropyCalibrator2
    __all__ = [n for n in __all__ if not n.startswith("IInt8")]
    for _cls, _names in (
        (IBuilderConfig, ("int8_calibrator", "set_calibration_profile", "get_calibration_profile")),
        (
            ILayer,
            (
                "precision",
                "precision_is_set",
                "reset_precision",
                "set_output_type",
                "output_type_is_set",
                "reset_output_type",
            ),
        ),
        (Builder, ("platform_has_fast_fp16", "platform_has_fast_int8")),
        (ICudaEngine, ("device_memory_size",)),
    ):
        for _n in _names:
            delattr(_cls, _n)
if _MAJOR < 10:
    delattr(INetworkDefinition, "flags")
    delattr(INetworkDefinition, "get_flag")
    delattr(ParserError, "node_name")
    delattr(ParserError, "node_operator")
    ICudaEngine.create_execution_context = ICudaEngine._create_execution_context_8  # type: ignore
if (_MAJOR, _MINOR) < (8, 6):
    delattr(IBuilderConfig, "builder_optimization_level")
