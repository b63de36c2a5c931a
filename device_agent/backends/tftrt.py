"""The `tftrt` backend: TF-TRT's `TrtGraphConverterV2`, kept thin.

Everything the converter is given is computed by pure functions here
(`converter_kwargs`, `trt_environment`, `build_inputs`) so that a dry run and the tests can
check it against the real converter signature without a GPU.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Dict, Optional, Tuple

from ..protocol import ConversionSummary, ConvertOptions, SweepPoint
from .base import (
    Backend,
    BuildOutcome,
    BuildRequest,
    Capability,
    InputFn,
    PlanContribution,
    SegmentCounter,
)

# The fix for a TensorFlow without TensorRT, named in every such error.
NO_TRT_HINT = (
    "Install NVIDIA's TensorFlow build for this board's JetPack "
    "(pip3 install --extra-index-url https://developer.download.nvidia.com/compute/redist/jp/vXX "
    "tensorflow==X+nvYY.MM), or run the agent in the Dockerfile.jetson image; "
    "or convert with --backend native."
)


def converter_kwargs(options: ConvertOptions, input_saved_model_dir: str) -> Dict[str, Any]:
    """Keyword arguments for `TrtGraphConverterV2.__init__` (TF 2.8+ flat signature)."""
    kwargs: Dict[str, Any] = {
        "input_saved_model_dir": input_saved_model_dir,
        "input_saved_model_tags": list(options.tags),
        "input_saved_model_signature_key": options.signature_key,
        "precision_mode": options.precision,
        "minimum_segment_size": options.minimum_segment_size,
        "maximum_cached_engines": options.maximum_cached_engines,
        "use_calibration": options.precision == "INT8" and options.use_calibration,
        "allow_build_at_runtime": options.allow_build_at_runtime,
        "use_dynamic_shape": options.use_dynamic_shape,
    }
    if options.max_workspace_size_bytes is not None:
        kwargs["max_workspace_size_bytes"] = int(options.max_workspace_size_bytes)
    if options.use_dynamic_shape:
        kwargs["dynamic_shape_profile_strategy"] = options.dynamic_shape_profile_strategy or "Range"
    return kwargs


def trt_environment(
    options: ConvertOptions, report_path: Optional[str] = None, graphviz_path: Optional[str] = None
) -> Dict[str, str]:
    """The TF_TRT_* environment variables the guide names, for these options."""
    env: Dict[str, str] = {}
    if options.max_engines is not None:
        env["TF_TRT_MAX_ALLOWED_ENGINES"] = str(int(options.max_engines))
    if options.op_denylist:
        env["TF_TRT_OP_DENYLIST"] = ",".join(options.op_denylist)
    if options.show_detailed_report:
        # A non-numeric value is a CSV path: TF-TRT exports the non-conversion report there.
        env["TF_TRT_SHOW_DETAILED_REPORT"] = report_path or "1"
    if options.export_graph_viz and graphviz_path:
        env["TF_TRT_EXPORT_GRAPH_VIZ_PATH"] = graphviz_path
    if options.experimental_features:
        env["TF_TRT_EXPERIMENTAL_FEATURES"] = ",".join(options.experimental_features)
    if options.allow_engine_native_segment_execution is not None:
        value = "true" if options.allow_engine_native_segment_execution else "false"
        env["TF_TRT_ALLOW_ENGINE_NATIVE_SEGMENT_EXECUTION"] = value
    return env


def version_string(value: object) -> Optional[str]:
    """(8, 5, 2) -> "8.5.2"; None for (0, 0, 0) (not linked / not loaded) or junk."""
    try:
        parts = [int(p) for p in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return None
    return ".".join(str(p) for p in parts) if any(parts) else None


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # a binding that fails to answer tells us nothing
        return None


def probe() -> Capability:
    """The one TensorRT probe (the backend's and `info --deep`'s): whether TF-TRT can run
    here, why not, and the versions found. Imports TensorFlow."""
    versions: Dict[str, Optional[str]] = {
        "tensorflow": None,
        "tensorrt_linked": None,
        "tensorrt_loaded": None,
    }
    try:
        import tensorflow as tf
    except ImportError as exc:
        return Capability("tftrt", False, f"TensorFlow is not installed ({exc})", versions)
    except Exception as exc:  # a broken install: report it, do not crash the probe
        return Capability(
            "tftrt", False, f"TensorFlow cannot be imported ({type(exc).__name__}: {exc})", versions
        )
    version = str(getattr(tf, "__version__", "?"))
    versions["tensorflow"] = version
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils as trt_utils
    except Exception:
        return Capability("tftrt", False, f"TensorFlow {version} has no TF-TRT module", versions)
    linked_raw = _call(trt_utils.get_linked_tensorrt_version)
    loaded_raw = _call(trt_utils.get_loaded_tensorrt_version)
    versions["tensorrt_linked"] = version_string(linked_raw)
    versions["tensorrt_loaded"] = version_string(loaded_raw)
    linked = ".".join(str(v) for v in linked_raw or ())
    if not _call(trt_utils.is_tensorrt_enabled):
        reason = f"TensorFlow {version} is not built with TensorRT (linked TensorRT {linked})"
        return Capability("tftrt", False, reason, versions)
    loaded = ".".join(str(v) for v in loaded_raw or ())
    # is_tensorrt_enabled says only that TF was built with TF-TRT: it really loads when the
    # TensorRT it was linked against is the one it loaded (JetPack 6.1's TF 2.16 wheel
    # links 8.6 on a board that has 10.3).
    if versions["tensorrt_linked"] is None or versions["tensorrt_loaded"] is None:
        reason = (
            f"TensorFlow {version} is built with TensorRT {linked} but loads none "
            f"(loaded {loaded or 'nothing'}): TF-TRT does not load"
        )
        return Capability("tftrt", False, reason, versions)
    if versions["tensorrt_linked"] != versions["tensorrt_loaded"]:
        reason = (
            f"TensorFlow {version} is linked against TensorRT {versions['tensorrt_linked']} "
            f"but loads {versions['tensorrt_loaded']}: TF-TRT does not load"
        )
        return Capability("tftrt", False, reason, versions)
    reason = f"TensorFlow {version} with TensorRT {linked} (loaded {loaded})"
    return Capability("tftrt", True, reason, versions)


def simulated_probe(stack: Any) -> Capability:
    """The probe's answer on a simulated JetPack (`simulate.py`)."""
    versions: Dict[str, Optional[str]] = {
        "tensorflow": "2.16.1" if stack.tftrt else None,
        "tensorrt_linked": stack.tensorrt if stack.tftrt else None,
        "tensorrt_loaded": stack.tensorrt if stack.tftrt else None,
    }
    if stack.tftrt:
        return Capability("tftrt", True, stack.tftrt + " (simulated)", versions)
    return Capability("tftrt", False, stack.no_tftrt + " (simulated)", versions)


