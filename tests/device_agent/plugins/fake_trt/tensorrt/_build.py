"""The fake TensorRT's builder, parser, runtime, engine and execution context."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from . import (
    _MAJOR,
    DataType,
    DeviceType,
    ErrorCode,
    IHostMemory,
    ILayer,
    ILogger,
    INetworkDefinition,
    ITensor,
    MemoryPoolType,
    ProfilingVerbosity,
    __version__,
    _engine,
    _log,
)
from . import BuilderFlag as _Flag

_SEV = ILogger.Severity


class IInt8Calibrator:
    """The calibrator interface; subclass it and override the methods. As with pybind, a
    subclass whose __init__ does not call the base __init__ fails when it is made."""

    def __init__(self) -> None:
        self._base_init = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__init__")
        if own is None:
            return

        def checked(self: Any, *args: Any, **kw: Any) -> None:
            own(self, *args, **kw)
            if not getattr(self, "_base_init", False):
                raise TypeError(
                    f"{IInt8Calibrator.__name__}.__init__() must be called when overriding __init__"
                )

        cls.__init__ = checked  # type: ignore[method-assign]

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names: List[str]) -> List[int]:
        return []

    def read_calibration_cache(self) -> Any:
        return None

    def write_calibration_cache(self, cache: Any) -> None:
        pass

    def get_algorithm(self) -> Any:
        from . import CalibrationAlgoType

        return CalibrationAlgoType.ENTROPY_CALIBRATION_2


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: Dict[str, List[Tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
        dims = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if not all(len(d) == len(dims[0]) for d in dims) or not all(
            a <= b <= c for a, b, c in zip(*dims)
        ):
            raise ValueError(f"{input}: need min <= opt <= max of one rank, got {dims}")
        self._shapes[input] = dims

    def get_shape(self, input: str) -> List[Tuple[int, ...]]:  # noqa: A002
        return list(self._shapes.get(input, []))


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self._entries: Dict[str, Any] = json.loads(data.decode()) if data else {}

    def serialize(self) -> IHostMemory:
        return IHostMemory(json.dumps(self._entries, sort_keys=True).encode())

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._entries.update(input_cache._entries)
        return True

    def reset(self) -> bool:
        self._entries.clear()
        return True


class IBuilderConfig:
    def __init__(self) -> None:
        self._flags: set = set()
        self._pools: Dict[int, int] = {int(MemoryPoolType.WORKSPACE): 8 << 30}
        self._profiles: List[IOptimizationProfile] = []
        self._calib_profile: Optional[IOptimizationProfile] = None
        self._calibrator: Any = None
        self._cache: Optional[ITimingCache] = None
        self._level = 3
        self._verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self._dla = -1
        self._device = DeviceType.GPU

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self._pools[int(MemoryPoolType(pool))] = int(pool_size)

    def get_memory_pool_limit(self, pool: Any) -> int:
        return self._pools.get(int(MemoryPoolType(pool)), 0)

    def set_flag(self, flag: Any) -> None:
        self._flags.add(int(_Flag(flag)))

    def clear_flag(self, flag: Any) -> None:
        self._flags.discard(int(_Flag(flag)))

    def get_flag(self, flag: Any) -> bool:
        return int(_Flag(flag)) in self._flags

    @property
    def flags(self) -> int:
        return sum(1 << f for f in self._flags)

    @property
    def int8_calibrator(self) -> Any:
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, value: Any) -> None:
        if value is not None and not isinstance(value, IInt8Calibrator):
            raise TypeError("int8_calibrator must be an IInt8Calibrator")
        self._calibrator = value

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self._calib_profile = profile
        return True

    def get_calibration_profile(self) -> Optional[IOptimizationProfile]:
        return self._calib_profile

    def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
        return ITimingCache(bytes(memoryview(serialized_timing_cache)))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._cache = cache
        return True

    def get_timing_cache(self) -> Optional[ITimingCache]:
        return self._cache

    @property
    def builder_optimization_level(self) -> int:
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value: int) -> None:
        if not 0 <= int(value) <= 5:
            raise ValueError("builder_optimization_level is 0..5")
        self._level = int(value)

    @property
    def profiling_verbosity(self) -> Any:
        return self._verbosity

    @profiling_verbosity.setter
    def profiling_verbosity(self, value: Any) -> None:
        self._verbosity = ProfilingVerbosity(value)

    @property
    def DLA_core(self) -> int:  # noqa: N802 (TensorRT's name)
        return self._dla

    @DLA_core.setter
    def DLA_core(self, value: int) -> None:  # noqa: N802
        self._dla = int(value)

    @property
    def default_device_type(self) -> Any:
        return self._device

    @default_device_type.setter
    def default_device_type(self, value: Any) -> None:
        self._device = DeviceType(value)


class Builder:
    def __init__(self, logger: Any) -> None:
        self._logger = logger

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return int(os.environ.get("FAKE_TRT_DLA", "0"))

    @property
    def platform_has_fast_fp16(self) -> bool:
        return True

    @property
    def platform_has_fast_int8(self) -> bool:
        return True

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> Optional[IHostMemory]:
        """The plan, or None (with the reason logged) as TensorRT does."""
        try:
            return IHostMemory(_build(self, network, config))
        except (RuntimeError, ValueError) as e:
            _log(self._logger, _SEV.ERROR, f"[fake] build failed: {e}")
            return None


def _strong(network: INetworkDefinition) -> bool:
    from . import NetworkDefinitionCreationFlag as Ncf

    return "STRONGLY_TYPED" in Ncf.__members__ and network._has_flag(Ncf.STRONGLY_TYPED)


def _build(builder: Builder, network: INetworkDefinition, config: IBuilderConfig) -> bytes:
    if network._onnx is None:
        raise RuntimeError("the network is empty (parse an ONNX first)")
    if _MAJOR < 10 and not network._has_flag(0):
        raise RuntimeError("TensorRT 8 parses ONNX only into an EXPLICIT_BATCH network")
    strong = _strong(network)
    flags = {_Flag(f).name for f in config._flags}
    if strong and flags & {"FP16", "INT8", "BF16", "FP8"}:
        raise RuntimeError("a strongly typed network takes no precision flags")
    profile = config._profiles[0] if config._profiles else None
    shapes: Dict[str, Tuple[int, ...]] = {}
    profiles: Dict[str, List[List[int]]] = {}
    for t in network._inputs:
        dims = profile._shapes.get(t.name) if profile is not None else None
        if dims is None:
            if any(d < 0 for d in t.shape):
                raise RuntimeError(f"input {t.name} is dynamic and has no optimization profile")
            dims = [t.shape] * 3
        elif not _engine.matches_static(dims[2], t.shape) or not _engine.matches_static(
            dims[0], t.shape
        ):
            raise RuntimeError(f"{t.name}: the profile {dims} does not fit {t.shape}")
        profiles[t.name] = [list(d) for d in dims]
        shapes[t.name] = dims[1]
    dla = config.default_device_type == DeviceType.DLA
    if dla and not 0 <= config.DLA_core < builder.num_DLA_cores:
        raise RuntimeError(f"DLA core {config.DLA_core} does not exist")
    onnx_bytes = network._onnx.SerializeToString()
    ios = [_io(t) for t in network._inputs]
    scales: Dict[str, float] = {}
    calibrator = getattr(config, "_calibrator", None)
    if "INT8" in flags and calibrator is not None:
        calib = config._calib_profile or profile
        cshapes = {
            t.name: tuple(calib._shapes[t.name][1]) if calib else shapes[t.name]
            for t in network._inputs
        }
        try:
            scales = _engine.calibrate(calibrator, ios, cshapes, onnx_bytes, __version__)
        except Exception as e:  # as the real bindings: a callback's error fails the build
            raise RuntimeError(f"calibration failed: {type(e).__name__}: {e}") from e
    header = {
        "version": __version__,
        "inputs": ios,
        "outputs": [_io(t) for t in network._outputs],
        "profiles": profiles,
        "flags": sorted(flags),
        "strongly_typed": strong,
        "dla_core": config.DLA_core if config.default_device_type == DeviceType.DLA else None,
        "optimization_level": config._level,
        "verbosity": ProfilingVerbosity(config.profiling_verbosity).name,
        "workspace": config.get_memory_pool_limit(MemoryPoolType.WORKSPACE),
        "calibration_scales": scales,
        "layers": [_layer(layer, flags, strong, network) for layer in network._layers],
    }
    if config._cache is not None:
        config._cache._entries.update({f"{layer._op}:{layer.name}": 1 for layer in network._layers})
    return _engine.pack(header, onnx_bytes)


def _io(t: ITensor) -> Dict[str, Any]:
    return {"name": t.name, "dtype": DataType(t.dtype).name, "shape": list(t.shape)}


def _layer(layer: ILayer, flags: set, strong: bool, network: INetworkDefinition) -> Dict[str, Any]:
    if strong:
        if layer._op in ("QuantizeLinear", "DequantizeLinear"):
            precision = "Int8"
        else:
            precision = "Half" if layer._op_fp16 else "FP32"  # type: ignore[attr-defined]
    elif getattr(layer, "_precision_set", False) and layer.precision == DataType.FLOAT:
        precision = "FP32"
    elif "INT8" in flags:
        precision = "Int8"
    elif "FP16" in flags:
        precision = "Half"
    else:
        precision = "FP32"
    return {
        "name": layer.name,
        "type": layer._op,
        "inputs": layer._inputs,
        "outputs": layer._outputs,
        "precision": precision,
    }


class ParserError:
    def __init__(self, code: Any, desc: str, node: int, name: str, op: str) -> None:
        self._code, self._desc, self._node, self._name, self._op = code, desc, node, name, op

    def code(self) -> Any:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def node_name(self) -> str:
        return self._name

    def node_operator(self) -> str:
        return self._op

    def file(self) -> str:
        return "fake_onnx_parser.py"

    def func(self) -> str:
        return "parse"

    def line(self) -> int:
        return 0

    def __str__(self) -> str:
        return f"In node {self._node} ({self._op}): {self._desc}"


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self._network, self._logger = network, logger
        self._errors: List[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        if not os.path.isfile(model):
            _log(self._logger, _SEV.ERROR, f"Failed to open file: {model}")
            self._errors.append(
                ParserError(ErrorCode.INVALID_GRAPH, f"cannot open {model}", -1, "", "")
            )
            return False
        return self._parse(onnx.load(model))

    def parse(self, model: Any, path: Optional[str] = None) -> bool:
        import onnx

        return self._parse(onnx.load_from_string(bytes(memoryview(model))))

    def _parse(self, proto: Any) -> bool:
        from . import _parse

        errors = _parse.check(proto)
        for e in errors:
            self._errors.append(ParserError(ErrorCode.UNSUPPORTED_NODE, e[3], e[0], e[1], e[2]))
            _log(self._logger, _SEV.ERROR, f"[fake] node {e[0]} ({e[2]}): {e[3]}")
        if errors:
            return False
        _parse.fill(self._network, proto)
        return True
