"""A numpy stand-in for the few pycuda.driver calls cuda_io and trt_runner make: device
memory is a byte array with an address, copies happen at once (or are recorded while a
stream captures a CUDA graph), and the calls are logged in order. The real pycuda is
exercised on a GPU by benchmarks/gpu/pycuda_proof.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Tuple

import numpy as np


class Alloc:
    """Device memory: a byte array with an address."""

    next_addr = 0x1000

    def __init__(self, n: int) -> None:
        self.data = np.zeros(n, np.uint8)
        self.addr = Alloc.next_addr
        Alloc.next_addr += n + 256
        self.freed = False

    def __int__(self) -> int:
        return self.addr

    def free(self) -> None:
        self.freed = True


class Stream:
    """A stream with a handle; while capturing, queued work is recorded, not run."""

    def __init__(self, cuda: StandinCuda) -> None:
        self.cuda = cuda
        self.handle = 0x5000 + len(cuda.streams)
        cuda.streams[self.handle] = self
        self.capturing: List[Callable[[], None]] = []
        self.is_capturing = False

    def synchronize(self) -> None:
        self.cuda.calls.append("sync")

    def enqueue(self, work: Callable[[], None]) -> None:
        if self.is_capturing:
            self.capturing.append(work)
        else:
            work()


class Graph:
    def __init__(self, cuda: StandinCuda, work: List[Callable[[], None]]) -> None:
        self.cuda, self.work = cuda, work

    def launch(self) -> None:
        self.cuda.calls.append("graph_launch")
        for w in self.work:
            w()


class StandinCudart:
    """The few CUDA runtime calls (cuda-python's cudart) the runner's graph capture makes,
    on the stand-in's streams by handle: (error, value) tuples as cuda-python returns."""

    cudaError_t = SimpleNamespace(cudaSuccess=0)  # noqa: N815 (cuda-python's names)
    cudaStreamCaptureMode = SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)  # noqa: N815

    def __init__(self, cuda: StandinCuda, fail: str = "") -> None:
        self.cuda, self.fail = cuda, fail

    def _err(self, name: str) -> int:
        return 900 if self.fail == name else 0

    def cudaStreamBeginCapture(self, handle: int, mode: int) -> Tuple[int]:  # noqa: N802
        self.cuda.calls.append("begin_capture")
        stream = self.cuda.streams[handle]
        stream.is_capturing, stream.capturing = True, []
        return (self._err("begin"),)

    def cudaStreamEndCapture(self, handle: int) -> Tuple[int, Graph]:  # noqa: N802
        self.cuda.calls.append("end_capture")
        stream = self.cuda.streams[handle]
        stream.is_capturing = False
        return self._err("end"), Graph(self.cuda, list(stream.capturing))

    def cudaGraphInstantiate(self, graph: Graph, flags: int) -> Tuple[int, Graph]:  # noqa: N802
        return self._err("instantiate"), graph

    def cudaGraphLaunch(self, graph: Graph, handle: int) -> Tuple[int]:  # noqa: N802
        if not self._err("launch"):
            graph.launch()
        return (self._err("launch"),)


class StandinCuda:
    """pycuda.driver, done with numpy, recording the order of the calls."""

    def __init__(self) -> None:
        self.calls: List[str] = []
        self.allocs: List[Alloc] = []
        self.streams: Dict[int, Stream] = {}

    def Stream(self) -> Stream:  # noqa: N802 (pycuda's name)
        return Stream(self)

    def pagelocked_empty(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.empty(shape, dtype)

    def mem_alloc(self, n: int) -> Alloc:
        self.allocs.append(Alloc(n))
        return self.allocs[-1]

    def memory_at(self, addr: int) -> Alloc:
        """The live allocation at a device address (what a kernel would touch)."""
        for a in self.allocs:
            if a.addr == int(addr) and not a.freed:
                return a
        raise AssertionError(f"no live device memory at {addr:#x}")

    def memcpy_htod_async(self, dev: Alloc, host: np.ndarray, stream: Stream) -> None:
        self.calls.append("htod")
        src = host.reshape(-1).view(np.uint8)

        def work() -> None:
            dev.data[: src.size] = src

        stream.enqueue(work)

    def memcpy_dtoh_async(self, host: np.ndarray, dev: Alloc, stream: Stream) -> None:
        self.calls.append("dtoh")
        dst = host.reshape(-1).view(np.uint8)

        def work() -> None:
            dst[:] = dev.data[: dst.size]

        stream.enqueue(work)

    def Event(self) -> Any:  # noqa: N802
        cuda = self

        class E:
            def record(self, stream: Any) -> None:
                cuda.calls.append("event")

            def synchronize(self) -> None:
                pass

            def time_till(self, other: Any) -> float:
                return 1.5

        return E()
