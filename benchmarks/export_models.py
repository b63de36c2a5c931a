"""The host's ONNX export on real Keras models (weights=None): export time, ONNX vs
TensorFlow error, INT8 Q/DQ top-1 agreement and delta against FP32 (onnxruntime, CPU).

Models: an MNIST MLP (28x28 -> 10), MobileNetV2 (96x96, alpha 1.0) and ResNet50 (64x64),
10 logits (no softmax), random calibration data (uniform [0, 1)). The weights are random;
BatchNorm's statistics come from one pass over the calibration data (momentum 0), else
the activations of the random deep nets vanish (logits ~1e-12) and every error reads 0,
and top-1 agreement compares ties. Each FP32 export is timed from a
cold cache (tf2onnx + TensorFlow reference + onnxruntime check); the INT8 export adds
Q/DQ calibration and the INT8-vs-FP32 measurement on the calibration samples.

    .venv/bin/python benchmarks/export_models.py [CALIB_SAMPLES]   # default 64
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def build(name: str, path: Path, samples: int) -> tuple[np.ndarray, Path]:
    """Save the named model at `path`; returns the calibration data it was set up on."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    if name == "mnist_mlp":
        shape: tuple[int, ...] = (28, 28)
        model = tf.keras.Sequential(
            [
                tf.keras.layers.Flatten(input_shape=shape),
                tf.keras.layers.Dense(128, activation="relu"),
                tf.keras.layers.Dense(10),
            ]
        )
    elif name == "mobilenet_v2_96":
        shape = (96, 96, 3)
        model = tf.keras.applications.MobileNetV2(
            weights=None, input_shape=shape, classes=10, classifier_activation=None
        )
    else:
        shape = (64, 64, 3)
        model = tf.keras.applications.ResNet50(
            weights=None, input_shape=shape, classes=10, classifier_activation=None
        )
    x = np.random.default_rng(1).random((samples, *shape), dtype=np.float32)
    for layer in model.layers:  # BatchNorm statistics of the data (one pass, momentum 0)
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)
    model.save(str(path))
    return x, path


def main(samples: int) -> None:
    from device_agent.savedmodel_meta import read_signature
    from edge.ops.export import ExportOptions, export_onnx

    root = Path(tempfile.mkdtemp(prefix="export-bench-"))
    os.environ["EDGE_HOME"] = str(root / "home")
    header = (
        f"{'model':<16} {'export s':>8} {'int8 s':>7} {'onnx-tf abs':>11} {'rel':>8} "
        f"{'int8 top1':>9} {'drop':>6} {'int8 abs':>9} {'rel':>6}"
    )
    print(f"calibration samples: {samples} (random uniform), validation samples: 8")
    print(header)
    for name in ("mnist_mlp", "mobilenet_v2_96", "resnet50_64"):
        x, model = build(name, root / name, samples)
        input_name = read_signature(str(model)).inputs[0].name
        calib = root / f"{name}.npz"
        np.savez(calib, **{input_name: x})
        t = time.monotonic()
        fp32 = export_onnx(model, root / f"{name}.onnx", ExportOptions(calib=calib))
        fp32_s = time.monotonic() - t
        t = time.monotonic()
        int8 = export_onnx(model, root / f"{name}-int8.onnx", ExportOptions(int8=True, calib=calib))
        int8_s = time.monotonic() - t
        d = int8.accuracy_delta or {}
        v = fp32.validation
        print(
            f"{name:<16} {fp32_s:>8.2f} {int8_s:>7.2f} {v.max_abs_err:>11.2e} "
            f"{v.max_rel_err:>8.1e} {d.get('top1_agreement', 0):>9.3f} "
            f"{d.get('drop', 0):>6.3f} {d.get('max_abs_err', 0):>9.2e} "
            f"{d.get('max_rel_err', 0):>6.3f}",
            flush=True,
        )
        again = export_onnx(model, root / f"{name}-again.onnx", ExportOptions(calib=calib))
        assert again.cached, "second export should be a cache hit"
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
