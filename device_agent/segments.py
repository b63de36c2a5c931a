"""Engine-count control: the minimum_segment_size sweep (TF-TRT guide 6.1) and a model of
TF-TRT's segmenter to count engines where no converter runs.

`segments_in_graph` approximates `SegmentGraph` in TensorFlow's
`tensorflow/compiler/tf2tensorrt/segment/segment.cc`: nodes whose op type is supported
are candidates; a union-find merges candidates joined by a data edge (control edges are
never contracted); a segment is kept when its number of *effective* nodes (all but
Identity/Snapshot/StopGradient) is >= minimum_segment_size; with TF_TRT_MAX_ALLOWED_ENGINES
only the largest N segments are kept. It does NOT model what the real converter also
checks: per-node dtype/shape constraints (e.g. Cast from int32, dynamic non-batch dims),
the cycle check that can split a segment, or Grappler's rewrites before segmentation. So
its counts are an estimate; on a Jetson the sweep counts with convert() (without build()).

Python 3.8, stdlib only: works on any GraphDef protobuf (no TensorFlow import here).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from device_agent.protocol import SweepPoint

#: TF_TRT_MAX_ALLOWED_ENGINES's default in segment.cc: the target when none is given. The
#: guide (6.1) calls 5-10 engines a good heuristic: pass max_engines to aim there.
DEFAULT_MAX_ENGINES = 20
SEGMENT_SIZE_LADDER = (3, 5, 8, 12, 20, 30, 50)

#: Op types TF-TRT converts in common vision models (the guide's sample summary, section
#: 6.3.1, plus the usual conv/pool/dense ops). Pass your own set for other models.
COMMON_SUPPORTED_OPS = frozenset({
    "Add", "AddV2", "AvgPool", "BiasAdd", "Cast", "ConcatV2", "Const", "Conv2D",
    "DepthwiseConv2dNative", "Exp", "ExpandDims", "FusedBatchNormV3", "Identity", "MatMul",
    "MaxPool", "Mean", "Mul", "Pack", "Pad", "Relu", "Relu6", "Reshape", "Sigmoid", "Slice",
    "Softmax", "Split", "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unpack",
})  # fmt: skip

#: Not counted towards the minimum size (segment.cc `num_effective_nodes`).
NOOP_OPS = frozenset({"Identity", "Snapshot", "StopGradient"})


def target_engines(max_engines: Optional[int]) -> float:
    """The engine-count target: `max_engines`, 20 when None, unlimited when <= 0 (as TF)."""
    if max_engines is None:
        return DEFAULT_MAX_ENGINES
    return max_engines if max_engines > 0 else math.inf


def sweep_choice(
    points: Sequence[SweepPoint], max_engines: Optional[int]
) -> Tuple[SweepPoint, bool]:
    """(chosen point, whether it is within the target). Within the target: the most ops
    converted (percent), then the smallest size. None within: the fewest engines, then
    the most converted, then the smallest size."""
    if not points:
        raise ValueError("no sweep points")
    target = target_engines(max_engines)
    within = [p for p in points if p.engines <= target]
    if within:
        best = max(round(p.percent_converted, 6) for p in within)
        tied = [p for p in within if round(p.percent_converted, 6) == best]
        return min(tied, key=lambda p: p.minimum_segment_size), True
    fewest = min(p.engines for p in points)
    tied = [p for p in points if p.engines == fewest]
    return min(tied, key=lambda p: (-p.percent_converted, p.minimum_segment_size)), False


def choose_segment_size(points: Sequence[SweepPoint], max_engines: Optional[int]) -> SweepPoint:
    """The guide's 6.1 rule; `sweep_choice` also says whether the target was met."""
    return sweep_choice(points, max_engines)[0]


def sweep_sizes(default: int = 3) -> List[int]:
    """Sizes to try, starting at `default`: [3, 5, 8, 12, 20, 30, 50] for 3."""
    if default < 1:
        return list(SEGMENT_SIZE_LADDER)
    return [default] + [s for s in SEGMENT_SIZE_LADDER if s > default]


def run_sweep(
    count_fn: Callable[[int], SweepPoint],
    sizes: Sequence[int],
    max_engines: Optional[int],
    log: Optional[Callable[[str], None]] = None,
) -> Tuple[SweepPoint, List[SweepPoint]]:
    """Count engines at growing sizes and choose one; returns (chosen, points counted).

    Stops at the first point within the target: TF-TRT drops segments smaller than the
    size, so a larger size can only lower both the engine count and the percent converted;
    no later point can beat it, and the remaining (minutes-long on a Jetson) convert() calls
    are skipped. A plateau in the engine count is no reason to stop: segments larger than
    the next size may still be dropped further on."""
    points: List[SweepPoint] = []
    target = target_engines(max_engines)
    for size in sorted({int(s) for s in sizes if int(s) >= 1}):
        point = count_fn(size)
        points.append(point)
        if log:
            log(
                f"minimum_segment_size={size}: {point.engines} engines, "
                f"{point.percent_converted:.1f}% of ops converted"
            )
        if point.engines <= target:
            break
    chosen, within = sweep_choice(points, max_engines)
    if log:
        how = "within" if within else "none within; fewest engines for"
        log(
            f"chose minimum_segment_size={chosen.minimum_segment_size} ({how} the target of "
            f"{target:g} engines)"
        )
    return chosen, points


def segments_in_graph(
    graph_def: Any,
    min_size: int,
    supported_ops: Iterable[str] = COMMON_SUPPORTED_OPS,
    max_engines: Optional[int] = None,
) -> SweepPoint:
    """Engines and ops converted for a frozen GraphDef at `min_size` (see module doc).
    Percent is over all top-level nodes, as `summary.summarize_graph_def` counts them."""
    supported = set(supported_ops)
    parent: Dict[str, str] = {n.name: n.name for n in graph_def.node if n.op in supported}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]  # path halving
            name = parent[name]
        return name

    for node in graph_def.node:
        if node.name not in parent:
            continue
        for inp in node.input:
            src = inp.split(":")[0]
            if not inp.startswith("^") and src in parent:  # "^x" is a control edge
                parent[find(src)] = find(node.name)

    groups: Dict[str, List[Any]] = {}
    for node in graph_def.node:
        if node.name in parent:
            groups.setdefault(find(node.name), []).append(node)
    kept = [
        nodes
        for nodes in groups.values()
        if min_size >= 1 and sum(n.op not in NOOP_OPS for n in nodes) >= min_size
    ]
    kept.sort(key=len, reverse=True)
    if max_engines is not None and max_engines > 0:  # TF keeps the largest N segments
        kept = kept[:max_engines]
    converted = sum(len(nodes) for nodes in kept)
    total = len(graph_def.node)
    return SweepPoint(
        minimum_segment_size=min_size,
        engines=len(kept),
        percent_converted=converted / total * 100.0 if total else 0.0,
        ops_converted=converted,
    )
