"""The one protocol module shared by the host (`edge`) and the device agent.

Everything that crosses the wire is a dataclass here with a JSON round trip (the codec,
which checks every field a peer sends, is `wire.py`). The agent
runs on Python 3.8 (JetPack 5), so this module uses `typing.List`/`Optional` and nothing
newer than the 3.8 standard library.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional, Tuple, Type

from .protocol_core import CANCELED as CANCELED
from .protocol_core import FAILED as FAILED
from .protocol_core import PROTOCOL_VERSION as PROTOCOL_VERSION
from .protocol_core import PUSH_COMMIT_INDEX as PUSH_COMMIT_INDEX
from .protocol_core import PUSH_FRAME as PUSH_FRAME
from .protocol_core import QUEUED as QUEUED
from .protocol_core import RUNNING as RUNNING
from .protocol_core import SERVED as SERVED
from .protocol_core import STATUSES as STATUSES
from .protocol_core import SUCCEEDED as SUCCEEDED
from .protocol_core import TERMINAL as TERMINAL
from .protocol_core import BlobNeed as BlobNeed
from .protocol_core import DeviceFacts as DeviceFacts
from .protocol_core import DeviceResult as DeviceResult
from .protocol_core import JetsonInfo as JetsonInfo
from .protocol_core import Manifest as Manifest
from .protocol_core import ManifestEntry as ManifestEntry
from .protocol_core import PushCommit as PushCommit
from .protocol_core import PushPlan as PushPlan
from .protocol_core import PushReceived as PushReceived
from .protocol_core import non_negative
from .trt_types import (
    INT8_MODES,
    Capabilities,
    ParserRejection,
    TrtBuild,
    TrtPlan,
)
from .wire import RANGE_CHECKS, JsonMixin, ProtocolError, from_dict
from .wire import dumps as dumps  # re-exported: the protocol's users encode with it
from .wire import to_dict as to_dict

RESULT_SCHEMA_VERSION = 1

JOB_KINDS = ("convert", "bench", "validate")
PRECISIONS = ("FP32", "FP16", "INT8")
BACKENDS = ("auto", "tftrt", "tensorrt", "native")
PROFILE_STRATEGIES = ("Range", "Optimal", "Range+Optimal", "ImplicitBatchModeCompatible")

# --------------------------------------------------------------------------- job specs


#: Field metadata of the knobs only an INT8 conversion reads (converter_kwargs sets
#: use_calibration for INT8 only): they count toward the cache key for INT8 alone.
INT8_ONLY = {"int8_only": True}


@dataclass
class ConverterKnobs(JsonMixin):
    """What the converter is given: every TF-TRT knob of the guide, plus the backend.
    Each one can change the converted model, so the cache key is made of exactly these
    (the INT8_ONLY ones for INT8 conversions only). None = converter default."""

    backend: str = "auto"
    precision: str = "FP32"
    signature_key: str = "serving_default"
    tags: List[str] = field(default_factory=lambda: ["serve"])
    max_workspace_size_bytes: Optional[int] = None
    minimum_segment_size: int = 3
    maximum_cached_engines: int = 1
    use_calibration: bool = field(default=True, metadata=INT8_ONLY)
    allow_build_at_runtime: bool = True
    use_dynamic_shape: bool = False
    dynamic_shape_profile_strategy: Optional[str] = None
    # Shapes fed to build(): one dict {input name: dims} per profile.
    build_shapes: List[Dict[str, List[int]]] = field(default_factory=list)
    build: bool = True
    # TF_TRT_* environment (without the prefix handled by the backend).
    max_engines: Optional[int] = None
    op_denylist: List[str] = field(default_factory=list)
    experimental_features: List[str] = field(default_factory=list)
    allow_engine_native_segment_execution: Optional[bool] = None
    calibration_batches: int = field(default=8, metadata=INT8_ONLY)
    calibration_batch_size: int = field(default=1, metadata=INT8_ONLY)
    # Engine-count control: sweep minimum_segment_size (guide 6.1) for <= max_engines.
    minimum_segment_size_auto: bool = False
    # The tensorrt backend (ONNX -> TensorRT): the INT8 mode (None: the device's default),
    # a DLA core, layers pinned to FP32, the builder optimization level (8.6+), the ONNX
    # opset (None: the highest the device's TensorRT takes) and inputs exported as NCHW.
    int8_mode: Optional[str] = field(default=None, metadata=INT8_ONLY)
    dla_core: Optional[int] = None
    fp32_layers: List[str] = field(default_factory=list)
    optimization_level: Optional[int] = None
    onnx_opset: Optional[int] = None
    nchw_inputs: List[str] = field(default_factory=list)

    def knobs(self) -> ConverterKnobs:
        """Only the knobs (of a ConvertOptions: without how the job runs around them)."""
        return ConverterKnobs(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(ConverterKnobs)}
        )


@dataclass
class ConvertOptions(ConverterKnobs):
    """A convert job's options: the converter's knobs, and how the job runs around them,
    which leaves the converted model as it is: reports, TensorFlow's allocator limit (not
    stored in the graph, unlike max_workspace_size_bytes, which TRTEngineOp keeps), the
    validation after converting, and the cache switch."""

    show_detailed_report: bool = True
    export_graph_viz: bool = False
    # TensorFlow's GPU memory: None = let the planner choose (growth or a limit).
    tf_gpu_memory_limit_mb: Optional[int] = None
    # Compare the converted model with the input model on the device after converting.
    run_validation: bool = False
    atol: Optional[float] = None
    rtol: Optional[float] = None
    use_cache: bool = True

    def validate(self) -> None:
        """Raise ProtocolError for an option outside its closed set or range."""
        if self.backend not in BACKENDS:
            raise ProtocolError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ProtocolError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        strategy = self.dynamic_shape_profile_strategy
        if strategy is not None and strategy not in PROFILE_STRATEGIES:
            raise ProtocolError(
                f"profile strategy must be one of {PROFILE_STRATEGIES}, not {strategy!r}"
            )
        if self.minimum_segment_size < 1 and self.minimum_segment_size != -1:
            raise ProtocolError("minimum_segment_size must be >= 1 (or -1 to disable conversion)")
        if self.maximum_cached_engines < 1:
            raise ProtocolError("maximum_cached_engines must be >= 1")
        if self.max_workspace_size_bytes is not None and self.max_workspace_size_bytes <= 0:
            raise ProtocolError("max_workspace_size_bytes must be positive")
        if self.int8_mode is not None and self.int8_mode not in INT8_MODES:
            raise ProtocolError(f"int8_mode must be one of {INT8_MODES}, not {self.int8_mode!r}")
        if self.dla_core is not None and self.dla_core < 0:
            raise ProtocolError("dla_core must be >= 0")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise ProtocolError("optimization_level must be 0..5")
        if self.onnx_opset is not None and not 7 <= self.onnx_opset <= 21:
            raise ProtocolError("onnx_opset must be 7..21")


@dataclass
class BenchOptions(JsonMixin):
    backend: str = "auto"
    signature_key: str = "serving_default"
    batch_sizes: List[int] = field(default_factory=lambda: [1])
    warmup_iterations: int = 10
    warmup_seconds: float = 0.2
    iterations: Optional[int] = None
    duration_seconds: float = 3.0
    min_iterations: int = 10
    # Sizes for dynamic non-batch dims, e.g. {"input_ids": [1, 128]}; batch dim replaced.
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)
    seed: int = 0
    scenario: Optional[str] = None  # "single-stream" | "offline"; None = batch_sizes as given
    compare_native: bool = False
    telemetry: bool = True
    telemetry_interval_ms: int = 100
    use_calibration_samples: bool = False
    # Engines (the tensorrt backend): leave the H2D/D2H copies out of the timed span;
    # replay each inference as a captured CUDA graph.
    transfers: bool = True
    cuda_graph: bool = False

    def validate(self) -> None:
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise ProtocolError("batch sizes must be positive integers")
        if self.iterations is not None and self.iterations < 1:
            raise ProtocolError("iterations must be >= 1")
        if self.scenario not in (None, "single-stream", "offline"):
            raise ProtocolError(f"scenario must be single-stream or offline, not {self.scenario!r}")
        if self.duration_seconds <= 0 and self.iterations is None:
            raise ProtocolError("duration must be positive when no iteration count is given")


@dataclass
class ValidateOptions(JsonMixin):
    """Compare two models on the same inputs. None tolerances = defaults per precision."""

    precision: str = "FP32"
    atol: Optional[float] = None
    rtol: Optional[float] = None
    samples: int = 8
    batch_size: int = 1
    signature_key: str = "serving_default"
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)
    seed: int = 0


@dataclass
class JobSpec(JsonMixin):
    """What the host asks a device to do: the fields every kind of job has (one subclass
    per kind, `kind` naming it on the wire; `spec_from_json` decodes any of them). `model`
    is a path on the device."""

    model: str
    protocol: int = PROTOCOL_VERSION
    labels: Dict[str, str] = field(default_factory=dict)
    gpu: bool = True  # takes the device's gpu.lock
    calib: Optional[str] = None  # calibration data (a .npz or a directory of .npy)
    kind: str = ""

    #: Path fields: relative ones mean the submitter's cwd (the agent makes them absolute).
    PATHS: ClassVar[Tuple[str, ...]] = ("model", "calib")

    def validate(self) -> None:
        if self.protocol != PROTOCOL_VERSION:
            raise ProtocolError(
                f"job speaks protocol {self.protocol} but this agent speaks {PROTOCOL_VERSION}"
            )
        if JOB_SPECS.get(self.kind) is not type(self):
            raise ProtocolError(f"job kind must be one of {JOB_KINDS}, not {self.kind!r}")


@dataclass
class ConvertSpec(JobSpec):
    """A convert job: the model converted with `convert`, filed in the cache, optionally
    copied to `output`; or, with `prebuilt`, another device's build of it installed."""

    kind: str = "convert"
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    output: Optional[str] = None
    # Build-once sharing: a converted model another device built, already pushed here.
    prebuilt: Optional[str] = None
    prebuilt_from: Optional[str] = None
    prebuilt_summary: Optional[ConversionSummary] = None
    # The tensorrt backend: the ONNX the host exported for this device's plan, pushed.
    onnx: Optional[str] = None
    # Reference outputs the host computed with TensorFlow (reference.npz), to validate an
    # engine on a board without TensorFlow.
    reference: Optional[str] = None
    # Plan as this board and JetPack would (`--board/--jetpack`); a plan only, never a job.
    simulate_board: Optional[str] = None
    simulate_jetpack: Optional[str] = None

    PATHS: ClassVar[Tuple[str, ...]] = JobSpec.PATHS + ("output", "prebuilt", "onnx", "reference")

    def validate(self) -> None:
        super().validate()
        self.convert.validate()


