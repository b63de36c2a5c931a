"""Running a TensorFlow SavedModel's signature: the runner of `tftrt` and `native` (TF-TRT
engines are TRTEngineOps inside the SavedModel, so both load the same way)."""

from __future__ import annotations

import gc
from typing import Any, Callable, Dict, Optional, Sequence

from .base import ModelRunner


class SavedModelRunner(ModelRunner):
    """A SavedModel's signature `signature_key`, loaded with TensorFlow."""

    def __init__(
        self, model_dir: str, signature_key: str, tags: Optional[Sequence[str]] = None
    ) -> None:
        from ..signature import describe_inputs, describe_outputs, load_signature

        self.model_dir = model_dir
        self._loaded, self._fn = load_signature(model_dir, signature_key, tags)
        self.inputs = describe_inputs(self._fn)
        self.outputs = describe_outputs(self._fn)

    def run(self, feed: Dict[str, Any]) -> Dict[str, Any]:
        import tensorflow as tf

        outputs = self._fn(**{k: tf.constant(v) for k, v in feed.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def timed_call(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        import tensorflow as tf

        tensors = {k: tf.constant(v) for k, v in feed.items()}
        fn = self._fn

        def call() -> None:
            # .numpy() forces completion: the clock stops only when results are on the host.
            for out in fn(**tensors).values():
                out.numpy()

        return call

    def close(self) -> None:
        self._loaded = self._fn = None
        gc.collect()
