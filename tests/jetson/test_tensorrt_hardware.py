"""The hardware suite for the tensorrt backend: ONNX -> engine built on a real board.

One command runs it (the board needs JetPack's python3-libnvinfer, pycuda and numpy; the
host needs the project's venv):

    EDGE_TEST_DEVICE=user@host [EDGE_TEST_DEVICE2=user@host2] .venv/bin/pytest -m jetson

Each test runs for every backend the board can run (its `info --deep` answer), and says
why when one is not there. `EDGE_TEST_DEVICE2` names a second board identical to the
first, for engine sharing; `EDGE_TEST_PYTHON` and `EDGE_TEST_ROOT` as in test_hardware.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from device_agent.protocol import BenchOptions, ConvertOptions, ConvertResult
from edge.fleet.devices import Device
from edge.ops import convert as conversion
from edge.ops import measure
from edge.ops.convert import ConvertRequest
from edge.ops.info import device_facts

TARGET = os.environ.get("EDGE_TEST_DEVICE")
SECOND = os.environ.get("EDGE_TEST_DEVICE2")

pytestmark = [
    pytest.mark.jetson,
    pytest.mark.skipif(not TARGET, reason="set EDGE_TEST_DEVICE=user@host to run on a Jetson"),
]


def _device(name: str, target: str) -> Device:
    user, _, rest = target.rpartition("@")
    host, _, port = rest.partition(":")
    return Device(
        name=name,
        host=host,
        user=user or None,
        port=int(port) if port else None,
        python=os.environ.get("EDGE_TEST_PYTHON", "python3"),
        root=os.environ.get("EDGE_TEST_ROOT", "~/.edge-test"),
    )


@pytest.fixture(scope="module")
def board() -> Device:
    assert TARGET
    return _device("board", TARGET)


@pytest.fixture(scope="module")
def backends(board: Device) -> dict[str, str]:
    """backend -> why (not), from the board's own probe."""
    facts = device_facts(board, deep=True)
    caps = facts.capabilities
    assert caps is not None, "the agent reported no capabilities: is it this version?"
    return {b.backend: ("" if b.available else b.reason) for b in caps.backends}


def _need(backends: dict[str, str], name: str) -> None:
    if backends.get(name, "not registered"):
        pytest.skip(f"the board cannot run {name}: {backends.get(name)}")


def _convert(
    model: Path, devices: list[Device], calib: Path | None = None, **options: object
) -> list[ConvertResult]:
    request = ConvertRequest(
        model,
        lambda facts: ConvertOptions(**options),
        calib=calib,  # type: ignore[arg-type]
    )
    return list(conversion.convert(request, devices).results)


@pytest.fixture
def calib(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(path, flatten_input=rng.random((64, 28, 28), dtype=np.float32))
    return path


@pytest.mark.parametrize("backend", ["tftrt", "tensorrt"])
def test_fp16_engine_validates_and_benchmarks_with_power(
    board: Device, backends: dict[str, str], mnist_model: Path, backend: str
) -> None:
    _need(backends, backend)
    (r,) = _convert(
        mnist_model,
        [board],
        backend=backend,
        precision="FP16",
        run_validation=True,
        use_cache=False,
    )
    assert r.status == "succeeded", r.error
    assert r.engines_built and r.validation is not None and r.validation.passed
    if backend == "tensorrt":
        assert r.artifact == "engine" and r.tensorrt is not None
        assert r.summary is not None and r.summary.layers_total
        assert "WORKSPACE" in r.tensorrt.memory_pools
    assert r.output_model
    bench = measure.bench(Path(mnist_model), [board], BenchOptions(batch_sizes=[1, 8]))
    (b,) = bench.results
    assert b.status == "succeeded" and all(run.power is not None for run in b.runs)


@pytest.mark.parametrize("mode", ["calibrator", "qdq"])
def test_int8_in_both_modes(
    board: Device, backends: dict[str, str], mnist_model: Path, calib: Path, mode: str
) -> None:
    _need(backends, "tensorrt")
    (r,) = _convert(
        mnist_model,
        [board],
        calib=calib,
        backend="tensorrt",
        precision="INT8",
        int8_mode=mode,
        run_validation=True,
        use_cache=False,
    )
    if r.status == "failed" and "has no calibrator INT8" in (r.error or ""):
        pytest.skip("TensorRT 11 has no implicit calibration (expected)")
    assert r.status == "succeeded", r.error
    assert r.tensorrt is not None and r.tensorrt.int8_mode == mode
    assert r.validation is not None and r.validation.passed


def test_dynamic_shapes_run_across_the_profile(
    board: Device, backends: dict[str, str], mnist_model: Path
) -> None:
    _need(backends, "tensorrt")
    (r,) = _convert(
        mnist_model,
        [board],
        backend="tensorrt",
        precision="FP16",
        build_shapes=[{"flatten_input": [1, 28, 28]}, {"flatten_input": [16, 28, 28]}],
        use_cache=False,
    )
    assert r.status == "succeeded", r.error
    assert r.tensorrt is not None
    (profile,) = r.tensorrt.profiles
    assert profile["flatten_input"].min[0] == 1 and profile["flatten_input"].max[0] == 16


def test_dla_with_gpu_fallback_where_the_board_has_one(
    board: Device, backends: dict[str, str], mnist_model: Path
) -> None:
    _need(backends, "tensorrt")
    facts = device_facts(board, deep=True)
    cores = facts.capabilities.dla_cores if facts.capabilities else 0
    (r,) = _convert(mnist_model, [board], backend="tensorrt", precision="FP16", dla_core=0)
    if not cores:
        assert r.status == "failed" and "no DLA" in (r.error or "")
        return
    assert r.status == "succeeded", r.error
    assert r.tensorrt is not None and r.tensorrt.dla_core == 0
    assert "GPU_FALLBACK" in r.tensorrt.builder_flags


def test_the_timing_cache_makes_a_rebuild_faster(
    board: Device, backends: dict[str, str], mnist_model: Path
) -> None:
    _need(backends, "tensorrt")
    options = {"backend": "tensorrt", "precision": "FP16", "use_cache": False}
    (first,) = _convert(mnist_model, [board], **options)
    (second,) = _convert(mnist_model, [board], **options)
    assert first.tensorrt is not None and second.tensorrt is not None
    assert second.tensorrt.timing_cache == "hit"
    assert second.tensorrt.build_seconds < first.tensorrt.build_seconds


@pytest.mark.skipif(not SECOND, reason="set EDGE_TEST_DEVICE2 to a board identical to the first")
def test_identical_boards_build_once(
    board: Device, backends: dict[str, str], mnist_model: Path
) -> None:
    _need(backends, "tensorrt")
    assert SECOND
    other = _device("board2", SECOND)
    results = _convert(mnist_model, [board, other], backend="tensorrt", precision="FP16")
    assert all(r.status == "succeeded" for r in results), [r.error for r in results]
    assert sorted(r.cache for r in results) in (["built", "shared"], ["hit", "hit"])
