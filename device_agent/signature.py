"""Serving-signature introspection and input synthesis (numpy only; TF objects passed in)."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .dtypes import numpy_name
from .errors import AgentError
from .protocol import TensorInfo


def load_signature(model_dir: str, signature_key: str, tags: Optional[Sequence[str]] = None) -> Any:
    """Load a SavedModel and return (loaded object, its signature function)."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(model_dir, tags=list(tags) if tags else None)
    except (OSError, ValueError, RuntimeError) as exc:
        raise AgentError(
            f"Cannot load the SavedModel at {model_dir}: {str(exc).splitlines()[0]}",
            "Check that the directory holds saved_model.pb and variables/ as written by "
            "model.save(dir) or tf.saved_model.save().",
        ) from exc
    signatures = getattr(loaded, "signatures", {}) or {}
    if signature_key not in signatures:
        raise AgentError(
            "The SavedModel has no signature {!r} (it has: {}).".format(
                signature_key, ", ".join(sorted(signatures)) or "none"
            ),
            "Pass --signature with one of the names above.",
        )
    return loaded, signatures[signature_key]


def describe_inputs(fn: Any) -> List[TensorInfo]:
    """The signature's inputs as TensorInfo (None for unknown dims), sorted by name."""
    _, kwargs = fn.structured_input_signature
    out = []
    for name in sorted(kwargs):
        spec = kwargs[name]
        shape = None if spec.shape.rank is None else list(spec.shape.as_list())
        out.append(TensorInfo(name=name, dtype=spec.dtype.name, shape=shape or []))
    return out


def describe_outputs(fn: Any) -> List[TensorInfo]:
    """The signature's outputs as TensorInfo, sorted by name."""
    outputs = fn.structured_outputs
    out = []
    for name in sorted(outputs):
        spec = outputs[name]
        shape = None if spec.shape.rank is None else list(spec.shape.as_list())
        out.append(TensorInfo(name=name, dtype=spec.dtype.name, shape=shape or []))
    return out


def concrete_shape(
    info: TensorInfo, batch_size: int, overrides: Mapping[str, Sequence[int]]
) -> List[int]:
    """Resolve an input's shape: an override wins; else the first unknown dim takes the batch
    size and any other unknown dim is an error naming the fix."""
    if info.name in overrides:
        dims = [int(d) for d in overrides[info.name]]
        if info.shape and len(dims) != len(info.shape):
            raise AgentError(
                f"Input {info.name!r} has rank {len(info.shape)} "
                f"but the shape given for it is {dims}.",
                "Give one size per dimension, e.g. --input-shape {}={}".format(
                    info.name, ",".join("1" if d is None else str(d) for d in info.shape)
                ),
            )
        if dims and (info.shape and info.shape[0] is None):
            dims[0] = batch_size
        return dims
    dims = []
    for i, d in enumerate(info.shape):
        if d is not None:
            dims.append(int(d))
        elif i == 0:
            dims.append(batch_size)
        else:
            raise AgentError(
                f"Input {info.name!r} has a dynamic dimension {i} (shape {info.shape}); "
                "its size must be given.",
                f"Pass --input-shape {info.name}=DIMS "
                "(or use a recipe that sets bench input shapes).",
            )
    return dims


def synth_inputs(
    inputs: Sequence[TensorInfo],
    batch_size: int,
    overrides: Optional[Mapping[str, Sequence[int]]] = None,
    seed: int = 0,
) -> Dict[str, np.ndarray]:
    """Random inputs matching the signature (normal floats, small non-negative ints)."""
    rng = np.random.default_rng(seed)
    arrays: Dict[str, np.ndarray] = {}
    for info in inputs:
        shape = concrete_shape(info, batch_size, overrides or {})
        native = numpy_name(info.dtype)
        if native is None:
            raise AgentError(
                f"Input {info.name!r} has dtype {info.dtype}, which cannot be synthesized.",
                "Benchmark with real samples (calibration data) for this model.",
            )
        dtype = np.dtype(native)
        if dtype.kind == "f":
            arrays[info.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            arrays[info.name] = rng.integers(0, 100, size=shape).astype(dtype)
        elif dtype.kind == "b":
            arrays[info.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise AgentError(
                f"Input {info.name!r} has dtype {info.dtype}, which cannot be synthesized."
            )
    return arrays
