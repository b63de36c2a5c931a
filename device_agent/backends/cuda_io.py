"""Device memory for the TensorRT backend, through pycuda: the engine runner's pinned host
buffers, device buffers, one stream and CUDA-event timing, and the INT8 calibrator's batch
feeding. pycuda is passed in (`import pycuda.driver as cuda` after a context exists), so
this module imports with numpy alone, and its GPU proof runs it on a real GPU
(benchmarks/gpu/pycuda_proof.py).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import AgentError

#: name -> (shape, numpy dtype): one tensor of the engine's I/O
Spec = Dict[str, Tuple[Tuple[int, ...], Any]]


def _nbytes(shape: Sequence[int], dtype: Any) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


class IOBuffers:
    """One pinned host buffer and one device buffer per tensor, and one stream.

    `put` stages an array in its pinned buffer and queues the copy to the device; `get`
    queues the copy back and waits for it. Copies are asynchronous on `stream`, so they
    order with the engine's `execute_async_v3` on the same stream."""

    def __init__(self, cuda: Any, spec: Spec, stream: Any = None) -> None:
        self.cuda = cuda
        self.spec = {
            name: (tuple(int(d) for d in shape), np.dtype(dtype))
            for name, (shape, dtype) in spec.items()
        }
        bad = [n for n, (s, _) in self.spec.items() if any(d < 1 for d in s)]
        if bad:
            raise AgentError(
                f"Buffers need concrete shapes; {', '.join(bad)} has a dynamic or empty dimension.",
                "Pass the shape to run with (--input-shape NAME=D1,D2,...).",
            )
        self.stream = stream if stream is not None else cuda.Stream()
        self.host: Dict[str, np.ndarray] = {}
        self.device: Dict[str, Any] = {}
        try:
            for name, (shape, dtype) in self.spec.items():
                self.host[name] = cuda.pagelocked_empty(shape, dtype)
                self.device[name] = cuda.mem_alloc(max(1, _nbytes(shape, dtype)))
        except Exception:
            self.free()
            raise

    def ptr(self, name: str) -> int:
        """The device address of `name` (what set_tensor_address and get_batch take)."""
        return int(self.device[name])

    def _check(self, name: str, array: np.ndarray) -> None:
        if name not in self.spec:
            raise AgentError(
                f"No tensor named {name!r}; the engine has {', '.join(sorted(self.spec))}.",
                "Use the input names of the model's signature.",
            )
        shape, dtype = self.spec[name]
        if tuple(array.shape) != shape:
            raise AgentError(
                f"{name}: got shape {tuple(array.shape)}, the buffer holds {shape}.",
                "Feed batches of the shape the engine was planned for.",
            )
        if array.dtype != dtype:
            raise AgentError(
                f"{name}: got {array.dtype}, the engine takes {dtype}.",
                "Cast the data to the engine's input type.",
            )

    def put(self, name: str, array: np.ndarray) -> None:
        """Stage `array` in `name`'s pinned buffer and queue its copy to the device."""
        self._check(name, array)
        np.copyto(self.host[name], array)
        self.cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)

    def fetch(self, name: str) -> None:
        """Queue the copy of `name` from the device into its pinned buffer."""
        self.cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)

    def get(self, name: str) -> np.ndarray:
        """`name` copied back from the device (waits for the stream)."""
        self.fetch(name)
        self.stream.synchronize()
        return np.array(self.host[name], copy=True)

    def free(self) -> None:
        for buf in self.device.values():
            buf.free()
        self.device.clear()
        self.host.clear()


class BatchFeeder:
    """What an INT8 calibrator's get_batch does: copy one calibration batch per input into
    device memory and answer the device addresses, in the engine's input order."""

    def __init__(self, cuda: Any, spec: Spec) -> None:
        self.names = list(spec)
        self.buffers = IOBuffers(cuda, spec)

    def feed(self, batch: Dict[str, np.ndarray]) -> List[int]:
        missing = [n for n in self.names if n not in batch]
        if missing:
            raise AgentError(
                f"The calibration batch lacks {', '.join(missing)}.",
                "Give calibration data for every model input.",
            )
        for name in self.names:
            self.buffers.put(name, np.ascontiguousarray(batch[name]))
        self.buffers.stream.synchronize()  # TensorRT reads the memory once get_batch returns
        return [self.buffers.ptr(n) for n in self.names]

    def free(self) -> None:
        self.buffers.free()


def time_runs(
    cuda: Any,
    buffers: IOBuffers,
    launch: Callable[[Any], None],
    iterations: int,
    warmup: int = 10,
    inputs: Optional[Dict[str, np.ndarray]] = None,
    outputs: Sequence[str] = (),
    transfers: bool = True,
) -> List[float]:
    """Milliseconds per run, from CUDA events on the buffers' stream. `launch(stream)`
    queues one inference. With `transfers`, each run also copies `inputs` to the device
    and `outputs` back, and the events time them too; without, the inputs are copied once
    before timing and only the inference is timed."""
    stream = buffers.stream
    inputs = inputs or {}
    if not transfers:
        for name, array in inputs.items():
            buffers.put(name, array)
    start, end = cuda.Event(), cuda.Event()
    times: List[float] = []
    for i in range(warmup + iterations):
        start.record(stream)
        if transfers:
            for name, array in inputs.items():
                buffers.put(name, array)
        launch(stream)
        if transfers:
            for name in outputs:
                buffers.fetch(name)
        end.record(stream)
        end.synchronize()
        if i >= warmup:
            times.append(float(start.time_till(end)))
    return times
