"""`edge demo`, the main job, end to end on `local` (what `make demo` runs)."""

from __future__ import annotations

import numpy as np
import pytest
from demo_run import DemoRun

from edge.ops.demo_model import synthetic_digits


def test_synthetic_digits_are_learnable_labels() -> None:
    x, y = synthetic_digits(200, seed=4)
    assert x.shape == (200, 28, 28) and x.dtype == np.float32
    assert set(np.unique(y)) <= set(range(10))
    # the bright band's row encodes the label
    rows = x[:, :, 4:24].mean(axis=2).argmax(axis=1)
    assert np.array_equal((rows - 2) // 2, y)


@pytest.mark.slow
def test_demo_end_to_end(demo_runs: dict[str, DemoRun]) -> None:
    """The session's one human-readable demo (tests/demo_run.py), piped at COLUMNS=80."""
    run = demo_runs["human"]
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert (run.workdir / "mnist_saved_model" / "saved_model.pb").is_file()
    assert (run.workdir / "mnist_converted" / "saved_model.pb").is_file()
    assert "Conversion" in out and "native vs converted" in out
    assert "not built with TensorRT" in out  # says honestly why no engine was built
    assert "On a Jetson" in out
    bench_rows = [line for line in out.splitlines() if "mnist_" in line and "│" in line]
    assert len(bench_rows) == 4  # native and converted, batch 1 and 32
