"""Harness overhead: edge's benchmark loop against a bare timing loop, same model, same
process, same inputs. Prints both p50s and their ratio (target: within a few percent).

    make bench-harness            # or: .venv/bin/python benchmarks/harness_overhead.py [MODEL]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from device_agent.bench import bench_run
from device_agent.protocol import BenchOptions
from device_agent.signature import describe_inputs, load_signature, synth_inputs

ROUNDS = 5
ITERATIONS = 400


def bare_p50(call, iterations: int) -> float:
    for _ in range(20):
        call()
    samples = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    import tensorflow as tf

    if len(sys.argv) > 1:
        model = Path(sys.argv[1])
    else:
        from edge.ops.demo_model import build_mnist_model

        model = build_mnist_model(Path(tempfile.mkdtemp()) / "mnist", samples=512).path
    _, fn = load_signature(str(model), "serving_default")
    arrays = synth_inputs(describe_inputs(fn), 1)
    tensors = {k: tf.constant(v) for k, v in arrays.items()}

    def call() -> None:
        for out in fn(**tensors).values():
            out.numpy()

    options = BenchOptions(
        iterations=ITERATIONS, warmup_iterations=20, warmup_seconds=0.0, telemetry=False
    )
    bare, edge = [], []
    for _ in range(ROUNDS):  # interleave so drift hits both alike
        bare.append(bare_p50(call, ITERATIONS))
        edge.append(bench_run(call, 1, options).latency_ms.p50)
    b, e = statistics.median(bare), statistics.median(edge)
    print(f"model: {model}")
    print(f"bare loop p50  {b:.4f} ms (median of {ROUNDS} rounds x {ITERATIONS} calls)")
    print(f"edge bench p50 {e:.4f} ms")
    print(f"ratio edge/bare {e / b:.3f} ({(e / b - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
