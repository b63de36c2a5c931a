"""Conversion backends by name, and the `auto` choice built on their probes.

`tftrt` (TF-TRT), `tensorrt` (an engine from the host's ONNX export, with TensorRT's
Python API) and `native` (TensorFlow without TensorRT) are registered here; a new
backend is a `Backend` subclass registered the same way (`register`), and the convert,
bench and validate jobs reach it through this registry only. Stdlib only at import time.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import AgentError
from .base import Backend, Capability, ModelRunner
from .native import NativeBackend
from .tensorrt import TensorrtBackend
from .tftrt import TftrtBackend, require_tensorrt, tensorrt_status

__all__ = [
    "AUTO",
    "FALLBACK",
    "artifact_backend",
    "Backend",
    "Capability",
    "ModelRunner",
    "check_artifact",
    "get",
    "names",
    "open_artifact",
    "probe_all",
    "register",
    "require_tensorrt",
    "select_backend",
    "tensorrt_status",
    "unregister",
]

AUTO = "auto"
#: What `auto` falls back to when no engine-building backend can run.
FALLBACK = "native"

_BACKENDS: Dict[str, Backend] = {}
_AUTO_ORDER: List[str] = []  # the backends `auto` tries, best first


def register(backend: Backend, auto_rank: Optional[int] = None) -> Backend:
    """Add `backend` under its name (replacing one of that name). With `auto_rank`, `auto`
    tries it at that position of its preference list (0: first)."""
    if not backend.name or backend.name == AUTO:
        raise ValueError(f"a backend needs a name other than {AUTO!r}")
    unregister(backend.name)
    _BACKENDS[backend.name] = backend
    if auto_rank is not None:
        _AUTO_ORDER.insert(auto_rank, backend.name)
    return backend


def unregister(name: str) -> None:
    """Remove the backend `name` (no error when it is not registered)."""
    _BACKENDS.pop(name, None)
    while name in _AUTO_ORDER:
        _AUTO_ORDER.remove(name)


def names() -> List[str]:
    """Registered backend names, in registration order."""
    return list(_BACKENDS)


def get(name: str) -> Backend:
    """The backend registered as `name`."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise AgentError(
            f"Unknown backend {name!r}.", f"Use {AUTO} or one of: {', '.join(_BACKENDS)}."
        ) from None


def probe_all() -> Dict[str, Capability]:
    """Every registered backend's capability on this device."""
    return {name: backend.probe() for name, backend in _BACKENDS.items()}


def select_backend(requested: str) -> Tuple[str, Optional[str]]:
    """Resolve `auto` to the first backend of its preference list that can run here (tftrt
    where TF-TRT really loads, else tensorrt where the `tensorrt` module imports), else
    `native`; a named backend must be able to run.

    Returns (backend, fallback_reason); the reason is None unless `auto` fell back.
    Raises BackendUnavailable, naming the fix, for a named backend that cannot run."""
    if requested != AUTO:
        get(requested).require()
        return requested, None
    reasons = []
    for name in _AUTO_ORDER:
        capability = _BACKENDS[name].probe()
        if capability.available:
            return name, None
        reasons.append(capability.reason)
    why = "; ".join(reasons)
    return FALLBACK, f"auto: {why}; used the {FALLBACK} backend (no TensorRT engines)"


def _owner(path: str) -> Optional[Backend]:
    """The backend whose own artifact format `path` is (None: a SavedModel, or nothing)."""
    return next((b for b in _BACKENDS.values() if b.claims(path)), None)


def artifact_backend(path: str) -> Optional[str]:
    """The backend whose own artifact `path` is (None: a SavedModel)."""
    owner = _owner(os.path.abspath(path)) if os.path.isdir(path) else None
    return owner.name if owner is not None else None


def check_artifact(path: Optional[str], what: str = "model") -> str:
    """`path`, once it is known to be a directory some backend can load: a backend's own
    artifact, or else a SavedModel (AgentError naming the fix otherwise)."""
    from ..savedmodel_meta import check_model_dir

    if path and os.path.isdir(path) and _owner(os.path.abspath(path)) is not None:
        return path
    return check_model_dir(path, what)


def open_artifact(
    path: str, signature_key: str, tags: Optional[Sequence[str]] = None
) -> ModelRunner:
    """Load a model or converted artifact with the backend whose format it is; a
    SavedModel (tftrt's and native's artifact, and every source model) runs natively."""
    owner = _owner(os.path.abspath(path)) or get(FALLBACK)
    return owner.load(path, signature_key, tags)


register(TftrtBackend(), auto_rank=0)
register(TensorrtBackend(), auto_rank=1)
register(NativeBackend())
