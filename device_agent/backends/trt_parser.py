"""TensorRT's ONNX parser as the tensorrt backend uses it: parse a file, and report the
rejected nodes one by one (8.x gives only a node index; 10.x and up also its name and op).
Re-exported by trt_api; `trt` is passed in, and every call is checked against each line's
real bindings by tests/device_agent/backends/test_trt_bindings.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple

from ..errors import AgentError

if TYPE_CHECKING:
    from .trt_api import TrtVersion


@dataclass
class ParserIssue:
    """One ONNX node the parser rejected."""

    node: Optional[int]
    name: Optional[str]
    op_type: Optional[str]
    code: str
    message: str

    def __str__(self) -> str:
        where = "node {}".format(self.node if self.node is not None and self.node >= 0 else "?")
        if self.name:
            where += f" {self.name!r}"
        if self.op_type:
            where += f" ({self.op_type})"
        return f"{where}: {self.message} [{self.code}]"


def parser_issues(
    version: TrtVersion, parser: Any, nodes: Optional[Sequence[Tuple[str, str]]] = None
) -> List[ParserIssue]:
    """The parser's errors, one per node. 8.x gives only the node's index: `nodes` (the
    ONNX graph's (name, op_type) in order, as the host read them) names it there."""
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = int(err.node())
        name: Optional[str] = None
        op: Optional[str] = None
        if version.major >= 10:
            name = err.node_name() or None
            op = err.node_operator() or None
        if nodes is not None and 0 <= node < len(nodes):
            name = name or nodes[node][0]
            op = op or nodes[node][1]
        code = err.code()
        out.append(ParserIssue(node, name, op, getattr(code, "name", str(code)), str(err.desc())))
    return out


def parse_onnx(
    trt: Any,
    version: TrtVersion,
    network: Any,
    logger: Any,
    onnx_path: str,
    nodes: Optional[Sequence[Tuple[str, str]]] = None,
) -> Tuple[Any, List[ParserIssue]]:
    """Parse the ONNX file into `network` (external weights beside it are found): the
    parser, and the per-node errors (empty when it parsed)."""
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(onnx_path)
    issues = parser_issues(version, parser, nodes)
    if not ok and not issues:
        issues = [ParserIssue(None, None, None, "UNKNOWN", "the ONNX parser failed")]
    return parser, issues


def parse_error(issues: Sequence[ParserIssue]) -> AgentError:
    lines = "; ".join(str(i) for i in issues[:10])
    more = f" (and {len(issues) - 10} more)" if len(issues) > 10 else ""
    return AgentError(
        f"TensorRT's ONNX parser rejected {len(issues)} node(s): {lines}{more}.",
        "Export with an opset this TensorRT supports (edge export --opset), "
        "or replace the unsupported ops.",
    )
