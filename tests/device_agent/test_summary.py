"""device_agent.summary against TensorFlow's own TF-TRT helpers, on real protos/graphs."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2, types_pb2
from tensorflow.python.compiler.tensorrt import utils as trt_utils

from device_agent.protocol import ConversionSummary, NonConverted
from device_agent.summary import (
    parse_non_conversion_csv,
    render_text,
    summarize_graph_def,
    summary_from_concrete_function,
)

GPU = "/job:localhost/replica:0/task:0/device:GPU:0"
Shape = Optional[Sequence[int]]  # None = unknown rank


def _set_shapes(attr: object, shapes: Sequence[Shape]) -> None:
    for dims in shapes:
        proto = attr.list.shape.add()  # type: ignore[attr-defined]
        if dims is None:
            proto.unknown_rank = True
        else:
            for size in dims:
                proto.dim.add(size=size)


def _add_engine(
    graph: graph_pb2.GraphDef,
    name: str,
    in_t: List[int],
    out_t: List[int],
    in_shapes: Sequence[Shape],
    out_shapes: Sequence[Shape],
    segment_ops: Optional[List[str]],
) -> None:
    """A TRTEngineOp node, plus its `<name>_native_segment` function unless ops is None."""
    node = graph.node.add(name=name, op="TRTEngineOp", device=GPU)
    node.input.extend(["input_0"])
    node.attr["InT"].list.type.extend(in_t)
    node.attr["OutT"].list.type.extend(out_t)
    node.attr["precision_mode"].s = b"FP16"
    _set_shapes(node.attr["input_shapes"], in_shapes)
    _set_shapes(node.attr["_output_shapes"], out_shapes)
    if segment_ops is not None:
        func = graph.library.function.add()
        func.signature.name = f"{name}_native_segment"
        for i, op in enumerate(segment_ops):
            func.node_def.add(name=f"{op.lower()}_{i}", op=op)


def _plain_nodes(graph: graph_pb2.GraphDef, ops: List[str]) -> None:
    for i, op in enumerate(ops):
        graph.node.add(name=f"{op}_{i}", op=op)


@pytest.fixture()
def converted_graph() -> graph_pb2.GraphDef:
    """Three engines (inserted out of name order), a decoy function, ordinary nodes."""
    g = graph_pb2.GraphDef()
    _plain_nodes(g, ["Placeholder", "Placeholder", "Const", "Identity", "Identity", "NoOp"])
    _add_engine(
        g, "TRTEngineOp_0_2", [types_pb2.DT_FLOAT], [types_pb2.DT_FLOAT],
        [[-1, 28, 28]], [[-1, 10]], ["Conv2D", "BiasAdd", "Relu", "Conv2D", "BiasAdd"],
    )  # fmt: skip
    _add_engine(
        g, "TRTEngineOp_0_0", [types_pb2.DT_FLOAT, types_pb2.DT_INT32],
        [types_pb2.DT_HALF, types_pb2.DT_FLOAT], [[-1, 3], None], [[], [-1]],
        ["MatMul", "Add", "Relu", "Relu", "Relu", "Cast", "Identity"],
    )  # fmt: skip
    _add_engine(
        g, "TRTEngineOp_0_1", [types_pb2.DT_INT32], [types_pb2.DT_BOOL],
        [[1]], [[1]], ["Greater", "LogicalNot", "Const"],
    )  # fmt: skip
    _plain_nodes(g, ["Transpose", "Identity"])
    decoy = g.library.function.add()  # not a native segment: must not be counted
    decoy.signature.name = "TRTEngineOp_0_0_native_segment_other"
    decoy.node_def.add(name="x", op="Sqrt")
    return g


def _expected_totals(g: graph_pb2.GraphDef) -> Dict[str, float]:
    """Totals recomputed from the proto, independently of the module under test."""
    engines = {n.name for n in g.node if n.op == "TRTEngineOp"}
    seg = {f.signature.name: len(f.node_def) for f in g.library.function}
    converted = sum(seg.get(f"{e}_native_segment", 0) for e in engines)
    not_converted = len(g.node) - len(engines)
    total = converted + not_converted
    return {
        "engines": len(engines),
        "converted": converted,
        "total": total,
        "percent": converted / total * 100 if total else 0.0,
    }


def _shape_str(dims: List[int]) -> str:
    return "[" + ",".join(str(d) for d in dims) + "]"


def test_engines_match_tftrt_helpers(converted_graph: graph_pb2.GraphDef) -> None:
    s = summarize_graph_def(converted_graph)
    nodes = {n.name: n for n in converted_graph.node}
    assert [e.name for e in s.engines] == ["TRTEngineOp_0_0", "TRTEngineOp_0_1", "TRTEngineOp_0_2"]
    for engine in s.engines:
        count, ops = trt_utils.get_trtengineop_node_op_count(converted_graph, engine.name)
        assert engine.nodes == count
        assert engine.ops == dict(ops)
        node = nodes[engine.name]
        assert engine.input_dtypes == trt_utils.get_trtengineop_io_dtypes(node, "InT")
        assert engine.output_dtypes == trt_utils.get_trtengineop_io_dtypes(node, "OutT")
        assert engine.input_dtypes == [tf.as_dtype(t).name for t in node.attr["InT"].list.type]
        assert engine.device == node.device.split("/")[-1] == "device:GPU:0"
        pairs = ((engine.input_shapes, "input_shapes"), (engine.output_shapes, "_output_shapes"))
        for ours, key in pairs:
            protos = node.attr[key].list.shape
            tf_shapes = trt_utils.get_node_io_shapes(node, key)
            assert ours == [
                "unknown rank" if p.unknown_rank else _shape_str(d)
                for p, d in zip(protos, tf_shapes)
            ]
    e0 = s.engines[0]
    assert e0.input_dtypes == ["float32", "int32"] and e0.output_dtypes == ["float16", "float32"]
    assert e0.input_shapes == ["[-1,3]", "unknown rank"] and e0.output_shapes == ["[]", "[-1]"]

    want = _expected_totals(converted_graph)
    assert len(s.engines) == want["engines"]
    assert s.ops_converted == want["converted"] == sum(e.nodes for e in s.engines)
    assert s.ops_total == want["total"]
    assert s.percent_converted == pytest.approx(want["percent"])
    top = collections.Counter(n.op for n in converted_graph.node if n.op != "TRTEngineOp")
    assert s.op_histogram == dict(top)
    assert ConversionSummary.from_json(s.to_json()) == s


def test_missing_native_segment_does_not_crash() -> None:
    g = graph_pb2.GraphDef()
    _plain_nodes(g, ["Placeholder", "Identity"])
    _add_engine(g, "TRTEngineOp_0_0", [1], [1], [[-1, 4]], [[-1, 4]], segment_ops=None)
    _add_engine(g, "TRTEngineOp_0_1", [1], [1], [[-1, 4]], [[-1, 4]], ["Relu", "Relu", "Tanh"])
    with pytest.raises(UnboundLocalError):  # TF's own helper crashes here
        trt_utils.get_trtengineop_node_op_count(g, "TRTEngineOp_0_0")
    s = summarize_graph_def(g)
    missing, present = s.engines
    assert (missing.nodes, missing.ops) == (0, {})
    assert (present.nodes, present.ops) == (3, {"Relu": 2, "Tanh": 1})
    want = _expected_totals(g)
    assert (s.ops_converted, s.ops_total) == (want["converted"], want["total"]) == (3, 5)
    assert s.percent_converted == pytest.approx(want["percent"])


def test_empty_graph_is_zero_percent() -> None:
    s = summarize_graph_def(graph_pb2.GraphDef())
    assert (s.engines, s.ops_total, s.ops_converted, s.percent_converted) == ([], 0, 0, 0.0)
    assert "[*] % of OPs Converted: 0.00% [0/0]" in render_text(s)


@pytest.fixture(scope="module")
def keras_function() -> tf.types.experimental.ConcreteFunction:
    """A tiny Keras classifier wrapped in a signature-like tf.function."""
    model = tf.keras.Sequential(
        [tf.keras.Input(shape=(28, 28)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)]
    )
    spec = tf.TensorSpec([None, 28, 28], tf.float32, name="images")

    @tf.function(input_signature=[spec])
    def serve(images: tf.Tensor) -> Dict[str, tf.Tensor]:
        logits = model(images)
        return {"logits": logits, "label": tf.argmax(logits, axis=-1)}

    return serve.get_concrete_function()


def test_concrete_function_without_engines(keras_function: object) -> None:
    s = summary_from_concrete_function(keras_function)
    graph_def = keras_function.graph.as_graph_def()  # type: ignore[attr-defined]
    assert s.engines == [] and s.ops_converted == 0 and s.percent_converted == 0.0
    assert s.ops_total == len(graph_def.node)
    assert s.op_histogram == dict(collections.Counter(n.op for n in graph_def.node))
    assert "MatMul" in s.op_histogram and "Placeholder" in s.op_histogram
    assert [(i.name, i.dtype, i.shape) for i in s.inputs] == [("images", "float32", [None, 28, 28])]
    assert sorted((o.name, o.dtype, o.shape) for o in s.outputs) == [
        ("label", "int64", [None]),
        ("logits", "float32", [None, 10]),
    ]
    text = render_text(s)
    assert "[*] Total number of TensorRT engines: 0" in text
    assert f"0.00% [0/{len(graph_def.node)}]" in text


def test_render_text(converted_graph: graph_pb2.GraphDef) -> None:
    s = summarize_graph_def(converted_graph)
    s.non_converted = [NonConverted(op="Transpose", count=1, reason="unsupported perm")]
    text = render_text(s)
    assert f"[*] Total number of TensorRT engines: {len(s.engines)}" in text
    assert f"[*] % of OPs Converted: {s.percent_converted:.2f}% " in text
    assert f"[{s.ops_converted}/{s.ops_total}]" in text
    for engine in s.engines:
        assert engine.name in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TRTEngineOp_0_0 "))
    assert "# nodes: 7" in lines[start] and "[float32, int32]" in lines[start]
    assert lines[start + 1 : start + 6] == [  # by count desc, then name
        "\t- Relu: 3x", "\t- Add: 1x", "\t- Cast: 1x", "\t- Identity: 1x", "\t- MatMul: 1x",
    ]  # fmt: skip
    assert "\t- Identity: 3x" in text  # non-converted histogram
    assert "\t- Transpose: 1x (unsupported perm)" in text


CSV_TEXT = (
    "OP Name|Reason|Count\n"
    "Const|excluded by segmenter option. Most likely an input or output node.|2\n"
    "NoOp|node can't be placed on GPU|1\n"
    "Transpose|Unsupported combination: a|b|4\n"  # a reason containing the separator
    "\n"
    "Const|excluded by segmenter option. Most likely an input or output node.|3\n"
    "Where|Denylisted with the env var TF_TRT_OP_DENYLIST|5|extra\n"
)


def test_parse_non_conversion_csv(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_text(CSV_TEXT)
    rows = parse_non_conversion_csv(str(path))
    assert [(r.op, r.reason, r.count) for r in rows] == [
        ("Const", "excluded by segmenter option. Most likely an input or output node.", 5),
        ("NoOp", "node can't be placed on GPU", 1),
        ("Transpose", "Unsupported combination: a|b", 4),
        ("Where", "Denylisted with the env var TF_TRT_OP_DENYLIST", 5),
    ]
    headerless = tmp_path / "noheader.csv"
    headerless.write_text("Relu|reason x|2\nRelu|reason y|1\n")
    assert parse_non_conversion_csv(str(headerless)) == [
        NonConverted(op="Relu", count=2, reason="reason x"),
        NonConverted(op="Relu", count=1, reason="reason y"),
    ]
    comma = tmp_path / "comma.csv"
    comma.write_text('OP Name,Reason,Count\nSize,"shape op, not supported",7\n')
    assert parse_non_conversion_csv(str(comma)) == [
        NonConverted(op="Size", count=7, reason="shape op, not supported")
    ]
    assert parse_non_conversion_csv(str(tmp_path / "missing.csv")) == []
