"""Backends: the real TF-TRT converter signature and error path, real native conversion."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from device_agent.backends import select_backend, tftrt
from device_agent.errors import BackendUnavailable
from device_agent.protocol import PRECISIONS, PROFILE_STRATEGIES, ConvertOptions


def real_converter():
    from tensorflow.python.compiler.tensorrt.trt_convert import TrtGraphConverterV2

    return TrtGraphConverterV2


def option_grid() -> list[ConvertOptions]:
    grid = [ConvertOptions(precision=p) for p in PRECISIONS]
    grid += [
        ConvertOptions(use_dynamic_shape=True, dynamic_shape_profile_strategy=s)
        for s in PROFILE_STRATEGIES
    ]
    grid.append(
        ConvertOptions(
            max_workspace_size_bytes=256 << 20,
            minimum_segment_size=5,
            maximum_cached_engines=4,
            allow_build_at_runtime=False,
            tags=["serve", "gpu"],
            signature_key="predict",
        )
    )
    return grid


@pytest.mark.parametrize(
    "options",
    option_grid(),
    ids=lambda o: (
        o.precision + ("-" + str(o.dynamic_shape_profile_strategy) if o.use_dynamic_shape else "")
    ),
)
def test_converter_kwargs_bind_to_the_real_signature(options: ConvertOptions) -> None:
    kwargs = tftrt.converter_kwargs(options, "/models/m")
    bound = inspect.signature(real_converter().__init__).bind(None, **kwargs)
    assert bound.arguments["precision_mode"] == options.precision
    assert bound.arguments["use_calibration"] is (options.precision == "INT8")
    if options.use_dynamic_shape:
        assert (
            bound.arguments["dynamic_shape_profile_strategy"]
            == options.dynamic_shape_profile_strategy
        )
    # every knob the converter does not get as an argument is left to its real default
    params = inspect.signature(real_converter().__init__).parameters
    assert set(kwargs) <= set(params)


def test_trt_environment_names_the_guide_variables() -> None:
    options = ConvertOptions(
        max_engines=4,
        op_denylist=["Shape", "Reshape"],
        experimental_features=["disable_graph_freezing"],
        allow_engine_native_segment_execution=False,
        export_graph_viz=True,
    )
    env = tftrt.trt_environment(options, "/w/report.csv", "/w/g.dot")
    assert env == {
        "TF_TRT_MAX_ALLOWED_ENGINES": "4",
        "TF_TRT_OP_DENYLIST": "Shape,Reshape",
        "TF_TRT_SHOW_DETAILED_REPORT": "/w/report.csv",
        "TF_TRT_EXPORT_GRAPH_VIZ_PATH": "/w/g.dot",
        "TF_TRT_EXPERIMENTAL_FEATURES": "disable_graph_freezing",
        "TF_TRT_ALLOW_ENGINE_NATIVE_SEGMENT_EXECUTION": "false",
    }


def test_no_tensorrt_error_path_is_the_real_one(tmp_path: Path, tiny_model: Path) -> None:
    """This TensorFlow has no TensorRT: the real converter refuses, and so do we, with a fix."""
    enabled, why = tftrt.tensorrt_status()
    assert not enabled and "not built with TensorRT" in why
    with pytest.raises(RuntimeError, match="not been built with TensorRT"):
        real_converter()(**tftrt.converter_kwargs(ConvertOptions(), str(tiny_model)))
    with pytest.raises(BackendUnavailable) as err:
        select_backend("tftrt")
    assert "Dockerfile.jetson" in (err.value.hint or "")
    with pytest.raises(BackendUnavailable):
        tftrt.convert(
            ConvertOptions(), str(tiny_model), str(tmp_path / "o"), str(tmp_path), None, None, print
        )
    backend, reason = select_backend("auto")
    assert backend == "native" and reason and why in reason


@pytest.mark.slow
def test_native_conversion_of_mobilenet_keeps_outputs(
    tmp_path: Path, mobilenet_model: Path
) -> None:
    import tensorflow as tf

    from device_agent.backends import native

    out = tmp_path / "converted"
    logs: list[str] = []
    summary = native.convert(ConvertOptions(), str(mobilenet_model), str(out), logs.append)
    assert summary.engines == [] and summary.ops_converted == 0
    assert summary.ops_total > 100  # MobileNetV2's frozen graph
    assert sum(summary.op_histogram.values()) == summary.ops_total
    assert [i.name for i in summary.inputs] == ["input_1"]
    assert summary.inputs[0].shape == [None, 32, 32, 3]
    assert any("no TensorRT engine" in line for line in logs)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    before = tf.saved_model.load(str(mobilenet_model)).signatures["serving_default"]
    after = tf.saved_model.load(str(out)).signatures["serving_default"]
    a, b = before(input_1=tf.constant(x)), after(input_1=tf.constant(x))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-6, atol=1e-6)
