"""The hardware suite: the whole path on a real Jetson.

Run with `EDGE_TEST_DEVICE=user@host[:port] pytest -m jetson` (the board needs NVIDIA's
TensorFlow with TensorRT, numpy, and your key in its authorized_keys; its host key must
already be in ~/.ssh/known_hosts or trusted with `edge fleet trust`). Without the
variable every test here is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_agent.protocol import BenchOptions, ConvertOptions
from edge.fleet.devices import Device
from edge.ops import convert as conversion
from edge.ops import measure
from edge.ops.convert import ConvertRequest
from edge.ops.info import device_facts

TARGET = os.environ.get("EDGE_TEST_DEVICE")

pytestmark = [
    pytest.mark.jetson,
    pytest.mark.skipif(not TARGET, reason="set EDGE_TEST_DEVICE=user@host to run on a Jetson"),
]


@pytest.fixture(scope="module")
def board() -> Device:
    assert TARGET
    user, _, rest = TARGET.rpartition("@")
    host, _, port = rest.partition(":")
    return Device(
        name="board",
        host=host,
        user=user or None,
        port=int(port) if port else None,
        python=os.environ.get("EDGE_TEST_PYTHON", "python3"),
        root=os.environ.get("EDGE_TEST_ROOT", "~/.edge-test"),
    )


def test_facts_identify_a_jetson_with_tensorrt(board: Device) -> None:
    facts = device_facts(board, deep=True)
    assert facts.jetson is not None and facts.jetson.module
    assert facts.jetson.l4t and facts.jetson.compute_capability
    assert facts.tensorrt_enabled, "TensorFlow on the board is not built with TensorRT"
    again = device_facts(board, deep=True)  # the board's deep-probe cache answers
    assert again.capabilities == facts.capabilities
    assert again.tensorrt_linked == facts.tensorrt_linked


def test_fp16_conversion_builds_engines_and_runs(board: Device, mnist_model: Path) -> None:
    run = conversion.convert(
        ConvertRequest(
            mnist_model,
            lambda facts: ConvertOptions(backend="tftrt", precision="FP16", run_validation=True),
        ),
        [board],
    )
    (result,) = run.results
    assert result.status == "succeeded", result.error
    assert result.backend == "tftrt" and result.engines_built
    assert result.summary.engines and result.summary.ops_converted > 0
    if result.validation is not None:
        assert result.validation.passed, result.validation
    bench = measure.bench(Path(mnist_model), [board], BenchOptions(batch_sizes=[1, 32]))
    assert bench.results[0].status == "succeeded"
