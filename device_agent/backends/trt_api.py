"""The TensorRT Python API as the tensorrt backend uses it, one place for every version.

JetPack ships one TensorRT line per release, and the Python API differs between them:

| JetPack | TensorRT | here |
|---|---|---|
| 5.1.x | 8.5.2 | the 8.x branch, checked against 8.6.1's bindings (see below) |
| 6.0 | 8.6.2 | the 8.x branch |
| 6.1 / 6.2 | 10.3 | the 10.x branch |
| 7.0 / 7.1 | 10.13 | the 10.x branch |
| 7.2.2+ | 11.4 | the 11.x branch |

8.5 has no bindings wheel; 8.6's API is its closest superset, so 8.5 is checked against 8.6.1's
bindings: `builder_optimization_level` is the one 8.6 addition used, and it is gated on 8.6.

What changes between the lines (each checked against the real bindings of that line by
tests/device_agent/backends/test_trt_bindings.py):
- the explicit-batch network flag: required on 8.x, deprecated on 10.x (explicit batch is
  the only mode, so it is not set), gone on 11.x;
- `NetworkDefinitionCreationFlag.STRONGLY_TYPED`: 10.x and 11.x; on 11.x every network is
  strongly typed, since `BuilderFlag.FP16`/`INT8`, `IInt8Calibrator`, calibration caches and
  per-layer precision (`ILayer.precision`) are gone;
- INT8: an implicit calibrator (8.5-10.x) or an ONNX with explicit Q/DQ (8.x with the INT8
  flag and no calibrator; 10.x and 11.x as a strongly typed network);
- parser errors: a node index on 8.x; also the node's name and operator on 10.x and up;
- `builder_optimization_level`: 8.6 and up.

`tensorrt` is never imported here at module level: every function takes the module (`trt`),
so this imports with the stdlib alone and the tests hand it each line's real module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import AgentError
from .trt_parser import ParserIssue as ParserIssue  # re-exported: the backend's names
from .trt_parser import parse_error as parse_error
from .trt_parser import parse_onnx as parse_onnx
from .trt_parser import parser_issues as parser_issues

#: (min, opt, max) shape of one input's optimization profile
ShapeRange = Tuple[Sequence[int], Sequence[int], Sequence[int]]

CALIBRATOR = "calibrator"  # implicit INT8: an IInt8Calibrator and a calibration cache
QDQ = "qdq"  # explicit INT8: the host's ONNX carries QuantizeLinear/DequantizeLinear

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TrtVersion:
    """TensorRT's version as `major.minor.patch.build` (`build` is 0 where not given)."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    @property
    def line(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}.{self.build}"


_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")

#: The lines the backend builds with: (major, lowest minor), highest major last.
SUPPORTED = {8: 5, 10: 0, 11: 0}


def parse_version(text: str) -> TrtVersion:
    """`trt.__version__` ("8.5.2.2", "10.3.0", "11.4.0.106") as a TrtVersion."""
    m = _VERSION.match(str(text))
    if m is None:
        raise AgentError(
            f"TensorRT reports the version {text!r}, which is not major.minor[.patch[.build]].",
            "Reinstall TensorRT's Python bindings from the board's JetPack.",
        )
    return TrtVersion(*(int(g) if g is not None else 0 for g in m.groups()))


def check_supported(version: TrtVersion) -> None:
    """Refuse TensorRT lines the backend does not build with, naming the version."""
    low = SUPPORTED.get(version.major)
    if low is None or version.minor < low:
        lines = ", ".join(f"{major}.{minor}+" for major, minor in SUPPORTED.items())
        raise AgentError(
            f"TensorRT {version} is not supported by the tensorrt backend (it supports {lines}).",
            "Use JetPack 5.1 (TensorRT 8.5) or newer, or convert with --backend native.",
        )


def version_of(trt: Any) -> TrtVersion:
    """The supported version of the `tensorrt` module `trt` (AgentError otherwise)."""
    version = parse_version(getattr(trt, "__version__", ""))
    check_supported(version)
    return version


def import_tensorrt() -> Any:
    """`import tensorrt`, with an AgentError that names the fix when it is missing."""
    try:
        import tensorrt
    except ImportError as e:
        raise AgentError(
            f"The TensorRT Python module does not import: {e}.",
            "Install JetPack's python3-libnvinfer (it ships with every JetPack), "
            "or convert with --backend native.",
        ) from e
    return tensorrt


# -- precision, per version ------------------------------------------------------------------


