"""The bench job through the real agent: scenarios, telemetry from a tegrastats on PATH
(printing real lines), compare-native, real samples from calibration data."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, agent_cmd, agent_env

from device_agent.protocol import BenchOptions, BenchResult, BenchSpec, Event, JobSpec
from device_agent.telemetry_parse import parse_tegrastats


def real_lines() -> list[str]:
    text = (DATA / "tegrastats" / "samples.txt").read_text()
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture
def fake_tegrastats(tmp_path: Path) -> tuple[Path, str]:
    """A `tegrastats` that prints one real Orin Nano line at the asked interval."""
    line = next(line for line in real_lines() if "VDD_IN 12479mW" in line)
    tool = tmp_path / "bin" / "tegrastats"
    tool.parent.mkdir()
    tool.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "ms = int(sys.argv[sys.argv.index('--interval') + 1])\n"
        "while True:\n"
        f"    print({line!r}, flush=True)\n"
        "    time.sleep(ms / 1000)\n"
    )
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return tool.parent, line


def run_job(root: Path, spec: JobSpec, path_prefix: Path | None = None) -> BenchResult:
    env = agent_env()
    if path_prefix:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        agent_cmd(root) + ["submit", "-"],
        input=spec.to_json(),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    result = next(e for e in events if e.kind == "result").data["result"]
    assert proc.returncode == 0, result
    return BenchResult.from_dict(result)


def test_single_stream_with_tegrastats_power(
    tmp_path: Path, mnist_model: Path, fake_tegrastats: tuple[Path, str]
) -> None:
    bindir, line = fake_tegrastats
    spec = BenchSpec(
        model=str(mnist_model),
        bench=BenchOptions(
            scenario="single-stream", duration_seconds=1.0, telemetry_interval_ms=50
        ),
    )
    result = run_job(tmp_path / "root", spec, bindir)
    (run,) = result.runs
    assert run.batch_size == 1 and result.scenario == "single-stream"
    assert f"{run.latency_ms.p90:.3f}" in result.headline
    assert run.telemetry_source == "tegrastats" and len(run.telemetry) >= 5
    expected = parse_tegrastats(line)
    assert run.power.avg_mw == pytest.approx(expected.power_in_mw)
    energy = expected.power_in_mw * run.wall_seconds / (run.iterations * run.batch_size)
    assert run.power.energy_per_inference_mj == pytest.approx(energy, rel=0.05)
    assert run.gpu_load_avg_pct == expected.gpu_load_pct
    assert run.temp_peak_c == max(v for k, v in expected.temperatures_c.items())
    assert run.throttled is False


def test_offline_sweep_compare_native_and_real_samples(tmp_path: Path, mnist_model: Path) -> None:
    calib = tmp_path / "samples"
    calib.mkdir()
    np.save(
        calib / "flatten_input.npy", np.random.default_rng(0).random((20, 28, 28), dtype=np.float32)
    )
    spec = BenchSpec(
        model=str(mnist_model),
        native=str(mnist_model),
        calib=str(calib),
        bench=BenchOptions(scenario="offline", iterations=20, warmup_iterations=2, telemetry=False),
    )
    result = run_job(tmp_path / "root", spec)
    sizes = [r.batch_size for r in result.runs]
    assert sizes == [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= 20]  # data has 20 samples
    best = max(result.runs, key=lambda r: r.throughput_per_s)
    assert result.headline.endswith(f"at batch {best.batch_size}")
    for run in result.runs:
        assert run.speedup_vs_native == pytest.approx(
            run.native_latency_ms.p50 / run.latency_ms.p50
        )
        assert run.power is None and run.telemetry_source is None


def test_proc_telemetry_where_tegrastats_is_absent(tmp_path: Path, tiny_model: Path) -> None:
    if shutil.which("tegrastats"):
        pytest.skip("this machine has a real tegrastats")
    spec = BenchSpec(
        model=str(tiny_model),
        bench=BenchOptions(batch_sizes=[2], duration_seconds=0.6, telemetry_interval_ms=50),
    )
    (run,) = run_job(tmp_path / "root", spec).runs
    assert run.telemetry_source == "proc"
    assert run.power is None and run.gpu_load_avg_pct is None
    assert run.telemetry and all(t.ram_total_mb and t.cpu_load_pct for t in run.telemetry)
