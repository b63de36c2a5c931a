"""Implicit INT8 calibration (TensorRT 8.5-10.x): an IInt8EntropyCalibrator2 that feeds
calibration batches into device memory through cuda_io.BatchFeeder and keeps TensorRT's
calibration cache in a file, so identical boards share it and skip calibration.

The class subclasses the REAL `trt.IInt8EntropyCalibrator2` of the module passed in, so it
is defined inside `make_calibrator`. TensorRT 11 removed implicit calibration: refused.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Iterable, Iterator, List, Optional

import numpy as np

from ..errors import AgentError


def read_cache(cache_path: Optional[str]) -> Optional[bytes]:
    """The bytes of an existing, non-empty cache file; None otherwise."""
    if not cache_path:
        return None
    try:
        with open(cache_path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data or None


def write_cache(cache_path: Optional[str], cache: Any) -> None:
    """Write the cache durably: a temp file beside it, fsync, rename, fsync the folder."""
    if not cache_path:
        return
    data = bytes(memoryview(cache))
    folder = os.path.dirname(os.path.abspath(cache_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".calib-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, cache_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def make_calibrator(
    trt: Any,
    feeder: Any,
    batches: Iterable[Dict[str, np.ndarray]],
    batch_size: int,
    cache_path: Optional[str],
) -> Any:
    """An IInt8EntropyCalibrator2 of `trt` that answers `feeder.feed(batch)` (device
    addresses in the engine's input order) for each of `batches`, then None, and reads and
    writes its calibration cache at `cache_path` (None: no cache)."""
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise AgentError(
            f"TensorRT {getattr(trt, '__version__', '?')} has no implicit INT8 calibration "
            "(IInt8EntropyCalibrator2 was removed in TensorRT 11).",
            "Quantize on the host instead (Q/DQ ONNX: --int8-mode qdq).",
        )
    if int(batch_size) < 1:
        raise AgentError(f"Calibration batch size {batch_size} is not positive.", "Use >= 1.")

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        """Feeds `batches` to TensorRT, one per get_batch."""

        def __init__(self) -> None:
            base.__init__(self)  # type: ignore[misc]  # pybind11 needs the base initialised explicitly
            self.feeder = feeder
            self.cache_path = cache_path
            self.batches_fed = 0
            self.error: Optional[BaseException] = None
            self._batches: Iterator[Dict[str, np.ndarray]] = iter(batches)
            self._batch_size = int(batch_size)

        def get_batch_size(self) -> int:
            return self._batch_size

        def get_batch(self, names: List[str], *_: Any) -> Optional[List[int]]:
            """Device addresses of the next batch, ordered like `names`; None at the end.
            An error is kept (TensorRT swallows exceptions in callbacks) and ends it."""
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                ptrs = self.feeder.feed(batch)
                order = list(self.feeder.names)
                unknown = [n for n in names if n not in order]
                if unknown:
                    raise AgentError(
                        f"TensorRT asks for calibration input(s) {', '.join(unknown)}, "
                        f"the data has {', '.join(order)}.",
                        "Give calibration data for the engine's inputs, by name.",
                    )
                self.batches_fed += 1
                return [ptrs[order.index(n)] for n in names]
            except BaseException as e:  # noqa: BLE001 (re-raised by check())
                self.error = e
                return None

        def read_calibration_cache(self, *_: Any) -> Optional[bytes]:
            return read_cache(self.cache_path)

        def write_calibration_cache(self, cache: Any, *_: Any) -> None:
            write_cache(self.cache_path, cache)

        def check(self) -> None:
            """Raise the error a get_batch call kept, if any."""
            if self.error is not None:
                raise self.error

    return EntropyCalibrator()
