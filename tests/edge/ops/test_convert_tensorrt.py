"""`edge convert --backend tensorrt` end to end on the local device: the host's ONNX
export (real tf2onnx, validated with onnxruntime), pushed, and the engine built by the
agent with TensorRT's Python API. No TensorRT can run here, so the board's `python3` has
the checking double of `tensorrt` and `pycuda` installed (plugins/fake_trt, whose every
name and signature test_fake_trt_conformance.py checks against the real bindings); the
agent's own code is the real one. Also `--dry-run --board/--jetpack` across the JetPack
table, where nothing is probed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin, make_device_python

FAKE_TRT = Path(__file__).resolve().parents[2] / "device_agent" / "plugins" / "fake_trt"


@pytest.fixture(scope="session")
def trt_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A board's python3 with TensorRT's module (the double) in its site-packages."""
    python = make_device_python(tmp_path_factory.mktemp("trt-python") / "venv")
    site = next((python.parent.parent / "lib").glob("python3*/site-packages"))
    (site / "fake-tensorrt.pth").write_text(f"{FAKE_TRT}\n")
    return python


def edge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", **env)
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=full, timeout=600
    )


def _row(proc: subprocess.CompletedProcess[str]) -> dict:
    data = json.loads(proc.stdout)
    rows = data["results"] if isinstance(data, dict) else data
    (row,) = rows
    return row


