"""Conversion summary built from a (TF-TRT converted) GraphDef, as structured data.

Counts exactly like TF-TRT's `TrtGraphConverterV2.summary()` (TF 2.15
`trt_convert.py` + `utils.get_trtengineop_node_op_count`): every top-level node that is
not a `TRTEngineOp` is one non-converted op; each `TRTEngineOp` is an engine whose nodes
are those of the library function `<engine name>_native_segment`. Unlike TF, a missing
native segment (e.g. after `remove_native_segments`) gives nodes=0 instead of a crash.

Runs on the device's Python 3.8; TensorFlow is only needed by
`summary_from_concrete_function` (imported lazily there).
"""

from __future__ import annotations

import csv
import os
from typing import Any, Dict, List, Optional, Tuple

from device_agent.dtypes import dtype_name
from device_agent.protocol import ConversionSummary, Engine, NonConverted, TensorInfo

TRT_ENGINE_OP = "TRTEngineOp"
NATIVE_SEGMENT_SUFFIX = "_native_segment"


def shape_text(shape: Any) -> str:
    """A TensorShapeProto as "[-1,28,28]", or "unknown rank"."""
    if shape.unknown_rank:
        return "unknown rank"
    return "[" + ",".join(str(d.size) for d in shape.dim) + "]"


def _native_segment_counts(functions: Dict[str, Any], engine: str) -> Tuple[int, Dict[str, int]]:
    """(node count, op histogram) of `<engine>_native_segment`; (0, {}) when absent."""
    func = functions.get(engine + NATIVE_SEGMENT_SUFFIX)
    if func is None:
        return 0, {}
    ops: Dict[str, int] = {}
    for node in func.node_def:
        ops[node.op] = ops.get(node.op, 0) + 1
    return len(func.node_def), ops


def _engine(node: Any, functions: Dict[str, Any]) -> Engine:
    """One `Engine` from a TRTEngineOp NodeDef."""
    attr = node.attr
    nodes, ops = _native_segment_counts(functions, node.name)
    return Engine(
        name=node.name,
        nodes=nodes,
        ops=ops,
        input_dtypes=[dtype_name(t) for t in attr["InT"].list.type] if "InT" in attr else [],
        output_dtypes=[dtype_name(t) for t in attr["OutT"].list.type] if "OutT" in attr else [],
        input_shapes=[shape_text(s) for s in attr["input_shapes"].list.shape]
        if "input_shapes" in attr
        else [],
        output_shapes=[shape_text(s) for s in attr["_output_shapes"].list.shape]
        if "_output_shapes" in attr
        else [],
        device=node.device.split("/")[-1],
    )


def summarize_graph_def(
    graph_def: Any,
    inputs: Optional[List[TensorInfo]] = None,
    outputs: Optional[List[TensorInfo]] = None,
) -> ConversionSummary:
    """Summarize a GraphDef protobuf the way `TrtGraphConverterV2.summary()` counts."""
    functions: Dict[str, Any] = {}
    for func in graph_def.library.function:
        functions.setdefault(func.signature.name, func)  # TF takes the first match
    engine_nodes: Dict[str, Any] = {}
    histogram: Dict[str, int] = {}
    not_converted = 0
    for node in graph_def.node:  # top-level nodes only
        if node.op == TRT_ENGINE_OP:
            engine_nodes[node.name] = node
        else:
            not_converted += 1
            histogram[node.op] = histogram.get(node.op, 0) + 1
    engines = [_engine(node, functions) for _, node in sorted(engine_nodes.items())]
    converted = sum(e.nodes for e in engines)
    total = converted + not_converted
    return ConversionSummary(
        engines=engines,
        ops_total=total,
        ops_converted=converted,
        percent_converted=(converted / total * 100.0) if total else 0.0,
        op_histogram=histogram,
        inputs=list(inputs or []),
        outputs=list(outputs or []),
    )


def _tensor_info(name: str, value: Any) -> TensorInfo:
    """TensorInfo of a TensorSpec or Tensor; an unknown rank gives shape []."""
    shape = value.shape
    dims = [] if shape.rank is None else list(shape.as_list())
    return TensorInfo(name=name, dtype=value.dtype.name, shape=dims)