@dataclass
class BenchSpec(JobSpec):
    """A bench job: `model` timed per batch size (and `native`, the input model, in the
    same job for speedups)."""

    kind: str = "bench"
    bench: BenchOptions = field(default_factory=BenchOptions)
    native: Optional[str] = None

    PATHS: ClassVar[Tuple[str, ...]] = JobSpec.PATHS + ("native",)

    def validate(self) -> None:
        super().validate()
        self.bench.validate()


@dataclass
class ValidateSpec(JobSpec):
    """A validate job: `converted` and `model` run on the same inputs, outputs compared."""

    kind: str = "validate"
    converted: str = ""
    validation: ValidateOptions = field(default_factory=ValidateOptions)
    reference: Optional[str] = None  # the host's TensorFlow outputs (reference.npz)

    PATHS: ClassVar[Tuple[str, ...]] = JobSpec.PATHS + ("converted", "reference")

    def validate(self) -> None:
        super().validate()
        if not self.converted:
            raise ProtocolError("a validate job needs `converted`, the model to compare")


JOB_SPECS: Dict[str, Type[JobSpec]] = {
    "convert": ConvertSpec,
    "bench": BenchSpec,
    "validate": ValidateSpec,
}


def spec_from_json(text: str) -> JobSpec:
    """Decode and check a job spec of any kind (ProtocolError names what is wrong)."""
    data = json.loads(text)
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = JOB_SPECS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"job kind must be one of {JOB_KINDS}, not {kind!r}")
    spec = from_dict(cls, data)
    spec.validate()
    return spec


