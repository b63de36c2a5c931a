"""The wire types of the `tensorrt` backend (shared part: stdlib only, Python 3.8).

`protocol` holds them in its facts, plans and results; they live here to keep that
module to the job-level types. What they mean:

- `Capabilities`: what `info --deep` (and each plan) found on the device: the full
  TensorRT version, whether TF-TRT really loads, pycuda, DLA cores, trtexec, CUDA, and
  which backends can run here and why.
- `OnnxRequest`: what the device asks of the host's ONNX export (opset, Q/DQ, FP16).
- `TrtPlan`: the engine build the device plans (what `--dry-run` shows).
- `TrtBuild`: what the build did (the `tensorrt` object of `edge convert --json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .wire import JsonMixin

#: INT8 modes: implicit calibration (TensorRT 8.5-10.x) or explicit Q/DQ from the host.
CALIBRATOR = "calibrator"
QDQ = "qdq"
INT8_MODES = (CALIBRATOR, QDQ)

#: What a converted artifact is: TensorRT engines (a plan file) or a SavedModel.
ENGINE = "engine"
SAVEDMODEL = "savedmodel"
#: The files that make a directory a tensorrt artifact (the plan and what it was built for).
ENGINE_FILES = ("engine.plan", "engine.json")


@dataclass
class BackendCheck(JsonMixin):
    """One backend's answer on one device: can it run, and why (not)."""

    backend: str
    available: bool
    reason: str


@dataclass
class Capabilities(JsonMixin):
    """The device's TensorRT stack as the deep probe found it."""

    tensorrt: Optional[str] = None  # the Python module's version: major.minor.patch.build
    tftrt: bool = False  # TF-TRT loads: linked and loaded TensorRT set and equal
    tftrt_reason: str = ""
    pycuda: Optional[str] = None
    dla_cores: Optional[int] = None
    trtexec: Optional[str] = None
    cuda: Optional[str] = None
    backends: List[BackendCheck] = field(default_factory=list)
    simulated: bool = False  # planned as a board given by --board/--jetpack


@dataclass
class OnnxRequest(JsonMixin):
    """The ONNX the device's TensorRT needs from the host's export."""

    opset: int
    quantize: bool = False  # Q/DQ inserted on the host (explicit INT8)
    fp16: bool = False  # an FP16 ONNX (TensorRT 11 has no FP16 flag)
    nchw: List[str] = field(default_factory=list)

    def key(self) -> str:
        """A short text naming this export, for cache keys."""
        return "opset{}{}{}{}".format(
            self.opset,
            "-qdq" if self.quantize else "",
            "-fp16" if self.fp16 else "",
            "-nchw:" + ",".join(sorted(self.nchw)) if self.nchw else "",
        )


@dataclass
class ShapeRange(JsonMixin):
    """One input's optimization profile entry."""

    min: List[int]
    opt: List[int]
    max: List[int]


@dataclass
class TrtPlan(JsonMixin):
    """The engine build a device plans. `profiles`: one {input: range} per profile."""

    version: str
    precision: str  # "fp32" | "fp16" | "int8"
    int8_mode: Optional[str] = None
    strongly_typed: bool = False
    onnx: Optional[OnnxRequest] = None
    workspace_bytes: Optional[int] = None
    profiles: List[Dict[str, ShapeRange]] = field(default_factory=list)
    profile_strategy: Optional[str] = None
    optimization_level: Optional[int] = None
    dla_core: Optional[int] = None
    fp32_layers: List[str] = field(default_factory=list)
    timing_cache: Optional[str] = None  # "hit" when the device holds one for this board
    notes: List[str] = field(default_factory=list)


@dataclass
class TrtBuild(JsonMixin):
    """What an engine build did, with the enum member names of that TensorRT."""

    version: str
    precision: str
    int8_mode: Optional[str] = None
    workspace_bytes: Optional[int] = None
    builder_flags: List[str] = field(default_factory=list)
    memory_pools: Dict[str, int] = field(default_factory=dict)
    profiles: List[Dict[str, ShapeRange]] = field(default_factory=list)
    dla_core: Optional[int] = None
    timing_cache: Optional[str] = None  # "hit" | "new" | None
    engine_bytes: int = 0
    build_seconds: float = 0.0
    calibration_cache: Optional[str] = None  # "hit" | "new" | None


@dataclass
class ParserRejection(JsonMixin):
    """One ONNX node TensorRT's parser rejected."""

    node: Optional[str]
    op: Optional[str]
    reason: str