def summary_from_concrete_function(func: Any) -> ConversionSummary:
    """Summary of a TF ConcreteFunction (e.g. the converter's converted function)."""
    import tensorflow as tf  # lazy: the agent imports TF only where needed

    graph_def = func.graph.as_graph_def(add_shapes=True)
    args, kwargs = func.structured_input_signature
    placeholders = list(func.inputs)
    specs = tf.nest.flatten(args) + tf.nest.flatten(kwargs)
    inputs: List[TensorInfo] = []
    for index, spec in enumerate(specs):
        if not hasattr(spec, "dtype"):
            continue
        name = getattr(spec, "name", None)
        if not name and index < len(placeholders):
            name = placeholders[index].name.split(":")[0]
        inputs.append(_tensor_info(name or f"input_{index}", spec))
    structured = func.structured_outputs
    outputs: List[TensorInfo] = []
    if isinstance(structured, dict):  # signature-style outputs: named by key
        named: List[Tuple[str, Any]] = []
        for key in sorted(structured, key=str):
            leaves = tf.nest.flatten(structured[key])
            named += [
                (str(key) if len(leaves) == 1 else f"{key}_{i}", v) for i, v in enumerate(leaves)
            ]
    else:
        named = [(getattr(v, "name", ""), v) for v in tf.nest.flatten(structured)]
    for name, value in named:
        if hasattr(value, "dtype") and hasattr(value, "shape"):
            outputs.append(_tensor_info(name, value))
    return summarize_graph_def(graph_def, inputs, outputs)


def _by_count(histogram: Dict[str, int]) -> List[Tuple[str, int]]:
    """Histogram items by count desc, then name."""
    return sorted(histogram.items(), key=lambda kv: (-kv[1], kv[0]))


def render_text(summary: ConversionSummary) -> str:
    """Compact text view of a summary, in the spirit of TF-TRT's `summary()`."""
    ratio = f"[{summary.ops_converted}/{summary.ops_total}]"
    lines = [
        f"[*] Total number of TensorRT engines: {len(summary.engines)}",
        f"[*] % of OPs Converted: {summary.percent_converted:.2f}% {ratio}",
    ]
    for engine in summary.engines:
        lines.append("")
        lines.append(
            "{} ({}) # nodes: {} | in: {} {} | out: {} {}".format(
                engine.name,
                engine.device or "-",
                engine.nodes,
                "[" + ", ".join(engine.input_dtypes) + "]",
                "[" + ", ".join(engine.input_shapes) + "]",
                "[" + ", ".join(engine.output_dtypes) + "]",
                "[" + ", ".join(engine.output_shapes) + "]",
            )
        )
        lines.extend(f"\t- {op}: {n}x" for op, n in _by_count(engine.ops))
    if summary.op_histogram:
        lines.append("")
        lines.append("[*] Non-converted OPs (top 10):")
        lines.extend(f"\t- {op}: {n}x" for op, n in _by_count(summary.op_histogram)[:10])
    if summary.non_converted:
        lines.append("")
        lines.append("[*] TensorRT unsupported/non-converted OP report:")
        for item in sorted(summary.non_converted, key=lambda r: (-r.count, r.op, r.reason)):
            lines.append(f"\t- {item.op}: {item.count}x ({item.reason})")
    return "\n".join(lines) + "\n"


def _parse_count(text: str) -> Optional[int]:
    """An integer count, or None."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def _split_row(line: str) -> Optional[Tuple[str, str, int]]:
    """(op, reason, count) of one report row, or None for a header/garbage line.

    TF-TRT writes `op|reason|count` (`|`-separated, header `OP Name|Reason|Count`); a
    reason may itself contain the separator, so the op is the first field, the count the
    last integer field and the reason everything in between.
    """
    if "|" in line:
        sep, fields = "|", line.split("|")
    else:  # tolerate a comma-separated export
        sep, fields = ",", next(csv.reader([line]), [])
    parts = [p.strip() for p in fields]
    if len(parts) < 2 or not parts[0]:
        return None
    for k in range(len(parts) - 1, 0, -1):
        count = _parse_count(parts[k])
        if count is not None:
            return parts[0], sep.join(parts[1:k]).strip(), count
    return None


def parse_non_conversion_csv(path: str) -> List[NonConverted]:
    """Read the CSV written via `TF_TRT_SHOW_DETAILED_REPORT=<path>`; missing file -> [].

    Duplicate (op, reason) rows are merged (counts summed); file order is kept.
    """
    if not os.path.isfile(path):
        return []
    merged: Dict[Tuple[str, str], int] = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            row = _split_row(line.rstrip("\r\n"))
            if row is None:
                continue
            op, reason, count = row
            merged[(op, reason)] = merged.get((op, reason), 0) + count
    return [
        NonConverted(op=op, count=count, reason=reason) for (op, reason), count in merged.items()
    ]
