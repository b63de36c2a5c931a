"""The `tftrt` backend: TF-TRT's `TrtGraphConverterV2`, kept thin.

Everything the converter is given is computed by pure functions here
(`converter_kwargs`, `trt_environment`, `build_inputs`) so that a dry run and the tests can
check it against the real converter signature without a GPU.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from ..errors import BackendUnavailable
from ..protocol import ConversionSummary, ConvertOptions

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


def tensorrt_status() -> Tuple[bool, str]:
    """(enabled, explanation) for the TensorFlow on this device; imports TensorFlow."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        return False, f"TensorFlow is not installed ({exc})"
    try:
        from tensorflow.compiler.tf2tensorrt import _pywrap_py_utils as trt_utils
    except ImportError:
        return False, f"TensorFlow {tf.__version__} has no TF-TRT module"
    linked = ".".join(str(v) for v in trt_utils.get_linked_tensorrt_version())
    if not trt_utils.is_tensorrt_enabled():
        return (
            False,
            f"TensorFlow {tf.__version__} is not built with TensorRT (linked TensorRT {linked})",
        )
    loaded = ".".join(str(v) for v in trt_utils.get_loaded_tensorrt_version())
    return True, f"TensorFlow {tf.__version__} with TensorRT {linked} (loaded {loaded})"


def require_tensorrt() -> None:
    """Raise BackendUnavailable, naming the fix, unless TF-TRT can run here."""
    enabled, why = tensorrt_status()
    if not enabled:
        raise BackendUnavailable(f"The tftrt backend cannot run: {why}.", NO_TRT_HINT)


InputFn = Callable[[], Iterator[Tuple[Any, ...]]]


def configure_tf_memory(limit_mb: Optional[int]) -> None:
    """Unified memory: cap TensorFlow's GPU allocator (or let it grow) before anything
    allocates, so TensorRT's builder keeps the room the planner gave it."""
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        if limit_mb:
            tf.config.set_logical_device_configuration(
                gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit_mb))])
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
