"""trt_inspect against hand-written engine inspector JSON (tests/data/trt_inspector, written
from NVIDIA's documented format), and against junk: a summary, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from device_agent.backends.trt_inspect import layers, summarize

DATA = Path(__file__).resolve().parents[2] / "data" / "trt_inspector"


def _text(name: str) -> str:
    return (DATA / name).read_text()


def test_detailed_8x_layers_read_precision_from_the_first_output() -> None:
    got = [(x.name, x.type, x.precision, x.on_dla) for x in layers(_text("trt8_detailed.json"))]
    assert got == [
        ("conv1 + relu1", "CaskConvolution", "fp16", False),
        ("dw2 + relu2", "CaskConvolution", "fp16", False),
        ("pool", "CaskPooling", "fp32", False),
        ("dense/MatMul", "CaskGemmMatrixMultiply", "fp32", False),
    ]
    s = summarize(_text("trt8_detailed.json"), "FP16")
    assert (s["layers_total"], s["layers_at_precision"], s["layers_on_dla"]) == (4, 2, 0)


def test_int8_with_a_dla_subgraph() -> None:
    s = summarize(_text("trt10_int8_dla.json"), "int8")
    assert (s["layers_total"], s["layers_at_precision"], s["layers_on_dla"]) == (3, 2, 1)
    assert [x["on_dla"] for x in s["layers"]] == [True, False, False]
    assert s["layers"][1]["precision"] == "fp16"


def test_layer_names_only_counts_layers_without_precision() -> None:
    s = summarize(_text("names_only.json"), "fp16")
    assert (s["layers_total"], s["layers_at_precision"], s["layers_on_dla"]) == (4, 0, 0)
    assert [x["precision"] for x in s["layers"]] == [None] * 4


def test_11x_document_and_bf16() -> None:
    s = summarize(_text("trt11_io_tensors.json"), "fp32")
    assert [x["precision"] for x in s["layers"]] == ["bf16", "fp32"]
    assert s["layers_at_precision"] == 1


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "not json",
        "[1, 2, 3]",
        "null",
        '{"Layers": 5}',
        '{"Layers": {"a": 1}}',
        '{"Layers": [5, null, {"LayerType": "X"}, {"Name": 7}]}',
        '{"Layers": [{"Name": "x", "Outputs": "FP16"}]}',
        '{"Layers": [{"Name": "x", "Outputs": [{"Format/Datatype": 16}]}]}',
        "[" * 100000,
        b"\xff\xfe",
        None,
        12,
    ],
)
def test_junk_gives_a_summary_never_a_crash(junk: Any) -> None:
    s = summarize(junk, "fp16")
    assert s["layers_at_precision"] == 0 and s["layers_on_dla"] == 0
    assert s["layers_total"] == len(s["layers"]) <= 1


def test_bytes_are_decoded() -> None:
    s = summarize(_text("trt8_detailed.json").encode(), "fp32")
    assert s["layers_at_precision"] == 2
    json.dumps(s)  # the summary goes into the convert result as JSON
