"""The TensorRT backend's pycuda code on a real NVIDIA GPU, checked against numpy.

No TensorRT runs here: the "engine" is a device-to-device copy (an identity network), so
what is proven is our side of it: pinned host and device buffers, one stream, the INT8
calibrator's batch feeding (memory-mapped batches into device memory, read back), and
CUDA-event timing with and without H2D/D2H copies. Run on a machine with a GPU and
pycuda:  python3 benchmarks/gpu/pycuda_proof.py [OUT.json]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pycuda.autoinit  # noqa: E402,F401  (creates the context)
import pycuda.driver as cuda  # noqa: E402

from device_agent.backends.cuda_io import BatchFeeder, IOBuffers, time_runs  # noqa: E402
from device_agent.errors import AgentError  # noqa: E402


def _pct(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def round_trips(rng: np.random.Generator) -> Dict[str, Any]:
    spec = {
        "image": ((8, 224, 224, 3), np.float32),
        "ids": ((8, 128), np.int32),
        "half": ((8, 1000), np.float16),
    }
    bufs = IOBuffers(cuda, spec)
    data = {
        "image": rng.standard_normal((8, 224, 224, 3), dtype=np.float32),
        "ids": rng.integers(0, 30000, (8, 128), dtype=np.int32),
        "half": rng.standard_normal((8, 1000)).astype(np.float16),
    }
    for name, array in data.items():
        bufs.put(name, array)
    back = {name: bufs.get(name) for name in data}
    errors = {}
    for bad in (
        ("image", data["image"][:4]),
        ("ids", data["ids"].astype(np.int64)),
        ("nope", data["ids"]),
    ):
        try:
            bufs.put(*bad)
            errors[bad[0]] = "accepted"
        except AgentError as exc:
            errors[bad[0]] = exc.message
    bufs.free()
    return {
        "exact": {n: bool(np.array_equal(back[n], data[n])) for n in data},
        "bytes": {n: int(a.nbytes) for n, a in data.items()},
        "refused": errors,
    }


def calibrator_feeding(rng: np.random.Generator) -> Dict[str, Any]:
    """Eight calibration batches from a memory-mapped file, fed as get_batch would."""
    batch, batches = 4, 8
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "calib.npy")
        np.save(path, rng.standard_normal((batch * batches, 96, 96, 3), dtype=np.float32))
        samples = np.load(path, mmap_mode="r")
        feeder = BatchFeeder(cuda, {"input_1": ((batch, 96, 96, 3), np.float32)})
        same = []
        t0 = time.perf_counter()
        for i in range(batches):
            want = np.asarray(samples[i * batch : (i + 1) * batch])
            (ptr,) = feeder.feed({"input_1": want})
            got = np.empty_like(want)
            cuda.memcpy_dtoh(got, ptr)  # read back from the address TensorRT is given
            same.append(bool(np.array_equal(got, want)))
        seconds = time.perf_counter() - t0
        try:
            feeder.feed({"other": want})
            missing = "accepted"
        except AgentError as exc:
            missing = exc.message
        feeder.free()
    return {
        "batches": batches,
        "all_equal": all(same),
        "per_batch": same,
        "seconds": round(seconds, 4),
        "missing_input": missing,
    }


def identity_engine(rng: np.random.Generator) -> Dict[str, Any]:
    shape = (32, 224, 224, 3)
    bufs = IOBuffers(cuda, {"in": (shape, np.float32), "out": (shape, np.float32)})
    nbytes = int(np.prod(shape)) * 4
    x = rng.standard_normal(shape, dtype=np.float32)

    def launch(stream: Any) -> None:  # the "engine": out = in
        cuda.memcpy_dtod_async(bufs.device["out"], bufs.device["in"], nbytes, stream)

    wall0 = time.perf_counter()
    with_copies = time_runs(
        cuda,
        bufs,
        launch,
        iterations=50,
        warmup=5,
        inputs={"in": x},
        outputs=["out"],
        transfers=True,
    )
    wall_with = time.perf_counter() - wall0
    out_ok = bool(np.array_equal(bufs.host["out"], x))
    wall0 = time.perf_counter()
    no_copies = time_runs(
        cuda, bufs, launch, iterations=50, warmup=5, inputs={"in": x}, transfers=False
    )
    wall_without = time.perf_counter() - wall0
    out_ok = out_ok and bool(np.array_equal(bufs.get("out"), x))
    bufs.free()
    mb = nbytes / 1e6
    return {
        "tensor_mb": round(mb, 1),
        "output_equals_input": out_ok,
        "with_transfers_ms": {
            "p50": _pct(with_copies, 50),
            "p99": _pct(with_copies, 99),
            "mean": float(np.mean(with_copies)),
        },
        "without_transfers_ms": {
            "p50": _pct(no_copies, 50),
            "p99": _pct(no_copies, 99),
            "mean": float(np.mean(no_copies)),
        },
        "events_sum_vs_wall": {
            "with": [round(sum(with_copies) / 1e3, 4), round(wall_with, 4)],
            "without": [round(sum(no_copies) / 1e3, 4), round(wall_without, 4)],
        },
        "d2d_gb_per_s": round(2 * mb / 1e3 / (_pct(no_copies, 50) / 1e3), 1),
    }


def event_accuracy() -> Dict[str, Any]:
    """CUDA events against the host clock, on a kernel that spins for a known time."""
    try:
        from pycuda.compiler import SourceModule

        mod = SourceModule("""
        __global__ void spin(long long cycles) {
            long long start = clock64();
            while (clock64() - start < cycles) { }
        }""")
    except Exception as exc:  # no nvcc: say so, the rest stands
        return {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
    spin = mod.get_function("spin")
    stream = cuda.Stream()
    start, end = cuda.Event(), cuda.Event()
    rows = []
    for cycles in (10**6, 10**7, 10**8):
        start.record(stream)
        spin(np.int64(cycles), block=(1, 1, 1), grid=(1, 1), stream=stream)
        end.record(stream)
        t0 = time.perf_counter()
        end.synchronize()
        host_ms = (time.perf_counter() - t0) * 1e3
        rows.append(
            {
                "cycles": cycles,
                "event_ms": round(start.time_till(end), 4),
                "host_wait_ms": round(host_ms, 4),
            }
        )
    return {"spin": rows}


def main() -> None:
    rng = np.random.default_rng(0)
    dev = cuda.Context.get_device()
    report = {
        "device": dev.name(),
        "compute_capability": ".".join(map(str, dev.compute_capability())),
        "cuda_driver": cuda.get_driver_version(),
        "pycuda": getattr(__import__("pycuda"), "VERSION_TEXT", "?"),
        "numpy": np.__version__,
        "round_trips": round_trips(rng),
        "calibrator_feeding": calibrator_feeding(rng),
        "identity_engine": identity_engine(rng),
        "event_accuracy": event_accuracy(),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    ok = (
        all(report["round_trips"]["exact"].values())
        and all(v != "accepted" for v in report["round_trips"]["refused"].values())
        and report["calibrator_feeding"]["all_equal"]
        and report["identity_engine"]["output_equals_input"]
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
