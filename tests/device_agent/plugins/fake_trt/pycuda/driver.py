"""pycuda.driver on numpy: device memory is a registry of address -> bytearray.

Only pycuda.driver's real names are defined (test_fake_trt_conformance.py checks them
against a list confirmed from pycuda's docs). `read_device`/`write_device` (not pycuda's)
let the fake tensorrt read and write device memory by address.
"""

from __future__ import annotations

import bisect
import itertools
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

_ALIGN = 256
_TOTAL = 8 << 30  # the memory mem_get_info reports

_memory: Dict[int, bytearray] = {}  # base address -> bytes
_bases: List[int] = []  # sorted base addresses
_next_address = 0x7F0000000000
_handles = itertools.count(0x5000)
_initialized = False
_contexts: List[Context] = []


class Error(Exception):
    """pycuda.driver.Error."""


class LogicError(Error):
    """pycuda.driver.LogicError: a call made in a wrong state (freed memory, no init)."""


class MemoryError(Error):  # noqa: A001 (pycuda's name)
    """pycuda.driver.MemoryError: out of device memory."""


def _need_init() -> None:
    if not _initialized:
        raise LogicError("cuInit failed: call pycuda.driver.init() first")


def init(flags: int = 0) -> None:
    """cuInit."""
    global _initialized
    _initialized = True


def _find(address: int, nbytes: int) -> Tuple[bytearray, int]:
    """The allocation holding [address, address + nbytes), and the offset in it."""
    i = bisect.bisect_right(_bases, address) - 1
    if i >= 0:
        base = _bases[i]
        buf = _memory[base]
        offset = address - base
        if offset + nbytes <= len(buf):
            return buf, offset
    raise LogicError(f"cuMemcpy failed: invalid device address 0x{address:x} (+{nbytes})")


def read_device(address: int, nbytes: int) -> bytes:
    """The `nbytes` of device memory at `address` (for the fake tensorrt)."""
    buf, offset = _find(int(address), nbytes)
    return bytes(buf[offset : offset + nbytes])


def write_device(address: int, data: bytes) -> None:
    """Write `data` to device memory at `address` (for the fake tensorrt)."""
    view = memoryview(data).cast("B")
    buf, offset = _find(int(address), len(view))
    buf[offset : offset + len(view)] = view


def allocated_bytes() -> int:
    """Device bytes allocated and not freed (for tests)."""
    return sum(len(b) for b in _memory.values())


class DeviceAllocation:
    """One device allocation: `int()` is its address."""

    def __init__(self, nbytes: int) -> None:
        global _next_address
        self._address = _next_address
        _next_address += (nbytes + _ALIGN) // _ALIGN * _ALIGN + _ALIGN
        _memory[self._address] = bytearray(nbytes)
        bisect.insort(_bases, self._address)
        self._freed = False

    def __int__(self) -> int:
        if self._freed:
            raise LogicError("cannot use a freed DeviceAllocation")
        return self._address

    __index__ = __int__

    def free(self) -> None:
        if not self._freed:
            self._freed = True
            del _memory[self._address]
            _bases.remove(self._address)

    def __del__(self) -> None:
        try:
            self.free()
        except Exception:  # interpreter shutdown
            pass


def mem_alloc(bytes: int) -> DeviceAllocation:  # noqa: A002 (pycuda's name)
    """cuMemAlloc of `bytes` bytes."""
    _need_init()
    size = int(bytes)
    if size < 1:
        raise LogicError("cuMemAlloc failed: invalid argument (size 0)")
    if allocated_bytes() + size > _TOTAL:
        raise MemoryError("cuMemAlloc failed: out of memory")
    return DeviceAllocation(size)


def mem_get_info() -> Tuple[int, int]:
    """(free, total) device bytes."""
    _need_init()
    return _TOTAL - allocated_bytes(), _TOTAL


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    """A host array ("page-locked": here plain numpy)."""
    return np.empty(shape, dtype, order=order)  # type: ignore[call-overload]


def pagelocked_zeros(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    return np.zeros(shape, dtype, order=order)  # type: ignore[call-overload]


def _host_bytes(array: Any) -> bytes:
    return np.ascontiguousarray(array).tobytes()


def memcpy_htod(dest: Any, src: Any) -> None:
    """Copy the host buffer `src` to the device address `dest`."""
    write_device(int(dest), _host_bytes(src))


def memcpy_dtoh(dest: np.ndarray, src: Any) -> None:
    """Copy device memory at `src` into the host array `dest` (its size in bytes)."""
    if not dest.flags.c_contiguous:
        raise LogicError("memcpy_dtoh needs a contiguous host array")
    dest.reshape(-1).view(np.uint8)[:] = np.frombuffer(read_device(int(src), dest.nbytes), np.uint8)


def memcpy_htod_async(dest: Any, src: Any, stream: Optional[Stream] = None) -> None:
    """As memcpy_htod (the fake's streams run each call at once)."""
    memcpy_htod(dest, src)


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Optional[Stream] = None) -> None:
    memcpy_dtoh(dest, src)


class Stream:
    """A CUDA stream: `handle` is what execute_async_v3 takes. Work runs when queued."""

    def __init__(self, flags: int = 0) -> None:
        _need_init()
        self.handle = next(_handles)

    def synchronize(self) -> None:
        pass

    def is_done(self) -> bool:
        return True


class Event:
    """A CUDA event; `time_till` is the wall time between two records, in ms."""

    def __init__(self, flags: int = 0) -> None:
        _need_init()
        self._at: Optional[float] = None

    def record(self, stream: Optional[Stream] = None) -> Event:
        self._at = time.perf_counter()
        return self

    def synchronize(self) -> Event:
        return self

    def query(self) -> bool:
        return True

    def _time(self) -> float:
        if self._at is None:
            raise LogicError("cuEventElapsedTime failed: the event was never recorded")
        return self._at

    def time_till(self, event: Event) -> float:
        return (event._time() - self._time()) * 1000.0

    def time_since(self, event: Event) -> float:
        return (self._time() - event._time()) * 1000.0


class Device:
    """One fake GPU (there is one: device 0)."""

    def __init__(self, number: int) -> None:
        _need_init()
        if not 0 <= int(number) < Device.count():
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self.number = int(number)

    @staticmethod
    def count() -> int:
        _need_init()
        return 1

    def name(self) -> str:
        return "Fake Orin (pycuda stand-in)"

    def compute_capability(self) -> Tuple[int, int]:
        return (8, 7)

    def total_memory(self) -> int:
        return _TOTAL

    def make_context(self, flags: int = 0) -> Context:
        ctx = Context(self)
        _contexts.append(ctx)
        return ctx


class Context:
    """A CUDA context, current from make_context until pop."""

    def __init__(self, device: Device) -> None:
        self._device = device

    @staticmethod
    def pop() -> None:
        if _contexts:
            _contexts.pop()

    def push(self) -> None:
        _contexts.append(self)

    def detach(self) -> None:
        if self in _contexts:
            _contexts.remove(self)

    @staticmethod
    def synchronize() -> None:
        pass

    @staticmethod
    def get_device() -> Device:
        if not _contexts:
            raise LogicError("cuCtxGetDevice failed: no current context")
        return _contexts[-1]._device
