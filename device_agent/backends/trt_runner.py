"""Run a TensorRT engine plan on the device with pycuda (8.5+ name-based I/O):
pinned host buffers, device buffers, one stream, `execute_async_v3`, optional CUDA graph.

Buffers are sized by element capacity per tensor and grow (are reallocated) when a dynamic
input's shape needs more; every run binds the input shapes with `set_input_shape`.
`trt` and `cuda` (pycuda.driver, after a context exists) are imported lazily, or passed in.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import AgentError
from ..protocol import TensorInfo
from . import trt_api, trt_engine
from .base import ModelRunner
from .cuda_io import IOBuffers


def import_pycuda() -> Any:
    """pycuda.driver with a context on device 0 (pycuda.autoinit)."""
    try:
        import pycuda.autoinit  # noqa: F401
        import pycuda.driver as cuda
    except ImportError as e:
        raise AgentError(
            f"pycuda does not import: {e}.",
            "Install pycuda on the device (pip install pycuda, with CUDA's nvcc on PATH).",
        ) from e
    return cuda


def import_cudart() -> Any:
    """The CUDA runtime of cuda-python (CUDA graphs: pycuda has no graph API)."""
    try:
        from cuda.bindings import runtime as cudart  # type: ignore[import-not-found]  # 12.6+
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[import-not-found]  # older
        except ImportError as e:
            raise AgentError(
                f"CUDA graphs need cuda-python, which does not import: {e}.",
                "pip install cuda-python on the device, or bench without --cuda-graph.",
            ) from e
    return cudart


def _ok(rt: Any, call: str, result: Any) -> Any:
    """The value of a cuda-python call's (error, value...) tuple; AgentError on an error."""
    items = result if isinstance(result, tuple) else (result,)
    if int(items[0]) != int(rt.cudaError_t.cudaSuccess):
        raise AgentError(
            f"CUDA graph capture failed: {call} returned {items[0]!r}.",
            "Bench without --cuda-graph (some engines cannot be captured).",
        )
    return items[1] if len(items) > 1 else None


class _GraphLaunch:
    """An instantiated CUDA graph, launched on the stream it was captured on."""

    def __init__(self, rt: Any, graph_exec: Any, handle: int) -> None:
        self.rt, self.graph_exec, self.handle = rt, graph_exec, handle

    def launch(self) -> None:
        _ok(self.rt, "cudaGraphLaunch", self.rt.cudaGraphLaunch(self.graph_exec, self.handle))


