"""Benchmark loop and latency statistics (the loop takes any callable; TF stays outside)."""

from __future__ import annotations

import time
from typing import Any, Callable, List, Sequence, Tuple

import numpy as np

from .protocol import BenchOptions, BenchRun, LatencyStats

# A run whose coefficient of variation exceeds this is flagged noisy.
NOISY_CV = 0.10


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles (linear interpolation), mean, min, max, std and CV of latencies in ms."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return LatencyStats(
        p50=float(p50),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        mean=mean,
        min=float(arr.min()),
        max=float(arr.max()),
        std=std,
        cv=(std / mean) if mean > 0 else 0.0,
    )


def time_calls(
    call: Callable[[], Any], options: BenchOptions, clock: Callable[[], float] = time.perf_counter
) -> Tuple[List[float], float]:
    """Warm up (by count and time), then time `call` until the iteration count or duration is
    reached. `call` must block until its result is complete. Returns (latencies in ms, wall
    seconds of the timed loop)."""
    start = clock()
    done = 0
    while done < options.warmup_iterations or clock() - start < options.warmup_seconds:
        call()
        done += 1
    samples = []
    begin = clock()
    while True:
        t0 = clock()
        call()
        samples.append((clock() - t0) * 1000.0)
        if options.iterations is not None:
            if len(samples) >= options.iterations:
                break
        elif len(samples) >= options.min_iterations and clock() - begin >= options.duration_seconds:
            break
    return samples, clock() - begin


def bench_run(call: Callable[[], Any], batch_size: int, options: BenchOptions) -> BenchRun:
    """One timed run at one batch size. Throughput = samples / wall time of the timed loop."""
    samples, wall = time_calls(call, options)
    stats = latency_stats(samples)
    return BenchRun(
        batch_size=batch_size,
        iterations=len(samples),
        latency_ms=stats,
        throughput_per_s=(batch_size * len(samples) / wall) if wall > 0 else 0.0,
        wall_seconds=wall,
        noisy=stats.cv > NOISY_CV,
    )
