"""The demo: the TF-TRT guide's Keras MNIST model, trained briefly on generated data.

No dataset is downloaded: images are noise with a bright horizontal band whose row
decides the label, so a small MLP learns it in one epoch and accuracy means something.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.errors import EdgeError


@dataclass
class DemoModel:
    path: Path
    train_accuracy: float
    test_accuracy: float


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 float32 images in [0,1] and int labels 0-9 (the band's position)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n)
    images = rng.uniform(0.0, 0.3, size=(n, 28, 28)).astype(np.float32)
    for i, label in enumerate(labels):
        row = 2 + int(label) * 2 + int(rng.integers(0, 2))
        images[i, row, 4:24] = rng.uniform(0.8, 1.0, size=20)
    return images, labels.astype(np.int64)


def build_mnist_model(out_dir: Path, epochs: int = 1, samples: int = 4000) -> DemoModel:
    """Flatten 28x28 -> Dense 128 relu -> Dropout 0.2 -> Dense 10, trained and saved with
    model.save(dir) (a Keras 2 SavedModel), as in the TF-TRT guide."""
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise EdgeError(
            f"the demo builds its model with TensorFlow, which is not installed ({exc}).",
            "pip install '.[tf]' on Python 3.10 or 3.11 (README: Support matrix); "
            "fleet commands do not need it.",
        ) from None

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.models.Sequential(
        [
            tf.keras.layers.Flatten(input_shape=(28, 28)),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dropout(0.2),
            tf.keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x, y = synthetic_digits(samples, seed=0)
    history = model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    xt, yt = synthetic_digits(1000, seed=1)
    _, test_acc = model.evaluate(xt, yt, verbose=0)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save(str(out_dir))
    return DemoModel(out_dir, float(history.history["accuracy"][-1]), float(test_acc))