@pytest.mark.slow
def test_fp16_engine_is_built_validated_and_cached(
    mnist_model: Path, trt_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_LOCAL_PYTHON", str(trt_python))
    args = ["convert", str(mnist_model), "--backend", "tensorrt", "--precision", "FP16"]
    first = edge(*args, "--validate", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    row = _row(first)
    assert row["status"] == "succeeded", row
    assert row["artifact"] == "engine" and row["backend"] == "tensorrt"
    trt = row["tensorrt"]
    assert trt["version"] == "10.3.0.26" and trt["precision"] == "fp16"
    assert "FP16" in trt["builder_flags"]
    assert trt["memory_pools"]["WORKSPACE"] == trt["workspace_bytes"] > 0
    assert trt["engine_bytes"] > 0 and trt["timing_cache"] == "new"
    summary = row["summary"]
    assert summary["layers_total"] == summary["layers_at_precision"] > 0
    assert summary["parser_rejected"] == []
    assert row["validation"]["passed"] is True
    assert row["validation"]["inputs_from"] == "host-reference"  # no TensorFlow needed there
    engine_dir = Path(row["output_model"])
    assert (engine_dir / "engine.plan").is_file() and (engine_dir / "engine.json").is_file()

    again = edge(*args, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    hit = _row(again)
    assert hit["cache"] == "hit" and hit["tensorrt"]["engine_bytes"] == trt["engine_bytes"]

    rebuilt = _row(edge(*args, "--no-cache", "--json"))
    assert rebuilt["tensorrt"]["timing_cache"] == "hit"  # the board's timing cache

    # the standalone validate compares the engine with TensorFlow's outputs from the host
    check = edge("validate", str(mnist_model), str(engine_dir), "--json")
    assert check.returncode == 0, check.stderr[-3000:]
    report = _row(check)["validation"]
    assert report["passed"] is True and report["inputs_from"] == "host-reference"

    # the engine benchmarks on the runner (pycuda buffers, one stream, execute_async_v3)
    bench = edge("bench", str(engine_dir), "--iterations", "20", "--no-transfers", "--json")
    assert bench.returncode == 0, bench.stderr[-3000:]
    timed = _row(bench)
    assert timed["backend"] == "tensorrt" and timed["transfers"] is False
    (run,) = timed["runs"]
    assert run["iterations"] >= 20 and run["latency_ms"]["p50"] > 0


@pytest.mark.slow
def test_a_newer_tensorrt_is_another_cache_key_and_rejected_nodes_are_named(
    tiny_model: Path, trt_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_LOCAL_PYTHON", str(trt_python))
    args = ["convert", str(tiny_model), "--backend", "tensorrt", "--dry-run", "--json"]
    a = _row(edge(*args, FAKE_TRT_VERSION="10.3.0.26"))
    b = _row(edge(*args, FAKE_TRT_VERSION="10.13.3.9"))
    assert a["plan"]["cache_key"] != b["plan"]["cache_key"]
    assert b["plan"]["fingerprint"]["tensorrt"] == "10.13.3.9"

    bad = edge(
        "convert", str(tiny_model), "--backend", "tensorrt", "--json", FAKE_TRT_REJECT="Gemm,MatMul"
    )
    row = _row(bad)
    assert bad.returncode == 1 and row["status"] == "failed"
    assert "parser rejected" in row["error"] and (
        "Gemm" in row["error"] or "MatMul" in row["error"]
    )


@pytest.mark.slow
def test_int8_calibrator_feeds_the_real_calibration_data(
    tiny_model: Path, trt_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_LOCAL_PYTHON", str(trt_python))
    calib = tmp_path / "calib.npz"
    np.savez(calib, dense_input=np.random.default_rng(0).random((16, 4), dtype=np.float32))
    proc = edge(
        "convert",
        str(tiny_model),
        "--backend",
        "tensorrt",
        "--precision",
        "INT8",
        "--calib",
        str(calib),
        "--calib-batch-size",
        "4",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = _row(proc)
    assert row["status"] == "succeeded", row
    assert row["tensorrt"]["int8_mode"] == "calibrator"
    assert {"INT8", "FP16"} <= set(row["tensorrt"]["builder_flags"])
    assert row["tensorrt"]["calibration_cache"] == "new"
    assert (Path(row["output_model"]) / "calibration.cache").stat().st_size > 0


def _simulated(model: Path, board: str, jetpack: str, *extra: str) -> dict:
    proc = edge(
        "convert", str(model), "--dry-run", "--board", board, "--jetpack", jetpack, "--json", *extra
    )
    return _row(proc)


@pytest.mark.parametrize(
    ("jetpack", "backend", "version"),
    [
        ("5.1.2", "tftrt", None),
        ("6.0", "tftrt", None),
        ("6.2", "tensorrt", "10.3.0.30"),
        ("7.2.2", "tensorrt", "11.4.1.0"),
    ],
)
def test_board_and_jetpack_plan_from_the_tables(
    tiny_model: Path, jetpack: str, backend: str, version: str | None
) -> None:
    row = _simulated(tiny_model, "agx-orin-64gb", jetpack, "--precision", "FP16")
    assert row["status"] == "succeeded", row
    plan = row["plan"]
    assert plan["backend"] == backend
    assert plan["capabilities"]["simulated"] is True
    if version is None:
        assert plan["tensorrt"] is None
    else:
        assert plan["tensorrt"]["version"] == version
        # TensorRT 11 has no FP16 flag: the host exports an FP16 ONNX, strongly typed
        eleven = version.startswith("11.")
        assert plan["tensorrt"]["onnx"]["fp16"] is eleven
        assert plan["tensorrt"]["strongly_typed"] is eleven


def test_board_refusals_name_the_reason(tiny_model: Path) -> None:
    nano = _simulated(
        tiny_model,
        "orin-nano-8gb",
        "6.2",
        "--backend",
        "tensorrt",
        "--precision",
        "FP16",
        "--dla-core",
        "0",
    )
    assert nano["status"] == "failed" and "no DLA" in nano["error"]
    orin = _simulated(
        tiny_model,
        "agx-orin-64gb",
        "6.2",
        "--backend",
        "tensorrt",
        "--precision",
        "FP16",
        "--dla-core",
        "1",
    )
    assert orin["status"] == "succeeded" and orin["plan"]["tensorrt"]["dla_core"] == 1
    eleven = _simulated(
        tiny_model,
        "agx-orin-64gb",
        "7.2.2",
        "--backend",
        "tensorrt",
        "--precision",
        "INT8",
        "--int8-mode",
        "calibrator",
    )
    assert eleven["status"] == "failed" and "calibrator" in eleven["error"]
    old = edge("convert", str(tiny_model), "--dry-run", "--board", "nano-4gb", "--jetpack", "4.6")
    assert old.returncode == 1 and "Python 3.6" in (old.stdout + old.stderr)
