"""`edge report`: HTML with embedded PNG plots, drawn from stored runs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from device_agent.protocol import (
    BenchResult,
    BenchRun,
    LatencyStats,
    PowerStats,
    TelemetrySample,
)
from edge.cli.report import report as report_cmd
from edge.history.store import Run, RunStore
from edge.views.report import (
    PLOTS,
    build_report,
    plot_power,
    report,
    result_tables,
    series_of,
    table_rows,
)
from edge.views.tables import bench_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def latency(base: float) -> LatencyStats:
    return LatencyStats(
        p50=base,
        p90=base * 1.2,
        p95=base * 1.3,
        p99=base * 1.6,
        mean=base * 1.05,
        min=base * 0.8,
        max=base * 2.2,
    )


def stored() -> list[Run]:
    with RunStore() as store:
        return store.list()


def bench_result(
    device: str, scale: float, telemetry: bool = True, native: bool = False
) -> BenchResult:
    runs = []
    for i, bs in enumerate((1, 2, 4, 8)):
        samples = [
            TelemetrySample(
                ts=1000.0 + 10 * i + 0.1 * k,
                power_in_mw=4000.0 + 50 * k * scale,
                rails_mw={"VDD_GPU_SOC": 2000.0 + k},
            )
            for k in range(20)
        ]
        runs.append(
            BenchRun(
                batch_size=bs,
                iterations=200,
                latency_ms=latency(1.5 * bs * scale),
                throughput_per_s=600.0 * bs / (bs * scale) * bs**0.3,
                power=PowerStats(5000.0 * scale, 8000.0, 9.0 * scale / bs) if telemetry else None,
                telemetry=samples if telemetry else [],
                telemetry_source="tegrastats" if telemetry else None,
                native_latency_ms=latency(4.0 * bs * scale) if native else None,
                speedup_vs_native=4.0 / 1.5 if native else None,
            )
        )
    return BenchResult(
        device=device,
        status="succeeded",
        backend="tftrt",
        model="models/mnist",
        runs=runs,
        job_id=f"j-{device}",
    )


def _store(*results: BenchResult) -> list[str]:
    with RunStore() as store:
        return [store.record("bench", r, "models/mnist", "d1").run_id for r in results]


def test_report_two_devices_with_telemetry(tmp_path: Path) -> None:
    orin, nano = bench_result("orin-1", 1.0, native=True), bench_result("nano-1", 2.5)
    ids = _store(orin, nano)
    rep = build_report(ids, tmp_path / "out")
    page = rep.html.read_text(encoding="utf-8")
    assert rep.skipped == {}
    assert len(rep.plots) == len(PLOTS) == 5
    for name, title, _, _ in PLOTS:
        png = tmp_path / "out" / f"{name}.png"
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
        assert rep.points[title] > 0, title
        assert base64.b64encode(data).decode("ascii") in page, name  # embedded, self-contained
    assert page.count("data:image/png;base64,") == 5
    assert not re.search(r'src="(?!data:)', page)  # nothing outside the file
    # Every point is drawn: 4 ladders per device; 20 samples per batch size per device.
    assert rep.points["Latency distribution"] == 8
    assert rep.points["Throughput vs batch size"] == 8
    assert rep.points["Native vs converted"] == 4  # orin-1 has native latencies
    assert rep.points["Power over time"] == 2 * 4 * 20
    assert rep.points["Energy per inference"] == 8
    assert plot_power(series_of(stored()), tmp_path / "p.png") == 160
    # The page's tables show the terminal's numbers.
    headers, rows = table_rows(bench_table([orin, nano]))
    assert headers[:4] == ["device", "model", "backend", "batch"]
    for row in rows:
        assert "<td>" + "</td><td>".join(row) + "</td>" in page
    for b in orin.runs:
        assert f"{b.latency_ms.p50:.3f}" in page
    assert "orin-1" in page and "nano-1" in page
    assert report(ids, tmp_path / "again") == [tmp_path / "again" / "report.html"] + [
        tmp_path / "again" / f"{name}.png" for name, *_ in PLOTS
    ]


def test_run_without_telemetry_skips_power(tmp_path: Path) -> None:
    ids = _store(bench_result("orin-1", 1.0, telemetry=False))
    rep = build_report(ids, tmp_path)
    page = rep.html.read_text(encoding="utf-8")
    assert set(rep.skipped) == {"Power over time", "Energy per inference", "Native vs converted"}
    assert "Power over time: skipped, no telemetry samples with power readings." in page
    assert not (tmp_path / "power.png").exists() and not (tmp_path / "energy.png").exists()
    assert (tmp_path / "latency.png").read_bytes().startswith(PNG_MAGIC)
    assert page.count("data:image/png;base64,") == 2


def test_native_run_beside_converted_run(tmp_path: Path) -> None:
    native = bench_result("orin-1", 3.0, telemetry=False)
    native.backend = "native"
    ids = _store(native, bench_result("orin-1", 1.0, telemetry=False))
    rep = build_report(ids, tmp_path)
    assert rep.points["Native vs converted"] == 4
    # One device twice: the series are told apart by run id.
    assert [s.label for s in series_of(stored())] == ["orin-1 r1", "orin-1 r2"]
    assert len(result_tables(stored())) == 1  # bench table, no power table


def test_report_command(tmp_path: Path) -> None:
    ids = _store(bench_result("orin-1", 1.0))
    app = typer.Typer()
    app.command()(report_cmd)
    result = CliRunner().invoke(app, [*ids, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    assert "native" in result.output.lower()  # the skipped plot is named
