"""Benchmark statistics and the timing loop (driven by a deterministic clock)."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent.bench import NOISY_CV, bench_run, latency_stats, time_calls
from device_agent.protocol import BenchOptions


def test_percentiles_follow_linear_interpolation() -> None:
    samples = list(range(1, 101))  # 1..100 ms
    s = latency_stats(samples)
    # linear interpolation at rank q*(n-1): p50 -> 50.5, p90 -> 90.1, p99 -> 99.01
    for q, got in ((50, s.p50), (90, s.p90), (95, s.p95), (99, s.p99)):
        rank = q / 100 * (len(samples) - 1)
        lo = int(rank)
        expected = samples[lo] + (rank - lo) * (samples[lo + 1] - samples[lo])
        assert got == pytest.approx(expected)
    assert s.mean == pytest.approx(sum(samples) / len(samples))
    assert (s.min, s.max) == (1, 100)
    var = sum((x - s.mean) ** 2 for x in samples) / (len(samples) - 1)
    assert s.std == pytest.approx(var**0.5)
    assert s.cv == pytest.approx(s.std / s.mean)


def test_constant_samples_have_no_spread() -> None:
    s = latency_stats([2.5] * 7)
    assert s.std == 0 and s.cv == 0 and s.p99 == 2.5


def test_empty_samples_are_refused() -> None:
    with pytest.raises(ValueError):
        latency_stats([])


class FakeClock:
    """Each call() advances time by the next step; reading the clock costs nothing."""

    def __init__(self, steps: list[float]) -> None:
        self.now = 0.0
        self.steps = steps
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += self.steps[self.calls % len(self.steps)]
        self.calls += 1


def test_iteration_bound_run_times_each_call() -> None:
    clock = FakeClock([0.002, 0.004])
    opts = BenchOptions(warmup_iterations=3, warmup_seconds=0.0, iterations=20)
    samples, wall = time_calls(clock.call, opts, clock=clock)
    assert len(samples) == 20
    assert clock.calls == 23  # 3 warm-up calls are not timed
    assert sorted(set(round(s, 6) for s in samples)) == [2.0, 4.0]
    assert wall == pytest.approx(sum(samples) / 1000)


def test_duration_bound_run_respects_min_iterations_and_warmup_time() -> None:
    clock = FakeClock([0.05])
    opts = BenchOptions(
        warmup_iterations=1, warmup_seconds=0.2, duration_seconds=0.1, min_iterations=10
    )
    samples, wall = time_calls(clock.call, opts, clock=clock)
    assert clock.calls - len(samples) == 4  # warm-up ran until 0.2 s had passed
    assert len(samples) == 10  # 0.1 s would be 2 calls, but at least 10 are timed
    opts = BenchOptions(
        warmup_iterations=0, warmup_seconds=0.0, duration_seconds=2.0, min_iterations=1
    )
    clock = FakeClock([0.05])
    samples, _ = time_calls(clock.call, opts, clock=clock)
    assert len(samples) == pytest.approx(2.0 / 0.05, abs=1)


def test_bench_run_throughput_and_noise_flag() -> None:
    calls = []
    opts = BenchOptions(warmup_iterations=0, warmup_seconds=0.0, iterations=30)
    run = bench_run(lambda: calls.append(1), 8, opts)
    assert run.iterations == 30 and len(calls) == 30
    assert run.throughput_per_s == pytest.approx(8 * 30 / run.wall_seconds)
    assert run.noisy == (run.latency_ms.cv > NOISY_CV)
    noisy = latency_stats(list(np.r_[np.ones(50), np.full(5, 10.0)]))
    assert noisy.cv > NOISY_CV