# --------------------------------------------------------------------------- events


@dataclass
class Event(JsonMixin):
    """One line of a job's events.jsonl."""

    seq: int
    ts: float
    kind: str  # "status" | "log" | "progress" | "result"
    message: str = ""
    status: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION


@dataclass
class JobState(JsonMixin):
    """status.json of a job."""

    job_id: str
    kind: str
    status: str
    created_at: float
    updated_at: float
    pid: Optional[int] = None
    error: Optional[str] = None
    log_tail: Optional[str] = None
    queue_position: Optional[int] = None


# --------------------------------------------------------------------------- results


@dataclass
class Engine(JsonMixin):
    name: str
    nodes: int
    ops: Dict[str, int] = field(default_factory=dict)
    input_dtypes: List[str] = field(default_factory=list)
    output_dtypes: List[str] = field(default_factory=list)
    input_shapes: List[str] = field(default_factory=list)
    output_shapes: List[str] = field(default_factory=list)
    device: str = ""


@dataclass
class TensorInfo(JsonMixin):
    name: str
    dtype: str
    shape: List[Optional[int]]


@dataclass
class NonConverted(JsonMixin):
    op: str
    count: int
    reason: str


@dataclass
class ConversionSummary(JsonMixin):
    engines: List[Engine] = field(default_factory=list)
    ops_total: int = 0
    ops_converted: int = 0
    percent_converted: float = 0.0
    op_histogram: Dict[str, int] = field(default_factory=dict)
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)
    non_converted: List[NonConverted] = field(default_factory=list)
    # Engines built from ONNX (the tensorrt backend), from the engine inspector.
    layers_total: Optional[int] = None
    layers_at_precision: Optional[int] = None
    layers_on_dla: Optional[int] = None
    parser_rejected: List[ParserRejection] = field(default_factory=list)


