"""The `native` backend: TensorFlow without TensorRT.

It loads the SavedModel, introspects its serving signature, re-saves it as the output
model, and summarizes the frozen graph the way TF-TRT counts ops: zero engines, honestly.
"""

from __future__ import annotations

from typing import Any, Callable, List

from ..protocol import ConversionSummary, ConvertOptions
from ..signature import describe_inputs, describe_outputs, load_signature


def convert(
    options: ConvertOptions, model_dir: str, output_dir: str, log: Callable[[str], None]
) -> ConversionSummary:
    """Re-save `model_dir` with its signature to `output_dir`; return the graph summary."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

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

    _, fn = load_signature(model_dir, signature_key, tags)
    return convert_variables_to_constants_v2(fn).graph.as_graph_def()