def int8_modes(version: TrtVersion) -> Tuple[str, ...]:
    """The INT8 modes this TensorRT line has, the default first."""
    if version.major >= 11:
        return (QDQ,)
    return (CALIBRATOR, QDQ)


def fp16_from_onnx(version: TrtVersion) -> bool:
    """True where FP16 must come from an FP16 ONNX (11.x: no BuilderFlag.FP16)."""
    return version.major >= 11


def strongly_typed(version: TrtVersion, precision: str, int8_mode: Optional[str]) -> bool:
    """Whether the network is built strongly typed: always on 11.x; for Q/DQ on 10.x."""
    if version.major >= 11:
        return True
    return version.major >= 10 and precision == "int8" and int8_mode == QDQ


# -- builder, network (the parser: trt_parser, re-exported here) ---------------------


def make_logger(trt: Any, verbose: bool = False) -> Any:
    severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return trt.Logger(severity)


def create_builder(trt: Any, logger: Any) -> Any:
    try:
        builder = trt.Builder(logger)
    except TypeError as e:  # pybind: "factory function returned nullptr"
        raise AgentError(
            f"TensorRT could not create a builder ({e}).",
            "Check that the GPU is visible (nvidia-smi or tegrastats) and CUDA works.",
        ) from e
    return builder


def network_flags(trt: Any, version: TrtVersion, strong: bool) -> int:
    """The `create_network` flags: explicit batch on 8.x, STRONGLY_TYPED where asked."""
    ncf = trt.NetworkDefinitionCreationFlag
    flags = 0
    if version.major < 10:
        flags |= 1 << int(ncf.EXPLICIT_BATCH)
    if strong:
        if version.major < 10:
            raise AgentError(
                f"TensorRT {version} has no strongly typed networks.",
                "Strongly typed networks need TensorRT 10 or newer.",
            )
        flags |= 1 << int(ncf.STRONGLY_TYPED)
    return flags


def create_network(trt: Any, version: TrtVersion, builder: Any, strong: bool) -> Any:
    return builder.create_network(network_flags(trt, version, strong))


def create_config(builder: Any) -> Any:
    """A fresh IBuilderConfig of `builder`."""
    return builder.create_builder_config()


# -- the builder config ----------------------------------------------------------------------


@dataclass
class BuildSettings:
    """What one engine build asks of the builder config. `timing_cache` is the serialized
    cache to start from (b"" for a fresh one; None for none). `calibrator` is an
    IInt8Calibrator (trt_calib) for implicit INT8."""

    precision: str = "fp32"
    int8_mode: Optional[str] = None
    workspace_bytes: Optional[int] = None
    profiles: Dict[str, ShapeRange] = field(default_factory=dict)
    optimization_level: Optional[int] = None
    timing_cache: Optional[bytes] = None
    dla_core: Optional[int] = None
    fp32_layers: Sequence[str] = ()
    calibrator: Any = None


def resolve_int8_mode(version: TrtVersion, settings: BuildSettings) -> Optional[str]:
    """The INT8 mode for these settings (None unless INT8), refusing one the line lacks."""
    if settings.precision not in PRECISIONS:
        raise AgentError(
            f"Unknown precision {settings.precision!r}.", "Use one of: " + ", ".join(PRECISIONS)
        )
    if settings.precision != "int8":
        return None
    modes = int8_modes(version)
    mode = settings.int8_mode or modes[0]
    if mode not in modes:
        raise AgentError(
            f"TensorRT {version} has no {mode} INT8 (it has: {', '.join(modes)}).",
            "TensorRT 11 removed implicit calibration: quantize on the host (Q/DQ ONNX).",
        )
    if mode == CALIBRATOR and settings.calibrator is None:
        raise AgentError("Implicit INT8 needs a calibrator.", "Give calibration data (--calib).")
    return mode


