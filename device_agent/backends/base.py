"""The backend interface: what the convert, bench and validate jobs ask of a backend.

A backend is one way of turning a SavedModel into something that runs on the device
(`tftrt`: TF-TRT engines inside a SavedModel; `native`: the SavedModel re-saved). The jobs
call it only through `Backend`; the shared machinery (the segment sweep in `sweep.py`, the
OOM retry ladder in `ladder.py`) drives `segment_counter` and `build`. Python 3.8, stdlib
only at import time: frameworks are imported inside the methods that need them.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import BackendUnavailable
from ..protocol import ConversionSummary, ConvertOptions, SweepPoint, TensorInfo
from ..trt_types import TrtBuild, TrtPlan

if TYPE_CHECKING:  # numpy is only needed by runners, at run time
    import numpy as np

#: A generator of input batches, each a tuple in signature (sorted-name) order.
InputFn = Callable[[], Iterator[Tuple[Any, ...]]]
Log = Callable[[str], None]


@dataclass
class Capability:
    """Whether a backend can run on this device, why (not), and the versions found."""

    backend: str
    available: bool
    reason: str
    versions: Dict[str, Optional[str]] = field(default_factory=dict)


@dataclass
class PlanContribution:
    """What a backend adds to the conversion plan (what `--dry-run` shows)."""

    converter_kwargs: Dict[str, Any] = field(default_factory=dict)
    env: Dict[str, str] = field(default_factory=dict)
    workspace_bytes: Optional[int] = None
    tensorrt: Optional[TrtPlan] = None  # the tensorrt backend's engine build


@dataclass
class BuildRequest:
    """Everything a build needs, resolved by the job before the backend starts.

    `options.minimum_segment_size` is the swept one once the sweep ran. `calibration` is set
    only when the backend calibrates (`Backend.calibrates`): real batches from `--calib`, or
    generated ones. `workspace_bytes` is the memory plan's first workspace; the ladder passes
    each attempt's own to `build`."""

    options: ConvertOptions
    model_dir: str
    work_dir: str
    inputs: List[TensorInfo]
    build_inputs: Optional[InputFn]
    calibration: Optional[InputFn]
    workspace_bytes: Optional[int]
    tf_gpu_memory_limit_mb: Optional[int]
    log: Log
    # The tensorrt backend: the pushed ONNX, its planned build, the device fingerprint its
    # timing cache is filed under, and the agent root that holds that cache.
    onnx: Optional[str] = None
    trt_plan: Optional[TrtPlan] = None
    fingerprint: Dict[str, Optional[str]] = field(default_factory=dict)
    root: Optional[str] = None
    calib_key: Optional[str] = None  # the build's cache key: its calibration cache's name


@dataclass
class BuildOutcome:
    """A build's summary and whether engines were built (ahead of time)."""

    summary: ConversionSummary
    engines_built: bool = False
    artifact: str = "savedmodel"  # "engine": a TensorRT plan (the tensorrt backend)
    tensorrt: Optional[TrtBuild] = None


@dataclass
class SegmentCounter:
    """How a backend counts engines at a minimum segment size (for the sweep). `note`,
    when set, is logged with the chosen size (e.g. that the counts are estimates)."""

    count: Callable[[int], SweepPoint]
    note: Optional[str] = None


