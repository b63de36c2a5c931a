"""The `edge` command as a user runs it: a real process, the real agent on `local`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin

from device_agent.protocol import BenchResult, ConvertResult, DeviceFacts


def edge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", **(env or {}))
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=full, timeout=timeout
    )


def test_info_local_json_contract() -> None:
    proc = edge("info", "--to", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)  # one object per device, whatever fails
    assert (row["device"], row["status"], row["error"]) == ("local", "succeeded", None)
    data = row["facts"]
    for key in (
        "agent_version",
        "protocol",
        "python",
        "memory_total_mb",
        "memory_available_mb",
        "disk_free_mb",
        "tensorflow",
        "jetson",
    ):
        assert key in data
    facts = DeviceFacts.from_dict(data)
    assert facts.jetson is None  # this machine is no Jetson
    assert facts.memory_total_mb >= facts.memory_available_mb > 0
    from importlib.metadata import version

    assert facts.tensorflow == version("tensorflow-cpu")
    # the local device runs the zipapp, installed under the local root like on a board
    root = Path(os.environ["EDGE_LOCAL_ROOT"])
    assert list((root / "agent").glob("edge-agent-*.pyz"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, mnist_model: Path) -> dict:
    """One real `edge convert --json` run shared by the contract tests below."""
    home = tmp_path_factory.mktemp("home")
    out = home / "converted"
    proc = edge(
        "convert",
        str(mnist_model),
        "--to",
        "local",
        "--precision",
        "FP16",
        "--output",
        str(out),
        "--json",
        env={"EDGE_HOME": str(home), "EDGE_LOCAL_ROOT": str(home / "root")},
    )
    assert proc.returncode == 0, proc.stderr
    return {"data": json.loads(proc.stdout), "out": out}


def test_convert_json_contract(converted: dict, mnist_model: Path) -> None:
    data = converted["data"]
    assert isinstance(data, list) and len(data) == 1
    row = data[0]
    for key in (
        "device",
        "status",
        "backend",
        "fallback_reason",
        "precision",
        "output_model",
        "error",
        "summary",
    ):
        assert key in row
    for key in ("engines", "ops_total", "ops_converted", "percent_converted"):
        assert key in row["summary"]
    result = ConvertResult.from_dict(row)
    assert (result.device, result.status, result.error) == ("local", "succeeded", None)
    # no TensorRT here: auto fell back to native and says why
    assert result.backend == "native" and "not built with TensorRT" in result.fallback_reason
    assert result.summary.engines == [] and result.summary.ops_converted == 0
    assert result.summary.ops_total == sum(result.summary.op_histogram.values()) > 0
    assert result.output_model == str(converted["out"])


def test_converted_model_gives_the_same_outputs(converted: dict, mnist_model: Path) -> None:
    import tensorflow as tf

    x = np.random.default_rng(7).standard_normal((3, 28, 28)).astype(np.float32)
    a = tf.saved_model.load(str(mnist_model)).signatures["serving_default"]
    b = tf.saved_model.load(str(converted["out"])).signatures["serving_default"]
    ya, yb = a(flatten_input=tf.constant(x)), b(flatten_input=tf.constant(x))
    for key in ya:
        np.testing.assert_allclose(ya[key].numpy(), yb[key].numpy(), rtol=1e-6)


def test_bench_json_contract(mnist_model: Path) -> None:
    proc = edge(
        "bench",
        str(mnist_model),
        "--to",
        "local",
        "--batch-sizes",
        "1,4",
        "--iterations",
        "25",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    row = data[0]
    assert {"device", "status", "backend", "runs"} <= set(row)
    result = BenchResult.from_dict(row)
    assert [r.batch_size for r in result.runs] == [1, 4]
    for run in result.runs:
        assert run.iterations == 25
        lat = run.latency_ms
        assert lat.min <= lat.p50 <= lat.p90 <= lat.p95 <= lat.p99 <= lat.max
        assert run.throughput_per_s == pytest.approx(
            run.batch_size * run.iterations / run.wall_seconds
        )


def assert_user_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "hint:" in proc.stderr
    for word in words:
        assert word in proc.stderr


def test_user_errors_exit_1_with_a_hint(tmp_path: Path, mnist_model: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    assert_user_error(
        edge("convert", str(tmp_path / "not-a-model"), "--to", "local"), "not a SavedModel"
    )
    assert_user_error(edge("convert", str(tmp_path / "missing"), "--to", "local"), "does not exist")
    assert_user_error(
        edge("convert", str(mnist_model), "--recipe", "no-such-recipe"),
        "no-such-recipe",
        "edge recipes ls",
    )
    assert_user_error(
        edge("convert", str(mnist_model), "--to", "jetson-42"), "jetson-42", "edge fleet add"
    )
    assert_user_error(
        edge("convert", str(mnist_model), "--min-segment-size", "0"), "minimum_segment_size"
    )
    assert_user_error(edge("bench", str(mnist_model), "--batch-sizes", "0,x"), "batch-sizes")
    assert_user_error(
        edge("convert", str(mnist_model), "--input-shape", "flatten_input"), "NAME=DIMS"
    )


def test_edge_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = edge("convert", str(tmp_path / "missing"), env={"EDGE_DEBUG": "1"})
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ModelError" in proc.stderr


def test_tftrt_backend_failure_is_per_device_and_names_the_fix(mnist_model: Path) -> None:
    proc = edge("convert", str(mnist_model), "--backend", "tftrt", "--json")
    assert proc.returncode == 1
    row = json.loads(proc.stdout)[0]
    assert row["status"] == "failed" and "TensorRT" in row["error"]
    assert "Dockerfile.jetson" in row["hint"]


def test_recipe_applies_and_flags_override_it(tmp_path: Path, mnist_model: Path) -> None:
    from edge.recipes.loader import load_recipe

    recipe = load_recipe("mnist-mlp")
    proc = edge(
        "convert",
        str(mnist_model),
        "--recipe",
        "mnist-mlp",
        "--min-segment-size",
        "7",
        "--output",
        str(tmp_path / "out"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    options = ConvertResult.from_dict(json.loads(proc.stdout)[0]).options
    assert options.minimum_segment_size == 7  # the flag wins
    assert options.max_engines == recipe.segments.max_engines  # the recipe's value stays
    assert options.precision == recipe.precision  # `local` is no Jetson: no device override
    summary = next((Path(os.environ["EDGE_LOCAL_ROOT"]) / "jobs").glob("*convert*"))
    text = (summary / "artifacts" / "summary.txt").read_text()
    assert "Total number of TensorRT engines: 0" in text