def configure(
    trt: Any,
    version: TrtVersion,
    builder: Any,
    network: Any,
    config: Any,
    settings: BuildSettings,
) -> List[str]:
    """Apply `settings` to the builder config (and pinned layers to the network); the
    notes worth logging (settings this line ignores)."""
    notes: List[str] = []
    mode = resolve_int8_mode(version, settings)
    strong = strongly_typed(version, settings.precision, mode)
    flag = trt.BuilderFlag

    # the engine inspector reports per-layer precision and device only at DETAILED
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if settings.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_bytes))

    if not strong:  # a strongly typed network takes its precision from the ONNX
        if settings.precision in ("fp16", "int8"):
            config.set_flag(flag.FP16)
        if settings.precision == "int8":
            config.set_flag(flag.INT8)
            if mode == CALIBRATOR:
                config.int8_calibrator = settings.calibrator
    elif settings.precision != "fp32":
        notes.append(
            f"TensorRT {version.line}: the network is strongly typed; "
            f"{settings.precision} comes from the ONNX's types."
        )

    profile = None
    if settings.profiles:
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in settings.profiles.items():
            profile.set_shape(name, _dims(lo), _dims(opt), _dims(hi))
        config.add_optimization_profile(profile)
        if mode == CALIBRATOR and not config.set_calibration_profile(profile):
            raise AgentError(
                "TensorRT refused the calibration profile.",
                "Give every dynamic input a min/opt/max shape (--input-shape).",
            )

    if settings.optimization_level is not None:
        if version.at_least(8, 6):
            config.builder_optimization_level = int(settings.optimization_level)
        else:
            notes.append(f"TensorRT {version.line} has no builder optimization level (8.6+).")

    if settings.timing_cache is not None:
        cache = config.create_timing_cache(bytes(settings.timing_cache))
        if not config.set_timing_cache(cache, False):  # a cache of another build
            notes.append(
                "The stored timing cache does not match this TensorRT; a fresh one is used."
            )
            config.set_timing_cache(config.create_timing_cache(b""), False)

    if settings.dla_core is not None:
        _use_dla(trt, version, builder, config, settings)

    if settings.fp32_layers:
        _pin_fp32(trt, version, network, config, settings.fp32_layers, strong)
    return notes


def _dims(shape: Sequence[int]) -> Tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _use_dla(
    trt: Any, version: TrtVersion, builder: Any, config: Any, settings: BuildSettings
) -> None:
    core = int(settings.dla_core or 0)
    cores = int(builder.num_DLA_cores)
    if cores == 0:
        raise AgentError(
            "This device has no DLA cores.", "Drop --dla-core (Thor and Nano have no DLA)."
        )
    if not 0 <= core < cores:
        raise AgentError(
            f"DLA core {core} does not exist (this device has {cores}).",
            f"Use --dla-core 0..{cores - 1}.",
        )
    if settings.precision == "fp32":
        raise AgentError(
            "The DLA runs FP16 and INT8 only.", "Add --precision fp16 or int8 with --dla-core."
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _pin_fp32(
    trt: Any,
    version: TrtVersion,
    network: Any,
    config: Any,
    names: Sequence[str],
    strong: bool,
) -> None:
    if strong:
        raise AgentError(
            f"TensorRT {version.line} builds this network strongly typed, "
            "which has no per-layer precision.",
            "Keep those layers in FP32 in the ONNX the host makes (its FP16/Q-DQ export).",
        )
    wanted = set(names)
    found = set()
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.name not in wanted:
            continue
        found.add(layer.name)
        layer.precision = trt.DataType.FLOAT
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.DataType.FLOAT)
    missing = sorted(wanted - found)
    if missing:
        raise AgentError(
            f"--fp32-layers names layer(s) the network lacks: {', '.join(missing)}.",
            "Use the TensorRT layer names that the build summary lists.",
        )
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


# -- build and report ------------------------------------------------------------------------


def build_serialized(builder: Any, network: Any, config: Any) -> bytes:
    """The serialized engine (AgentError when TensorRT builds none)."""
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise AgentError(
            "TensorRT built no engine (its log above says why).",
            "Lower the workspace or the optimization level, or check the parser's warnings.",
        )
    return bytes(memoryview(plan))


def serialized_timing_cache(config: Any) -> Optional[bytes]:
    """The config's timing cache after a build, serialized (None when it has none)."""
    cache = config.get_timing_cache()
    if cache is None:
        return None
    return bytes(memoryview(cache.serialize()))


def builder_flags(trt: Any, config: Any) -> List[str]:
    """The BuilderFlag members set on `config`, by this line's names."""
    return [name for name, f in _members(trt.BuilderFlag) if config.get_flag(f)]


def memory_pools(trt: Any, config: Any) -> Dict[str, int]:
    """Each MemoryPoolType member's limit on `config`, by this line's names."""
    return {name: int(config.get_memory_pool_limit(p)) for name, p in _members(trt.MemoryPoolType)}


def _members(enum: Any) -> List[Tuple[str, Any]]:
    return sorted(enum.__members__.items())


def add_profile(builder: Any, config: Any, ranges: Dict[str, ShapeRange]) -> None:
    """One more optimization profile (the first one is `configure`'s)."""
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in ranges.items():
        profile.set_shape(name, _dims(lo), _dims(opt), _dims(hi))
    config.add_optimization_profile(profile)