class ModelRunner(abc.ABC):
    """A loaded artifact: named numpy inputs in, named numpy outputs out."""

    inputs: List[TensorInfo]
    outputs: List[TensorInfo]

    @abc.abstractmethod
    def run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run one batch; returns every output as a numpy array."""

    def timed_call(self, feed: Dict[str, np.ndarray]) -> Callable[[], Any]:
        """A call for the benchmark loop: inputs staged once, the call blocks until the
        results are complete."""
        return lambda: self.run(feed)

    def configure(self, transfers: bool = True, cuda_graph: bool = False) -> List[str]:
        """How the benchmark times it: with the host/device copies or not, as a captured
        CUDA graph or not. Returns what this runner cannot do of that (a SavedModel has no
        copies to leave out and no graph to capture)."""
        unused = []
        if not transfers:
            unused.append("--no-transfers")
        if cuda_graph:
            unused.append("--cuda-graph")
        return unused

    def close(self) -> None:
        """Release the model (Jetson memory is shared by CPU and GPU)."""


class Backend(abc.ABC):
    """One conversion backend. Subclasses set `name` and implement `probe` and `build`."""

    #: The name in ConvertOptions.backend / BenchOptions.backend.
    name: str = ""
    #: Builds TensorRT engines: the memory plan sizes (and may refuse) a builder workspace,
    #: the OOM ladder halves it, and the result's precision is the requested one.
    builds_engines: bool = False
    #: Its engines are built with the `tensorrt` module, not TF-TRT's TensorRT.
    own_tensorrt: bool = False
    #: The fix named when `probe` says the backend cannot run here.
    unavailable_hint: Optional[str] = None

    @abc.abstractmethod
    def probe(self) -> Capability:
        """Can this device run the backend, and why not (with the versions found)."""

    def require(self) -> Capability:
        """The capability, or BackendUnavailable naming the reason and the fix."""
        capability = self.probe()
        if not capability.available:
            raise BackendUnavailable(
                f"The {self.name} backend cannot run: {capability.reason}.",
                self.unavailable_hint,
            )
        return capability

    def precision(self, options: ConvertOptions) -> str:
        """The precision the artifact computes in."""
        return options.precision

    def calibrates(self, options: ConvertOptions) -> bool:
        """Whether the build calibrates (and so needs calibration batches)."""
        return self.precision(options) == "INT8" and options.use_calibration

    def plan(
        self,
        options: ConvertOptions,
        workspace_bytes: Optional[int],
        model_dir: str,
        calib_samples: Optional[int] = None,
    ) -> PlanContribution:
        """What the backend adds to the conversion plan; nothing by default."""
        return PlanContribution()

    def engine_version(self) -> Optional[str]:
        """The TensorRT version its engines depend on (the cache key holds it): TF-TRT's
        (loaded, else linked; probing imports TensorFlow) unless the backend has its own
        (`own_tensorrt`); None for a backend that builds none."""
        if not self.builds_engines:
            return None
        from ..facts import probe_tensorrt

        _, linked, loaded = probe_tensorrt()
        return loaded or linked

    def prepare(self, request: BuildRequest) -> None:
        """Called once before the sweep and the build (e.g. to cap framework memory)."""

    def segment_counter(self, request: BuildRequest) -> Optional[SegmentCounter]:
        """How to count engines for `--min-segment-size auto`; None: no segments to sweep."""
        return None

    @abc.abstractmethod
    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        """Convert request.model_dir into `output_dir` (which does not exist yet).
        `workspace_bytes` is this attempt's (None for a backend that builds no engines);
        an out-of-memory exception makes the ladder retry with half of it."""

    def load(
        self, artifact_dir: str, signature_key: str, tags: Optional[Sequence[str]] = None
    ) -> ModelRunner:
        """Load an artifact this backend produced (a SavedModel by default)."""
        from .savedmodel import SavedModelRunner

        return SavedModelRunner(artifact_dir, signature_key, tags)

    def artifact_info(self, artifact_dir: str) -> Tuple[str, Optional[TrtBuild]]:
        """What a converted artifact of this backend is ("savedmodel" | "engine"), and its
        engine build's record, read back from the artifact (for cache hits and shares)."""
        return "savedmodel", None

    def claims(self, artifact_dir: str) -> bool:
        """Whether `artifact_dir` is this backend's own artifact format (a SavedModel is
        everyone's: backends that produce one leave this False)."""
        return False

    def render_summary(self, summary: ConversionSummary) -> str:
        """The text summary written next to the job's artifacts."""
        from ..summary import render_text

        return render_text(summary)