def tensorrt_status() -> Tuple[bool, str]:
    """(enabled, explanation) for the TensorFlow on this device; imports TensorFlow."""
    capability = probe()
    return capability.available, capability.reason


def require_tensorrt() -> None:
    """Raise BackendUnavailable, naming the fix, unless TF-TRT can run here."""
    TftrtBackend().require()


def configure_tf_memory(limit_mb: Optional[int]) -> None:
    """Unified memory: cap TensorFlow's GPU allocator (or let it grow) before anything
    allocates, so TensorRT's builder keeps the room the planner gave it."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        if limit_mb:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit_mb))]
            )
        else:
            tf.config.experimental.set_memory_growth(gpu, True)


def convert(
    options: ConvertOptions,
    model_dir: str,
    output_dir: Optional[str],
    work_dir: str,
    build_input_fn: Optional[InputFn],
    calibration_input_fn: Optional[InputFn],
    log: Callable[[str], None],
) -> Tuple[ConversionSummary, bool]:
    """Run convert -> build -> save (save and build skipped when output_dir is None, as the
    segment-size sweep does). Returns the summary and whether engines were built."""
    require_tensorrt()
    from tensorflow.python.compiler.tensorrt import trt_convert as trt

    from ..summary import parse_non_conversion_csv, summary_from_concrete_function

    report_csv = os.path.join(work_dir, "tftrt-non-converted.csv")
    env = trt_environment(options, report_csv, os.path.join(work_dir, "graph.dot"))
    os.environ.update(env)
    kwargs = converter_kwargs(options, model_dir)
    log("TrtGraphConverterV2({})".format(", ".join(f"{k}={v!r}" for k, v in kwargs.items())))
    converter = trt.TrtGraphConverterV2(**kwargs)

    start = time.time()
    if kwargs["use_calibration"]:
        log("convert() with INT8 calibration")
        converter.convert(calibration_input_fn=calibration_input_fn)
    else:
        converter.convert()
    log(f"convert() done in {time.time() - start:.1f}s")
    # TF-TRT's own summary() reads the converted function the same way.
    summary = summary_from_concrete_function(converter._converted_func)
    summary.non_converted = parse_non_conversion_csv(report_csv)
    if output_dir is None:
        return summary, False
    built = False
    if options.build and build_input_fn is not None:
        start = time.time()
        converter.build(input_fn=build_input_fn)
        built = summary.engines != []
        log(f"build() done in {time.time() - start:.1f}s")
    converter.save(output_dir)
    return summary, built


class TftrtBackend(Backend):
    """TF-TRT: TensorRT engines as TRTEngineOps inside a SavedModel."""

    name = "tftrt"
    builds_engines = True
    unavailable_hint = NO_TRT_HINT

    def probe(self) -> Capability:
        from ..simulate import active

        sim = active()
        return simulated_probe(sim.stack) if sim is not None else probe()

    def engine_version(self) -> Optional[str]:
        from ..simulate import active

        if active() is not None:
            versions = self.probe().versions
            return versions.get("tensorrt_loaded") or versions.get("tensorrt_linked")
        return super().engine_version()

    def plan(
        self,
        options: ConvertOptions,
        workspace_bytes: Optional[int],
        model_dir: str,
        calib_samples: Optional[int] = None,
    ) -> PlanContribution:
        """The converter's kwargs (with the planned workspace) and its TF_TRT_* env."""
        planned = (
            options
            if workspace_bytes is None
            else dataclasses.replace(options, max_workspace_size_bytes=workspace_bytes)
        )
        return PlanContribution(
            converter_kwargs=converter_kwargs(planned, model_dir),
            env=trt_environment(options),
            workspace_bytes=workspace_bytes,
        )

    def prepare(self, request: BuildRequest) -> None:
        configure_tf_memory(request.tf_gpu_memory_limit_mb)

    def segment_counter(self, request: BuildRequest) -> SegmentCounter:
        """Counts with the real convert() (no build, no save) at each size."""

        def count(size: int) -> SweepPoint:
            trial = dataclasses.replace(request.options, minimum_segment_size=size)
            s, _ = convert(
                trial,
                request.model_dir,
                None,
                request.work_dir,
                None,
                request.calibration,
                request.log,
            )
            return SweepPoint(size, len(s.engines), s.percent_converted, s.ops_converted)

        return SegmentCounter(count)

    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        trial = dataclasses.replace(request.options, max_workspace_size_bytes=workspace_bytes)
        summary, built = convert(
            trial,
            request.model_dir,
            output_dir,
            request.work_dir,
            request.build_inputs,
            request.calibration,
            request.log,
        )
        return BuildOutcome(summary, built)