@dataclass
class OutputCheck(JsonMixin):
    max_abs_err: float
    max_rel_err: float
    passed: bool
    mismatched: int = 0  # elements beyond both tolerances
    elements: int = 0
    top1_agreement: Optional[float] = None  # classifier outputs only


@dataclass
class ValidationReport(JsonMixin):
    passed: bool
    precision: str = "FP32"
    atol: float = 0.0
    rtol: float = 0.0
    samples: int = 0
    inputs_from: str = "generated"  # "generated" | "calibration"
    outputs: Dict[str, OutputCheck] = field(default_factory=dict)


@dataclass
class Attempt(JsonMixin):
    """One converter run: its workspace and how it ended ("ok", "oom", "error")."""

    workspace_bytes: Optional[int]
    outcome: str
    error: Optional[str] = None
    seconds: float = 0.0


@dataclass
class SweepPoint(JsonMixin):
    minimum_segment_size: int
    engines: int
    percent_converted: float
    ops_converted: int = 0


@dataclass
class CalibPlan(JsonMixin):
    batches: int
    batch_size: int
    samples_available: int = 0


@dataclass
class ConversionPlan(JsonMixin):
    """Everything resolved before the converter runs (what --dry-run prints)."""

    backend: str
    converter_kwargs: Dict[str, Any] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)
    workspace_bytes: Optional[int] = None
    workspace_arithmetic: List[str] = field(default_factory=list)
    tf_gpu_memory_limit_mb: Optional[int] = None
    calibration: Optional[CalibPlan] = None
    build_shapes: List[Dict[str, List[int]]] = field(default_factory=list)
    cache_key: Optional[str] = None
    fingerprint: Dict[str, Optional[str]] = field(default_factory=dict)
    fallback_reason: Optional[str] = None
    tensorrt: Optional[TrtPlan] = None  # the tensorrt backend's engine build
    capabilities: Optional[Capabilities] = None  # what the device's probe found
    # the device's verdict: why this plan cannot work (empty: it can); a dry run exits 1
    blockers: List[str] = field(default_factory=list)


@dataclass
class CalibCheck(JsonMixin):
    """The device's check of the calibration data against the model's signature."""

    samples: Optional[int] = None  # set when the data fits the signature
    error: Optional[str] = None  # set when it does not (then `hint` names the fix)
    hint: Optional[str] = None


@dataclass
class DevicePlan(JsonMixin):
    """The device's own decisions for a convert job (agent command `plan`): nothing runs.

    `options` are the job's options with the backend resolved; `cache_key` is what the job
    files its conversion under (identical boards answer the same key), and `shareable`
    says whether a build made under that key on another device may be installed here."""

    backend: str
    backend_reason: str
    options: ConvertOptions
    plan: ConversionPlan
    cache_key: str
    cache_hit: bool = False
    shareable: bool = False
    calibration: Optional[CalibCheck] = None  # None: the job has no calibration data


@dataclass
class ConvertResult(DeviceResult):
    backend: Optional[str] = None
    fallback_reason: Optional[str] = None
    precision: Optional[str] = None
    output_model: Optional[str] = None
    summary: Optional[ConversionSummary] = None
    options: Optional[ConvertOptions] = None
    job_id: Optional[str] = None
    seconds: Optional[float] = None
    engines_built: bool = False
    validation: Optional[ValidationReport] = None
    cache: str = "built"  # "built" | "hit" | "shared"
    shared_from: Optional[str] = None
    attempts: List[Attempt] = field(default_factory=list)
    segment_sweep: List[SweepPoint] = field(default_factory=list)
    plan: Optional[ConversionPlan] = None
    artifact: Optional[str] = None  # "engine" | "savedmodel"
    tensorrt: Optional[TrtBuild] = None  # the tensorrt backend's build
    schema: int = RESULT_SCHEMA_VERSION


@dataclass
class LatencyStats(JsonMixin):
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    min: float
    max: float
    std: float = 0.0
    cv: float = 0.0


