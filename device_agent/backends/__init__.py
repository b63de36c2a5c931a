"""Conversion backends: `tftrt` (TF-TRT) and `native` (TensorFlow without TensorRT)."""

from __future__ import annotations

from typing import Optional, Tuple

from .tftrt import require_tensorrt, tensorrt_status


def select_backend(requested: str) -> Tuple[str, Optional[str]]:
    """Resolve `auto` to `tftrt` where TensorRT is linked, else `native`.

    Returns (backend, fallback_reason); the reason is None unless `auto` fell back.
    """
    if requested == "native":
        return "native", None
    if requested == "tftrt":
        require_tensorrt()
        return "tftrt", None
    enabled, why = tensorrt_status()
    if enabled:
        return "tftrt", None
    return "native", f"auto: {why}; used the native backend (no TensorRT engines)"
