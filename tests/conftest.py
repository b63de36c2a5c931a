"""Shared fixtures: real TensorFlow SavedModels built once per session, isolated homes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["fleet_fixtures", "skip_guard", "demo_run"]


@pytest.fixture(autouse=True)
def edge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path) -> Path:
    """Every test gets its own EDGE_HOME and local device root; nothing touches ~. The
    `local` device runs its agent the way a board does, under a Python that cannot import
    device_agent (fleet_fixtures.device_python)."""
    home = tmp_path / "edge-home"
    monkeypatch.setenv("EDGE_HOME", str(home))
    monkeypatch.setenv("EDGE_LOCAL_ROOT", str(home / "local-device"))
    monkeypatch.setenv("EDGE_LOCAL_PYTHON", str(device_python))
    monkeypatch.delenv("EDGE_AGENT_ROOT", raising=False)
    monkeypatch.delenv("EDGE_DEBUG", raising=False)
    return home


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(models_dir: Path) -> Path:
    """Dense 4 -> 3: the cheapest real Keras SavedModel."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = tf.keras.Sequential([tf.keras.layers.Dense(3, input_shape=(4,), name="dense")])
    path = models_dir / "tiny"
    model.save(str(path))
    return path


@pytest.fixture(scope="session")
def mnist_model(models_dir: Path) -> Path:
    """The demo's MNIST MLP (the TF-TRT guide's model), trained briefly."""
    from edge.ops.demo_model import build_mnist_model

    return build_mnist_model(models_dir / "mnist", samples=512).path


@pytest.fixture(scope="session")
def mobilenet_model(models_dir: Path) -> Path:
    """A real Keras application with weights=None at a small input size."""
    import tensorflow as tf

    tf.keras.backend.clear_session()  # layer names (input_1) do not depend on earlier tests
    tf.keras.utils.set_random_seed(2)
    model = tf.keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    path = models_dir / "mobilenet_v2"
    model.save(str(path))
    return path
