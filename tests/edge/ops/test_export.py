"""The host's ONNX export, for real: tf2onnx on Keras SavedModels built here, onnxruntime
against TensorFlow, Q/DQ INT8 from generated calibration data, FP16, the content cache,
and the errors (unexportable op, wrong calibration data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edge.core.errors import UserError
from edge.ops import export as ex
from edge.ops.export import ExportOptions, ExportResult, export_onnx
from edge.ops.onnx_export import opset_for_tensorrt


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def keras_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An MNIST-like MLP, a small conv net (NHWC), a regressor, and a model with ops ONNX
    lacks (Igamma, Svd)."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("export-models")
    tf.keras.utils.set_random_seed(3)
    mlp = tf.keras.Sequential(
        [
            tf.keras.layers.Flatten(input_shape=(28, 28), name="pixels"),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(10, name="logits"),
        ]
    )
    conv = tf.keras.Sequential(
        [
            tf.keras.layers.Conv2D(8, 3, activation="relu", input_shape=(16, 16, 3), name="conv"),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(5, name="scores"),
        ]
    )
    reg = tf.keras.Sequential(
        [
            tf.keras.layers.Dense(16, activation="tanh", input_shape=(6,), name="features"),
            tf.keras.layers.Dense(1, name="value"),
        ]
    )

    class Odd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            y = tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)
            return {"y": y, "s": tf.linalg.svd(tf.reshape(x, [-1, 2, 2]), compute_uv=False)}

    paths = {}
    for name, m in (("mlp", mlp), ("conv", conv), ("reg", reg)):
        paths[name] = root / name
        m.save(str(paths[name]))
    odd = Odd()
    paths["odd"] = root / "odd"
    tf.saved_model.save(odd, str(paths["odd"]), signatures=odd.__call__)
    return paths


def _input_name(model: Path) -> str:
    import tensorflow as tf

    sig = tf.saved_model.load(str(model)).signatures["serving_default"]
    return next(iter(sig.structured_input_signature[1]))


def _tf_outputs(model: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    sig = tf.saved_model.load(str(model)).signatures["serving_default"]
    return {k: v.numpy() for k, v in sig(**{k: tf.constant(v) for k, v in arrays.items()}).items()}


def _calib(path: Path, name: str, shape: tuple[int, ...], n: int = 64) -> Path:
    rng = np.random.default_rng(7)
    np.savez(path, **{name: rng.random((n, *shape), dtype=np.float32)})
    return path


def test_opset_follows_the_tensorrt_parser() -> None:
    assert opset_for_tensorrt("8.5.2") == 17
    assert opset_for_tensorrt("8.6.2.3") == 17
    assert opset_for_tensorrt("10.3") == 18
    assert opset_for_tensorrt("11.4.0.106") == 18
    with pytest.raises(UserError, match="TensorRT 7.1"):
        opset_for_tensorrt("7.1")
    assert ExportOptions(tensorrt="8.5.2").resolved_opset() == 17
    with pytest.raises(UserError, match="opset 19"):
        ExportOptions(opset=19).resolved_opset()


def test_mlp_onnx_matches_tensorflow_and_keeps_names(
    keras_models: dict[str, Path], tmp_path: Path
) -> None:
    model = keras_models["mlp"]
    out = tmp_path / "mlp.onnx"
    result = export_onnx(model, out, ExportOptions(validate_samples=4))
    name = _input_name(model)
    proto = onnx.load(str(out))
    assert [i.name for i in proto.graph.input] == [name]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.opset_import[0].version == result.opset == 17
    assert [(i.name, i.shape) for i in result.inputs] == [(name, [None, 28, 28])]
    # independently: onnxruntime on the written file vs TensorFlow, on fresh inputs
    x = np.random.default_rng(11).standard_normal((5, 28, 28)).astype(np.float32)
    got = _session(out).run(None, {name: x})[0]
    want = _tf_outputs(model, {name: x})["logits"]
    assert np.max(np.abs(got - want)) < 1e-4
    assert 0 <= result.validation.max_abs_err < 1e-4
    assert result.validation.samples == 4 and result.validation.top1_agreement == 1.0
    assert not result.quantized and result.accuracy_delta is None and not result.cached
    again = ExportResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result


def test_int8_qdq_from_calibration_data_measures_the_delta(
    keras_models: dict[str, Path], tmp_path: Path
) -> None:
    model = keras_models["mlp"]
    name = _input_name(model)
    calib = _calib(tmp_path / "calib.npz", name, (28, 28))
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export_onnx(model, fp32)
    result = export_onnx(model, int8, ExportOptions(int8=True, calib=calib))
    assert result.quantized and result.precision == "INT8"
    proto = onnx.load(str(int8))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric
    weights = [a for a in inits.values() if a.dtype == np.int8 and a.ndim == 2]
    assert weights, "int8 weights"
    scales = [
        inits[n.input[1]]
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 2
    ]
    assert scales and all(s.size > 1 for s in scales)  # per-channel weight scales
    # the delta, measured again here: INT8 vs FP32 on the calibration samples
    x = np.load(calib)[name]
    a, b = _session(int8).run(None, {name: x})[0], _session(fp32).run(None, {name: x})[0]
    top1 = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    delta = result.accuracy_delta
    assert delta is not None and delta["samples"] == 64
    assert delta["top1_agreement"] == pytest.approx(top1)
    assert delta["max_abs_err"] == pytest.approx(float(np.max(np.abs(a - b))), rel=1e-5)
    assert 0 < delta["max_abs_err"] < 0.1 * float(np.max(np.abs(b)))  # quantized, not broken
    assert delta["drop"] == pytest.approx(1 - top1)


def test_int8_refused_beyond_max_accuracy_drop(
    keras_models: dict[str, Path], tmp_path: Path
) -> None:
    model = keras_models["reg"]  # one output value: the drop is INT8's relative error
    calib = _calib(tmp_path / "c.npz", _input_name(model), (6,))
    out = tmp_path / "r.onnx"
    ok = export_onnx(model, out, ExportOptions(int8=True, calib=calib, max_accuracy_drop=0.5))
    drop = ok.accuracy_delta["drop"] if ok.accuracy_delta else None
    assert drop is not None and 0 < drop < 0.5
    out.unlink()
    with pytest.raises(UserError, match="--max-accuracy-drop 1e-06") as info:
        export_onnx(model, out, ExportOptions(int8=True, calib=calib, max_accuracy_drop=1e-6))
    assert f"{drop:.4f}" in info.value.message
    assert not out.exists()


def test_wrong_calibration_shape_fails_before_any_export(
    keras_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = keras_models["mlp"]
    calib = _calib(tmp_path / "bad.npz", _input_name(model), (27, 28))

    def no_export(*args: object) -> None:
        raise AssertionError("exported before the calibration check")

    monkeypatch.setattr(ex.ox, "convert_saved_model", no_export)
    with pytest.raises(
        UserError, match=r"expected float32 \[28, 28\].*got float32 \[27, 28\]"
    ) as i:
        export_onnx(model, tmp_path / "m.onnx", ExportOptions(int8=True, calib=calib))
    assert i.value.hint and "shape" in i.value.hint
    assert not (tmp_path / "m.onnx").exists()


def test_second_export_is_a_cache_hit(keras_models: dict[str, Path], tmp_path: Path) -> None:
    model = keras_models["mlp"]
    first = export_onnx(model, tmp_path / "a.onnx")
    assert not first.cached and list(ex.export_cache_dir().iterdir())
    calls: list[object] = []
    real = ex.ox.convert_saved_model

    def counted(*args: object) -> object:
        calls.append(args)
        return real(*args)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex.ox, "convert_saved_model", counted)
        second = export_onnx(model, tmp_path / "b.onnx")
        assert second.cached and not calls
        assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
        assert second.output == str(tmp_path / "b.onnx")
        assert second.cache_key == first.cache_key and second.validation == first.validation
        other = export_onnx(model, tmp_path / "c.onnx", ExportOptions(opset=18))
        assert not other.cached and len(calls) == 1 and other.opset == 18


def test_fp16_keeps_io_types(keras_models: dict[str, Path], tmp_path: Path) -> None:
    model = keras_models["mlp"]
    out = tmp_path / "h.onnx"
    result = export_onnx(model, out, ExportOptions(fp16=True))
    proto = onnx.load(str(out))
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [v.type.tensor_type.elem_type for v in proto.graph.input] == [f32]
    assert [v.type.tensor_type.elem_type for v in proto.graph.output] == [f32]
    floats = {i.data_type for i in proto.graph.initializer} & {f32, f16}
    assert floats == {f16}  # every weight in FP16
    assert result.precision == "FP16" and result.inputs[0].dtype == "float32"
    assert 0 < result.validation.max_abs_err < 1e-2  # FP16 rounding, measured against TF


def test_nchw_input_is_transposed(keras_models: dict[str, Path], tmp_path: Path) -> None:
    model = keras_models["conv"]
    name = _input_name(model)
    out = tmp_path / "nchw.onnx"
    result = export_onnx(model, out, ExportOptions(nchw_inputs=[name]))
    assert result.inputs[0].shape == [None, 3, 16, 16]
    x = np.random.default_rng(5).random((3, 16, 16, 3), dtype=np.float32)
    got = _session(out).run(None, {name: x.transpose(0, 3, 1, 2)})[0]
    want = _tf_outputs(model, {name: x})["scores"]
    assert np.max(np.abs(got - want)) < 1e-4 and result.validation.max_abs_err < 1e-4
    with pytest.raises(UserError, match="--nchw names no input"):
        export_onnx(model, out, ExportOptions(nchw_inputs=["nope"]))


def test_unexportable_op_is_named(keras_models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        export_onnx(keras_models["odd"], tmp_path / "odd.onnx")
    assert "Igamma" in info.value.message and "Svd" in info.value.message
    assert info.value.hint and "--backend tftrt" in info.value.hint
    assert "native" in info.value.hint
    assert not (tmp_path / "odd.onnx").exists()


@pytest.mark.slow
def test_mobilenet_v2_export_and_int8(tmp_path: Path) -> None:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(4)
    net = tf.keras.applications.MobileNetV2(
        weights=None, input_shape=(96, 96, 3), alpha=0.35, classes=10, classifier_activation=None
    )
    x = np.random.default_rng(7).random((32, 96, 96, 3), dtype=np.float32)
    for layer in net.layers:  # BatchNorm statistics from the data: no vanishing activations
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
    net(x, training=True)
    model = tmp_path / "mobilenet"
    net.save(str(model))
    name = _input_name(model)
    calib = tmp_path / "calib.npz"
    np.savez(calib, **{name: x})
    result = export_onnx(model, tmp_path / "q.onnx", ExportOptions(int8=True, calib=calib))
    # FP32 ONNX vs TF, on the first 8 calibration samples
    assert result.validation.samples == 8 and result.validation.max_rel_err < 1e-4
    want = _tf_outputs(model, {name: x})
    out_name = next(iter(want))
    assert float(np.std(want[out_name])) > 0.1  # real logits, not a constant
    delta = result.accuracy_delta
    assert delta is not None and delta["samples"] == 32
    q = _session(tmp_path / "q.onnx").run([out_name], {name: x})[0]
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # INT8 vs TF (~ FP32) measured here agrees with the reported INT8 vs FP32 delta
    top1_vs_tf = float(np.mean(q.argmax(-1) == want[out_name].argmax(-1)))
    assert abs(delta["top1_agreement"] - top1_vs_tf) <= 1 / 32
    abs_vs_tf = float(np.max(np.abs(q - want[out_name])))
    assert delta["max_abs_err"] == pytest.approx(abs_vs_tf, rel=0.05)
