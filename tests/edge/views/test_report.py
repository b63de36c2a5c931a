"""`edge report`: HTML with embedded PNG plots, drawn from stored runs."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import typer
from typer.testing import CliRunner

from device_agent.protocol import (
    BenchOptions,
    BenchResult,
    BenchRun,
    ConvertResult,
    DeviceFacts,
    JetsonInfo,
    LatencyStats,
    PowerStats,
    TelemetrySample,
)
from edge.cli.report import report as report_cmd
from edge.history.record import record_runs
from edge.history.store import Run, RunStore
from edge.views.report import (
    PLOTS,
    bench_rows,
    build_report,
    report,
    result_tables,
    series_of,
)
from edge.views.report_data import device_rows, model_rows
from edge.views.report_plots import Outlier, latency_axis, latency_figure, plot_power

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
    # Every bench row is in the page, named by its run id and model.
    headers, rows = bench_rows(series_of(stored()))
    assert headers[:2] == ["run", "model"] and len(rows) == 8
    for row in rows:
        assert re.sub(r"<[^>]+>", "|", "".join(f"<td>{c}</td>" for c in row)) in re.sub(
            r"<[^>]+>", "|", page
        )
    assert {r[0] for r in rows} == set(ids)
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
    # One device twice: the series are told apart by role.
    assert [s.label for s in series_of(stored())] == [
        "native mnist @ orin-1",
        "converted tftrt mnist @ orin-1",
    ]
    assert len(result_tables(stored())) == 1  # bench table, no power table


def test_runs_show_tables_carry_power_once(tmp_path: Path) -> None:
    _store(bench_result("orin-1", 1.0))  # with telemetry
    tables = result_tables(stored()[-1:])
    headers = [[str(c.header) for c in t.columns] for t in tables]
    assert len(tables) == 1 and "avg mW" in headers[0]


def test_report_command(tmp_path: Path) -> None:
    ids = _store(bench_result("orin-1", 1.0))
    app = typer.Typer()
    app.command()(report_cmd)
    result = CliRunner().invoke(app, [*ids, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "report.html").is_file()
    assert "native" in result.output.lower()  # the skipped plot is named
    assert "1 bench run of mnist on orin-1" in result.output  # the headline
    as_json = CliRunner().invoke(app, [*ids, "--out", str(tmp_path / "j"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["headline"] == ["1 bench run of mnist on orin-1"]
    assert data["outliers"] == [] and "Native vs converted" in data["skipped"]


def demo_like(tmp_path: Path, bs1_max: float = 0.9) -> tuple[list[str], Path]:
    """What `edge demo` records: a convert run on `local` (native backend: no TensorRT
    here) and a bench of the source model and of the converted model, both native."""
    home = tmp_path / "alice" / "demo"
    src, out = home / "mnist_saved_model", home / "mnist_converted"
    for d, size in ((src, 4000), (out, 4100)):
        d.mkdir(parents=True)
        (d / "saved_model.pb").write_bytes(b"x" * size)
    conv = ConvertResult(
        device="local",
        status="succeeded",
        backend="native",
        precision="FP32",
        output_model=str(out),
    )

    def bench(model: Path, p50: float, worst: float) -> BenchResult:
        runs = [
            BenchRun(
                batch_size=bs,
                iterations=2000,
                latency_ms=LatencyStats(
                    p50=p50 * k,
                    p90=p50 * k * 1.2,
                    p95=p50 * k * 1.3,
                    p99=p50 * k * 1.5,
                    mean=p50 * k * 1.05,
                    min=p50 * k * 0.7,
                    max=worst if bs == 1 else p50 * k * 1.9,
                ),
                throughput_per_s=1000.0 * bs / (p50 * k),
                noisy=False,
            )
            for bs, k in ((1, 1.0), (32, 1.6))
        ]
        return BenchResult(
            device="local",
            status="succeeded",
            backend="native",
            model=str(model),
            runs=runs,
            options=BenchOptions(batch_sizes=[1, 32], duration_seconds=1.0),
        )

    stored = record_runs("convert", [conv], src, "f" * 64)
    stored += record_runs("bench", [bench(src, 0.35, bs1_max)], src, "f" * 64)
    stored += record_runs("bench", [bench(out, 0.5, 0.9)], out, "e" * 64)
    return [r.run_id for r in stored], home


def test_demo_pair_is_compared_without_paths(tmp_path: Path) -> None:
    ids, home = demo_like(tmp_path)
    rep = build_report(ids[1:], tmp_path / "out")  # the bench runs, as the demo suggests
    page = rep.html.read_text(encoding="utf-8")
    assert rep.points["Native vs converted"] == 2 and "Native vs converted" not in rep.skipped
    native, conv = stored()[1].result().runs[-1], stored()[2].result().runs[-1]
    assert rep.headline == [
        "mnist on local: converted (native backend, FP32) vs native: "
        f"{conv.throughput_per_s / native.throughput_per_s:.2f}x throughput at batch 32, "
        f"p50 {native.latency_ms.p50:.3f} ms -> {conv.latency_ms.p50:.3f} ms"
    ]
    assert "native mnist @ local" in page and "converted FP32 mnist @ local" in page
    assert "REGRESSION" not in page  # a different model, not a regression of the first
    for leak in (str(tmp_path), str(home), "alice", os.environ["EDGE_HOME"]):
        assert leak not in page
    assert "mnist_saved_model" in page and "mnist_converted" in page  # names, not paths
    assert "ffffffffffff" in page and "f" * 13 not in page  # short digests


def test_converted_model_unknown_without_its_convert_run(tmp_path: Path) -> None:
    ids, _ = demo_like(tmp_path)
    with RunStore() as store:
        store.db.execute("DELETE FROM runs WHERE kind = 'convert'")
    rep = build_report(ids[1:], tmp_path / "out")
    assert "Native vs converted" in rep.skipped  # two native runs: nothing says which is which
    assert [s.role for s in series_of(stored())] == ["native", "native"]


def test_latency_outlier_is_clipped_and_marked(tmp_path: Path) -> None:
    ids, _ = demo_like(tmp_path, bs1_max=96.0)
    series = series_of(stored())
    axis = latency_axis(series)
    assert axis is not None and not axis.log
    p99s = [b.latency_ms.p99 for s in series for b in s.result.runs]
    assert max(p99s) <= axis.top < 96.0 / 10  # the ladders keep their scale
    assert axis.outliers == [Outlier("native mnist @ local", 1, "max", 96.0)]
    fig, ax, points = latency_figure(series)
    assert points == 4 and ax.get_ylim() == (0.0, axis.top)
    drawn = [y for line in ax.get_lines() for y in line.get_ydata()]
    assert drawn and max(drawn) <= axis.top  # the outlier's marker sits on the top edge
    assert [t.get_text() for t in ax.texts] == ["max 96 ms"]
    rep = build_report(ids, tmp_path / "out")
    assert rep.outliers == ["max 96.000 ms of native mnist @ local at batch 1"]
    assert "drawn at its top edge: max 96.000 ms of native mnist @ local" in (
        rep.html.read_text(encoding="utf-8")
    )
    # Without the outlier the axis holds every value and marks nothing.
    _store(bench_result("orin-1", 1.0))
    plain = latency_axis(series_of(stored()[-1:]))
    assert plain is not None and plain.outliers == []
    assert plain.top >= max(b.latency_ms.max for b in stored()[-1].result().runs)


def test_devices_and_models_tables(tmp_path: Path) -> None:
    model = tmp_path / "resnet50_saved_model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"x" * 3_000_000)
    (model / "variables" / "variables.data").write_bytes(b"x" * 1_500_000)
    facts = DeviceFacts(
        agent_version="1",
        protocol=1,
        python="3.8.10",
        machine="aarch64",
        hostname="nano",
        memory_total_mb=7620,
        memory_available_mb=6000,
        swap_total_mb=3800,
        disk_free_mb=9000,
        tensorflow="2.12.0+nv23.06",
        jetson=JetsonInfo(
            module="Jetson Orin Nano 8GB",
            l4t="35.4.1",
            jetpack="5.1.2",
            nvpmodel="15W",
            jetson_clocks=True,
        ),
    )
    result = bench_result("nano1", 1.0)
    result.runs[2].throttled = True
    stored_runs = record_runs("bench", [result], model, "c" * 64, None, {"nano1": facts})
    old = _store(bench_result("orin-1", 1.0))  # recorded without facts, like older runs
    runs = stored()
    assert stored_runs[0].context["model_bytes"] == 4_500_000
    rows = device_rows(runs)
    assert rows[0] == [
        "nano1",
        "Jetson Orin Nano 8GB",
        "5.1.2 (L4T 35.4.1)",
        "-",
        "2.12.0+nv23.06",
        "15W",
        "on",  # jetson_clocks, as the agent read it
        "yes",
    ]
    assert rows[1][0] == "orin-1" and set(rows[1][1:6]) == {"-"}
    series = series_of(runs)
    models = model_rows(runs, series)
    assert models[0][:3] == ["resnet50_saved_model", "cccccccccccc", "4.3 MB"]
    assert models[1][0] == "mnist" and models[1][2] == "-"  # no size recorded for it
    page = build_report([stored_runs[0].run_id, *old], tmp_path / "out").html.read_text("utf-8")
    assert "Jetson Orin Nano 8GB" in page and "15W" in page
    assert "jetson_clocks: on when every CPU" in page
    assert str(tmp_path) not in page