class EngineRunner(ModelRunner):
    """A loaded engine plan: named numpy inputs in, named numpy outputs out.

    `meta` keys (all optional): `dla_core` (int), `cuda_graph` (bool: replay the inference
    as a captured CUDA graph in timed_call; needs cuda-python, or `cudart` passed in),
    `transfers` (bool, default True: timed_call includes the H2D/D2H copies; False: inputs
    are staged once, outside timing)."""

    def __init__(
        self,
        plan_path: str,
        meta: Optional[Mapping[str, Any]] = None,
        trt: Any = None,
        cuda: Any = None,
        cudart: Any = None,
    ) -> None:
        meta = dict(meta or {})
        self.trt = trt if trt is not None else trt_api.import_tensorrt()
        self.version = trt_api.version_of(self.trt)
        self.cuda = cuda if cuda is not None else import_pycuda()
        self.transfers = bool(meta.get("transfers", True))
        self.cuda_graph = bool(meta.get("cuda_graph", False))
        self.cudart = cudart
        try:
            with open(plan_path, "rb") as f:
                plan = f.read()
        except OSError as e:
            raise AgentError(f"Cannot read the engine plan {plan_path}: {e}.", "Rebuild it.") from e
        self.logger = trt_api.make_logger(self.trt)
        dla = meta.get("dla_core")
        self.engine, self.runtime = trt_engine.deserialize(
            self.trt, self.logger, plan, None if dla is None else int(dla)
        )
        self.context = trt_engine.create_context(self.engine)
        self.tensors = trt_engine.io_tensors(self.trt, self.engine)
        self.inputs = [_info(t) for t in self.tensors if t.is_input]
        self.outputs = [_info(t) for t in self.tensors if not t.is_input]
        self.stream = self.cuda.Stream()
        self.buffers: Optional[IOBuffers] = None
        self.capacity: Dict[str, int] = {}
        self.allocations = 0
        self._graph: Any = None

    # -- shapes and buffers --------------------------------------------------------------

    def _bind(self, feed: Mapping[str, np.ndarray]) -> Dict[str, Tuple[int, ...]]:
        """Check `feed`, set the input shapes, and return every tensor's shape."""
        names = [t.name for t in self.tensors if t.is_input]
        missing = [n for n in names if n not in feed]
        extra = sorted(set(feed) - set(names))
        if missing or extra:
            raise AgentError(
                f"The engine takes {', '.join(names)}; the feed "
                + (f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(extra)}")
                + ".",
                "Feed exactly the model's inputs, by name.",
            )
        shapes: Dict[str, Tuple[int, ...]] = {}
        for t in self.tensors:
            if not t.is_input:
                continue
            array = feed[t.name]
            if array.dtype != t.dtype:
                raise AgentError(
                    f"{t.name}: got {array.dtype}, the engine takes {t.dtype}.",
                    "Cast the data to the engine's input type.",
                )
            shape = tuple(int(d) for d in array.shape)
            if len(shape) != len(t.shape) or any(e >= 0 and e != d for e, d in zip(t.shape, shape)):
                raise AgentError(
                    f"{t.name}: got shape {shape}, the engine takes {t.shape} (-1: any).",
                    "Feed batches of the shape the engine was built for.",
                )
            trt_engine.set_input_shape(self.context, t.name, shape)
            shapes[t.name] = shape
        for t in self.tensors:
            if not t.is_input:
                shapes[t.name] = trt_engine.output_shape(self.context, t.name)
        return shapes

    def _ensure(self, shapes: Mapping[str, Tuple[int, ...]]) -> None:
        """(Re)allocate the buffers when a tensor needs more elements than they hold."""
        need = {n: max(1, int(np.prod(s, dtype=np.int64))) for n, s in shapes.items()}
        if self.buffers is not None and all(need[n] <= self.capacity[n] for n in need):
            return
        capacity = {n: max(need[n], self.capacity.get(n, 0)) for n in need}
        if self.buffers is not None:
            self.buffers.free()
            self.buffers = None
        dtypes = {t.name: t.dtype for t in self.tensors}
        self.buffers = IOBuffers(
            self.cuda, {n: ((c,), dtypes[n]) for n, c in capacity.items()}, self.stream
        )
        self.capacity = capacity
        self.allocations += 1
        self._graph = None  # a captured graph holds the old addresses
        trt_engine.set_addresses(self.context, {n: self.buffers.ptr(n) for n in capacity})

    # -- copies and launches ---------------------------------------------------------------

    def _stage(self, feed: Mapping[str, np.ndarray]) -> None:
        assert self.buffers is not None
        for t in self.tensors:
            if t.is_input:
                array = np.ascontiguousarray(feed[t.name]).reshape(-1)
                host = self.buffers.host[t.name][: array.size]
                np.copyto(host, array)
                self.cuda.memcpy_htod_async(self.buffers.device[t.name], host, self.stream)

    def _fetch(self, shapes: Mapping[str, Tuple[int, ...]]) -> None:
        assert self.buffers is not None
        for t in self.tensors:
            if not t.is_input:
                n = int(np.prod(shapes[t.name], dtype=np.int64))
                host = self.buffers.host[t.name][:n]
                self.cuda.memcpy_dtoh_async(host, self.buffers.device[t.name], self.stream)

    def _results(self, shapes: Mapping[str, Tuple[int, ...]]) -> Dict[str, np.ndarray]:
        assert self.buffers is not None
        out = {}
        for t in self.tensors:
            if not t.is_input:
                shape = shapes[t.name]
                n = int(np.prod(shape, dtype=np.int64))
                out[t.name] = np.array(self.buffers.host[t.name][:n], copy=True).reshape(shape)
        return out

    def _launch(self) -> None:
        trt_engine.execute(self.context, int(self.stream.handle))

    def run(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One inference: copies in, execute_async_v3, copies out, then wait."""
        shapes = self._bind(feed)
        self._ensure(shapes)
        self._stage(feed)
        self._launch()
        self._fetch(shapes)
        self.stream.synchronize()
        return self._results(shapes)

    def timed_call(self, feed: Dict[str, np.ndarray]) -> Callable[[], Any]:
        """A blocking call for the bench loop, inputs staged once. With `transfers` it
        also copies the inputs in and the outputs out; with `cuda_graph` it replays the
        inference (and copies) as one captured CUDA graph."""
        shapes = self._bind(feed)
        self._ensure(shapes)
        self._stage(feed)
        self._launch()  # TensorRT allocates lazily on the first run: before any capture
        self.stream.synchronize()

        def once() -> None:
            if self.transfers:
                self._stage(feed)
            self._launch()
            if self.transfers:
                self._fetch(shapes)

        if not self.cuda_graph:

            def call() -> None:
                once()
                self.stream.synchronize()

            return call
        graph = self._capture(once)

        def replay() -> None:
            graph.launch()
            self.stream.synchronize()

        return replay

    def _capture(self, body: Callable[[], None]) -> Any:
        """Capture `body`'s work on the stream into an instantiated CUDA graph. pycuda has
        no graph API (2026.1's Stream has no capture), so this is the CUDA runtime's
        (cuda-python) on pycuda's stream handle, in the context pycuda made current."""
        rt = self.cudart if self.cudart is not None else import_cudart()
        handle = int(self.stream.handle)
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        _ok(rt, "cudaStreamBeginCapture", rt.cudaStreamBeginCapture(handle, mode))
        try:
            body()
        finally:
            graph = _ok(rt, "cudaStreamEndCapture", rt.cudaStreamEndCapture(handle))
        self._graph = _GraphLaunch(
            rt, _ok(rt, "cudaGraphInstantiate", rt.cudaGraphInstantiate(graph, 0)), handle
        )
        return self._graph

    def configure(self, transfers: bool = True, cuda_graph: bool = False) -> List[str]:
        """Time with or without the copies, replayed as a CUDA graph or not."""
        self.transfers, self.cuda_graph = bool(transfers), bool(cuda_graph)
        self._graph = None
        return []

    def close(self) -> None:
        """Free the buffers and drop the engine (Jetson memory is shared)."""
        if self.buffers is not None:
            self.buffers.free()
            self.buffers = None
        self._graph = None
        self.context = None
        self.engine = None
        self.runtime = None


def _info(t: trt_engine.IoTensor) -> TensorInfo:
    return TensorInfo(t.name, t.dtype.name, [None if d < 0 else int(d) for d in t.shape])


__all__: List[str] = ["EngineRunner", "import_cudart", "import_pycuda"]
