"""`edge export`: the JSON contract, the table, and user errors with exit 1."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from helpers import edge_bin
from typer.testing import CliRunner

import edge.cli.main as cli_main


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(9)
    model = tf.keras.Sequential(
        [
            tf.keras.layers.Flatten(input_shape=(28, 28), name="image"),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(10, name="probs"),
        ]
    )
    path = tmp_path_factory.mktemp("cli-export") / "mlp"
    model.save(str(path))
    return path


def _input_name(model: Path) -> str:
    import tensorflow as tf

    sig = tf.saved_model.load(str(model)).signatures["serving_default"]
    return next(iter(sig.structured_input_signature[1]))


def test_export_json_contract(mlp: Path, tmp_path: Path) -> None:
    name = _input_name(mlp)
    calib = tmp_path / "calib.npz"
    np.savez(calib, **{name: np.random.default_rng(0).random((32, 28, 28), dtype=np.float32)})
    out = tmp_path / "m.onnx"
    args = ["export", str(mlp), "--format", "onnx", "--out", str(out), "--opset", "16"]
    res = CliRunner().invoke(cli_main.app, [*args, "--int8", "--calib", str(calib), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["output"] == str(out) and doc["opset"] == 16 and doc["quantized"] is True
    assert doc["inputs"] == [{"name": name, "dtype": "float32", "shape": [None, 28, 28]}]
    assert [o["name"] for o in doc["outputs"]] == ["probs"]
    v = doc["validation"]
    assert v["samples"] == 8 and 0 <= v["max_abs_err"] < 1e-4 and v["top1_agreement"] == 1.0
    assert {"max_rel_err"} <= set(v)
    assert doc["accuracy_delta"]["samples"] == 32 and doc["accuracy_delta"]["max_abs_err"] > 0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [name]


def test_export_table_fits_80_columns(
    mlp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An 80-column terminal (piped output is laid out wide on purpose, so fix the width)
    from edge.cli import export as export_cli
    from edge.views.layout import PipeConsole

    monkeypatch.setattr(export_cli, "console", PipeConsole(width=80))
    out = tmp_path / "t.onnx"
    res = CliRunner().invoke(cli_main.app, ["export", str(mlp), "--out", str(out), "--fp16"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert any("vs TensorFlow" in ln for ln in lines) and any("FP16" in ln for ln in lines)
    assert max(len(ln) for ln in lines) <= 80
    assert out.is_file()


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="80")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def test_bad_calibration_is_a_user_error(mlp: Path, tmp_path: Path) -> None:
    calib = tmp_path / "bad.npz"
    np.savez(calib, **{_input_name(mlp): np.zeros((4, 28, 27), dtype=np.float32)})
    out = tmp_path / "x.onnx"
    proc = _edge("export", str(mlp), "--out", str(out), "--int8", "--calib", str(calib), "--json")
    assert proc.returncode == 1, proc.stderr
    assert "error:" in proc.stderr and "[28, 27]" in proc.stderr and "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
