"""The fake ONNX parser: which nodes it rejects, and the network it fills."""

from __future__ import annotations

import os
from typing import Any, List, Tuple

from . import DataType, ILayer, INetworkDefinition, ITensor, _engine

#: (node index, node name, op type, message)
Issue = Tuple[int, str, str, str]


def check(proto: Any) -> List[Issue]:
    """The nodes the fake rejects: ops in $FAKE_TRT_REJECT, ops ONNX does not define, and
    (when the graph then fails to load in onnxruntime) the node onnxruntime names."""
    import onnx

    reject = {op.strip() for op in os.environ.get("FAKE_TRT_REJECT", "").split(",") if op.strip()}
    issues: List[Issue] = []
    for i, node in enumerate(proto.graph.node):
        domain = node.domain or ""
        unknown = domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, domain)
        if node.op_type in reject or unknown:
            issues.append(
                (i, node.name, node.op_type, f"No importer registered for op: {node.op_type}")
            )
    for t in list(proto.graph.input) + list(proto.graph.output):
        if t.type.tensor_type.elem_type not in _engine.ONNX_TYPES:
            issues.append((-1, t.name, "", f"unsupported I/O type {t.type.tensor_type.elem_type}"))
    if issues:
        return issues
    try:
        _engine.session(proto.SerializeToString())
    except Exception as e:  # onnxruntime's own failure: find the node it names
        text = str(e)
        for i, node in enumerate(proto.graph.node):
            if (node.name and f"'{node.name}'" in text) or f"{node.op_type}(" in text:
                return [(i, node.name, node.op_type, text.splitlines()[0][:300])]
        return [(-1, "", "", text.splitlines()[0][:300])]
    return []


def _dims(t: Any) -> Tuple[int, ...]:
    return tuple(
        int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.type.tensor_type.shape.dim
    )


def fill(network: INetworkDefinition, proto: Any) -> None:
    """One ITensor per graph input/output, one ILayer per node (named as TensorRT names
    unnamed nodes: by op and index)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    fp16 = {
        v.name
        for v in list(inferred.graph.value_info)
        + list(inferred.graph.input)
        + list(inferred.graph.output)
        if v.type.tensor_type.elem_type == 10
    }
    inits = {t.name for t in proto.graph.initializer}
    for t in proto.graph.input:
        if t.name in inits:
            continue
        name = _engine.ONNX_TYPES[t.type.tensor_type.elem_type][0]
        network._inputs.append(ITensor(t.name, DataType.__members__[name], _dims(t), True))
    for t in proto.graph.output:
        name = _engine.ONNX_TYPES[t.type.tensor_type.elem_type][0]
        out = ITensor(t.name, DataType.__members__[name], _dims(t), False)
        out._output = True
        network._outputs.append(out)
    for i, node in enumerate(proto.graph.node):
        layer = ILayer(
            node.name or f"node_of_{node.op_type}_{i}",
            node.op_type,
            list(node.input),
            list(node.output),
        )
        layer._op_fp16 = any(o in fp16 for o in node.output)  # type: ignore[attr-defined]
        network._layers.append(layer)
    network._onnx = proto
