"""The `native` backend: TensorFlow without TensorRT.

It loads the SavedModel, introspects its serving signature, re-saves it as the output
model, and summarizes the frozen graph the way TF-TRT counts ops: zero engines, honestly.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, List, Optional

from ..protocol import ConversionSummary, ConvertOptions
from .base import Backend, BuildOutcome, BuildRequest, Capability, SegmentCounter

SWEEP_NOTE = "segment sweep estimated with jetson-edge's segmenter model (no TensorRT here)"


def convert(
    options: ConvertOptions, model_dir: str, output_dir: str, log: Callable[[str], None]
) -> ConversionSummary:
    """Re-save `model_dir` with its signature to `output_dir`; return the graph summary."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from ..signature import describe_inputs, describe_outputs, load_signature
    from ..summary import summarize_graph_def

    loaded, fn = load_signature(model_dir, options.signature_key, options.tags)
    inputs, outputs = describe_inputs(fn), describe_outputs(fn)
    log(
        "signature {!r}: inputs {} -> outputs {}".format(
            options.signature_key,
            ", ".join(f"{i.name}:{i.dtype}{i.shape}" for i in inputs),
            ", ".join(f"{o.name}:{o.dtype}{o.shape}" for o in outputs),
        )
    )
    # TF-TRT freezes the graph before segmenting it; freeze too so op counts compare.
    frozen = convert_variables_to_constants_v2(fn)
    summary = summarize_graph_def(frozen.graph.as_graph_def(add_shapes=True), inputs, outputs)
    tf.saved_model.save(loaded, output_dir, signatures={options.signature_key: fn})
    log(f"native backend: saved {output_dir} (no TensorRT engine was built)")
    return summary


def frozen_graph_def(model_dir: str, signature_key: str, tags: List[str]) -> Any:
    """The signature's graph frozen the way TF-TRT freezes it before segmenting."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    from ..signature import load_signature

    _, fn = load_signature(model_dir, signature_key, tags)
    return convert_variables_to_constants_v2(fn).graph.as_graph_def()


def _tensorflow_found() -> bool:
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules["tensorflow"] is None
        return False


class NativeBackend(Backend):
    """TensorFlow without TensorRT: no engines, FP32, the fallback of `auto`."""

    name = "native"
    unavailable_hint = "Install TensorFlow for this board's JetPack (see the README)."

    def probe(self) -> Capability:
        """Needs only TensorFlow, found without importing it."""
        from ..facts import TENSORFLOW_DISTS, dist_version

        version = dist_version(TENSORFLOW_DISTS)
        if not _tensorflow_found():
            return Capability(
                self.name, False, "TensorFlow is not installed", {"tensorflow": version}
            )
        return Capability(
            self.name,
            True,
            f"TensorFlow {version or '(version unknown)'} (no TensorRT needed)",
            {"tensorflow": version},
        )

    def precision(self, options: ConvertOptions) -> str:
        return "FP32"

    def segment_counter(self, request: BuildRequest) -> SegmentCounter:
        """Estimates with jetson-edge's model of TF-TRT's segmenter on the frozen graph."""
        from ..segments import segments_in_graph

        options = request.options
        graph_def = frozen_graph_def(request.model_dir, options.signature_key, options.tags)
        return SegmentCounter(
            lambda size: segments_in_graph(graph_def, size, max_engines=options.max_engines),
            note=SWEEP_NOTE,
        )

    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        return BuildOutcome(convert(request.options, request.model_dir, output_dir, request.log))