@dataclass
class PowerStats(JsonMixin):
    avg_mw: float
    peak_mw: float
    energy_per_inference_mj: float


@dataclass
class TelemetrySample(JsonMixin):
    """One parsed tegrastats line (or /proc sample where tegrastats is absent)."""

    ts: float = 0.0
    ram_used_mb: Optional[int] = None
    ram_total_mb: Optional[int] = None
    swap_used_mb: Optional[int] = None
    swap_total_mb: Optional[int] = None
    cpu_load_pct: Optional[List[Optional[float]]] = None
    gpu_load_pct: Optional[float] = None
    gpu_freq_mhz: Optional[List[int]] = None
    temperatures_c: Dict[str, float] = field(default_factory=dict)
    rails_mw: Dict[str, float] = field(default_factory=dict)
    power_in_mw: Optional[float] = None


@dataclass
class BenchRun(JsonMixin):
    batch_size: int
    iterations: int
    latency_ms: LatencyStats
    throughput_per_s: float
    wall_seconds: float = 0.0
    noisy: bool = False
    power: Optional[PowerStats] = None
    gpu_load_avg_pct: Optional[float] = None
    temp_peak_c: Optional[float] = None
    throttled: Optional[bool] = None
    telemetry_source: Optional[str] = None  # "tegrastats" | "proc" | None
    telemetry: List[TelemetrySample] = field(default_factory=list)
    speedup_vs_native: Optional[float] = None
    native_latency_ms: Optional[LatencyStats] = None


@dataclass
class BenchResult(DeviceResult):
    backend: Optional[str] = None
    fallback_reason: Optional[str] = None
    model: Optional[str] = None
    runs: List[BenchRun] = field(default_factory=list)
    job_id: Optional[str] = None
    options: Optional[BenchOptions] = None
    scenario: Optional[str] = None  # "single-stream" | "offline" | "custom"
    headline: Optional[str] = None
    transfers: bool = True  # the timed span held the host/device copies
    cuda_graph: bool = False
    schema: int = RESULT_SCHEMA_VERSION


@dataclass
class ValidateResult(DeviceResult):
    model: Optional[str] = None
    converted: Optional[str] = None
    validation: Optional[ValidationReport] = None
    job_id: Optional[str] = None
    schema: int = RESULT_SCHEMA_VERSION


# --------------------------------------------------------------------------- gc

#: What `gc` sorts the device root into (GcItem.category), in the order it reports them.
GC_CATEGORIES = (
    "jobs",
    "cache",
    "models",
    "exports",
    "calib",
    "trt-calib",
    "trt-timing",
    "blobs",
    "uploads",
    "trash",
)


@dataclass
class GcItem(JsonMixin):
    """One thing `gc` removed (or, in a dry run, would remove). `name` is its path under
    the device root; `bytes` what removing it frees (a file hard-linked from several items
    counts once, for the first of them; one still linked from elsewhere frees nothing)."""

    category: str
    name: str
    bytes: int = 0
    reason: str = ""


@dataclass
class GcCategory(JsonMixin):
    """Counts and bytes of one category: removed (freed) and kept."""

    category: str
    removed: int = 0
    bytes_freed: int = 0
    kept: int = 0
    bytes_kept: int = 0


@dataclass
class GcResult(DeviceResult):
    """The agent's `gc`: what it removed from the device root (`dry_run`: would remove)."""

    dry_run: bool = False
    keep: int = 0
    grace_seconds: float = 0.0
    bytes_freed: int = 0
    disk_free_bytes: int = 0
    categories: List[GcCategory] = field(default_factory=list)
    removed: List[GcItem] = field(default_factory=list)
    kept_jobs: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


RESULT_TYPES = {"convert": ConvertResult, "bench": BenchResult, "validate": ValidateResult}


def result_from_dict(kind: str, data: Dict[str, Any]) -> Any:
    """Decode a result.json of a job of `kind`."""
    try:
        cls = RESULT_TYPES[kind]
    except KeyError:
        raise ProtocolError(f"unknown job kind {kind!r}") from None
    return from_dict(cls, data)


# --------------------------------------------------------------------------- range checks


# Sizes, offsets and counts a broken or hostile peer could send negative (the quick
# commands' types register theirs in protocol_core).
RANGE_CHECKS.update(
    {
        GcItem: non_negative("bytes"),
        GcCategory: non_negative("removed", "bytes_freed", "kept", "bytes_kept"),
        GcResult: non_negative("keep", "grace_seconds", "bytes_freed", "disk_free_bytes"),
        Event: non_negative("seq"),
        JobState: non_negative("pid", "queue_position"),
    }
)
