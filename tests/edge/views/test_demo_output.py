"""`edge demo` as a user reads it, piped with COLUMNS=80: the benchmark rows say which
model is native and which converted (and how), the build cell says what really happened,
and nothing is cut."""

from __future__ import annotations

import pytest
from demo_run import DemoRun

from edge.history.store import RunStore


@pytest.mark.slow
def test_demo_names_native_and_converted_rows(
    demo_runs: dict[str, DemoRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = demo_runs["human"]  # the session's one, piped at COLUMNS=80 (tests/demo_run.py)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "…" not in out
    monkeypatch.setenv("EDGE_HOME", str(run.home))  # the history that run recorded
    with RunStore() as store:  # what the conversion did, as recorded
        (conv,) = store.list(kind="convert")
    backend, precision = conv.metrics["backend"], conv.metrics["precision"]
    lines = out.splitlines()
    native = [ln for ln in lines if "│" in ln and "mnist_saved_model (native)" in ln]
    label = f"mnist_converted (converted: {backend} backend, {precision})"
    converted = [ln for ln in lines if "│" in ln and label in ln]
    assert len(native) == 2 and len(converted) == 2, out  # batch 1 and 32 each
    conversion = next(ln for ln in lines if "│" in ln and "succeeded" in ln)
    engines = conv.metrics["summary"]["engines"]
    if backend == "native":
        assert "no engines (native)" in conversion
    elif not engines:
        assert "no engines" in conversion
    else:
        assert "built" in conversion or "first run" in conversion
