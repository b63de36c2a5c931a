"""What the bench and convert tables say: which model is native and which converted, what
the build really did, the power tegrastats measured, and the `--scenario` headline."""

from __future__ import annotations

import io

from rich.console import RenderableType

from device_agent.protocol import (
    Attempt,
    BenchResult,
    BenchRun,
    ConversionSummary,
    ConvertResult,
    Engine,
    LatencyStats,
)
from device_agent.runner import headline
from device_agent.telemetry import summarize
from device_agent.telemetry_parse import parse_tegrastats
from edge.history.store import RunStore
from edge.views.history import headline as run_headline
from edge.views.layout import PipeConsole
from edge.views.tables import bench_table, bench_view, convert_tables, model_label

# Orin Nano, JetPack 6 form: every rail `XmW/YmW`, VDD_IN is the module input.
ORIN = (
    "12-03-2026 07:05:10 RAM 3120/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [35%@1510,20%@1510,18%@1510,22%@1510,off,off] GR3D_FREQ 87%@[624] "
    "cpu@51.2C soc2@49.8C gpu@52.4C tj@52.4C "
    "VDD_IN {vin}mW/{vin}mW VDD_CPU_GPU_CV {gpu}mW/{gpu}mW VDD_SOC 1630mW/1630mW"
)


def render(renderable: RenderableType) -> str:
    out = io.StringIO()
    PipeConsole(file=out, color_system=None).print(renderable)  # piped: every column
    return out.getvalue()


def rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def header(text: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if ln.startswith("┃"))
    return [c.strip() for c in line.strip().strip("┃").split("┃")]


def latency(p50: float) -> LatencyStats:
    return LatencyStats(
        p50=p50, p90=p50 * 1.5, p95=p50 * 1.7, p99=p50 * 2, mean=p50 * 1.1, min=p50, max=p50 * 3
    )


def run(bs: int, p50: float, tput: float, **kw: object) -> BenchRun:
    return BenchRun(bs, 1000, latency(p50), tput, **kw)  # type: ignore[arg-type]


def test_native_and_converted_rows_are_named() -> None:
    """The demo's pair: both ran on the native backend, the rows still say which is which."""
    conv = ConvertResult("local", "succeeded", backend="native", precision="FP32")
    native = BenchResult("local", "succeeded", backend="native", model="/w/mnist_saved_model")
    native.runs = [run(1, 0.244, 3309.0), run(32, 0.441, 68791.0)]
    converted = BenchResult("local", "succeeded", backend="native", model="/w/mnist_converted")
    converted.runs = [run(1, 0.439, 1993.0), run(32, 0.549, 55319.0)]
    labels = [model_label(native.model), model_label(converted.model, conv)]
    text = render(bench_table([native, converted], "Benchmark: native vs converted", labels))
    models = [r[header(text).index("model")] for r in rows(text)]
    assert models == [
        "mnist_saved_model (native)",
        "mnist_saved_model (native)",
        "mnist_converted (converted: native backend, FP32)",
        "mnist_converted (converted: native backend, FP32)",
    ]
    # without labels: the directory names, whole
    plain = render(bench_table([native, converted]))
    assert {r[1] for r in rows(plain)} == {"mnist_saved_model", "mnist_converted"}


def _convert(device: str, backend: str, engines: int, built: bool, **kw: object) -> ConvertResult:
    engine = Engine("TRTEngineOp_0", 10, {"Conv2D": 3}, ["float32"], ["float32"], ["[1]"], ["[1]"])
    summary = ConversionSummary(
        engines=[engine] * engines,
        ops_total=28,
        ops_converted=20 if engines else 0,
        percent_converted=71.4 if engines else 0.0,
        op_histogram={},
        inputs=[],
        outputs=[],
        non_converted=[],
    )
    return ConvertResult(
        device,
        "succeeded",
        backend=backend,
        precision="FP16",
        summary=summary,
        engines_built=built,
        **kw,  # type: ignore[arg-type]
    )


def test_build_note_says_what_happened() -> None:
    results = [
        _convert("native-dev", "native", 0, False),
        _convert("empty-dev", "tftrt", 0, False),
        _convert("built-dev", "tftrt", 2, True),
        _convert("lazy-dev", "tftrt", 3, False),
        _convert("oom-dev", "tftrt", 1, True, attempts=[Attempt(1, "oom"), Attempt(2, "ok")]),
        _convert("hit-dev", "tftrt", 1, True, cache="hit"),
    ]
    text = render(convert_tables(results))
    head = header(text)
    build = {r[0]: r[head.index("build")] for r in rows(text) if r[0].endswith("-dev")}
    assert build == {
        "native-dev": "no engines (native)",
        "empty-dev": "no engines (tftrt: nothing converted)",
        "built-dev": "2 engines built",
        "lazy-dev": "3 engines at first run",
        "oom-dev": "1 engine built (1 OOM retries)",
        "hit-dev": "cache hit",
    }


def test_power_from_real_tegrastats_lines() -> None:
    vin = (5123, 6001, 5877)
    samples = [
        parse_tegrastats(ORIN.format(vin=v, gpu=v // 3), ts=100.0 + i) for i, v in enumerate(vin)
    ]
    assert [s.power_in_mw for s in samples] == [float(v) for v in vin]  # VDD_IN, not a sum
    inferences = 2000
    power, gpu, temp, _, _ = summarize(samples, 100.0, 102.0, inferences)
    assert power is not None
    # trapezoids over two 1 s steps, over the 2 s run
    avg = ((vin[0] + vin[1]) / 2 + (vin[1] + vin[2]) / 2) / 2
    mj = avg * 2.0 / inferences
    r = BenchResult("orin-nano-01", "succeeded", backend="tftrt", model="/m/resnet50_trt")
    r.runs = [run(8, 4.2, 1904.0, power=power, gpu_load_avg_pct=gpu, temp_peak_c=temp)]
    r.runs.append(run(16, 7.9, 2025.0))  # no power measured for this one
    text = render(bench_table([r]))
    head = header(text)
    assert head[-3:] == ["avg mW", "peak mW", "mJ/inf"]
    first, second = rows(text)[:2]
    assert first[-3:] == [f"{avg:,.0f}", f"{max(vin):,}", f"{mj:.3f}"]
    assert second[-3:] == ["-", "-", "-"]
    assert "power: module input" in text
    none = render(bench_table([BenchResult("pc", "succeeded", runs=[run(1, 1.0, 1000.0)])]))
    assert "mW" not in none  # no power columns where nothing measured power


def test_speedup_column_when_timed_against_native() -> None:
    r = BenchResult("orin", "succeeded", backend="tftrt", model="/m/resnet50_trt")
    r.runs = [run(1, 2.0, 500.0, speedup_vs_native=2.5, native_latency_ms=latency(5.0))]
    text = render(bench_table([r]))
    assert header(text)[-1] == "vs native" and rows(text)[0][-1] == "2.50x"


def test_scenario_headline_is_printed() -> None:
    single = BenchResult(
        "orin", "succeeded", backend="tftrt", model="/m/a", scenario="single-stream"
    )
    single.runs = [run(1, 2.0, 500.0)]
    single.headline = headline(single)
    offline = BenchResult("nano", "succeeded", backend="tftrt", model="/m/a", scenario="offline")
    offline.runs = [run(1, 2.0, 500.0), run(8, 4.0, 2000.0), run(32, 20.0, 1600.0)]
    offline.headline = headline(offline)
    custom = BenchResult("pc", "succeeded", backend="native", model="/m/a", scenario="custom")
    custom.runs = [run(1, 2.0, 500.0)]
    custom.headline = headline(custom)
    lines = render(bench_view([single, offline, custom])).splitlines()
    assert f"orin: single-stream p90 {2.0 * 1.5:.3f} ms (single-stream)" in lines
    assert "nano: best throughput 2,000.0/s at batch 8 (offline)" in lines
    assert not any(line.startswith("pc:") for line in lines)  # no scenario, no headline
    assert lines.index("nano: best throughput 2,000.0/s at batch 8 (offline)") > max(
        i for i, line in enumerate(lines) if line.startswith("└")
    )  # after the table


def test_runs_ls_result_is_the_scenario_headline() -> None:
    single = BenchResult(
        "orin", "succeeded", backend="tftrt", model="/m/a", scenario="single-stream"
    )
    single.runs = [run(1, 2.0, 500.0)]
    single.headline = headline(single)
    custom = BenchResult("pc", "succeeded", backend="native", model="/m/a", scenario="custom")
    custom.runs = [run(1, 2.0, 500.0)]
    custom.headline = headline(custom)
    with RunStore() as store:
        a = store.record("bench", single, "/m/a")
        b = store.record("bench", custom, "/m/a")
    assert run_headline(a) == f"single-stream p90 {3.0:.3f} ms (single-stream)"
    assert run_headline(b) == "bs1 p50 2.000 ms, 500/s"  # no scenario: the first batch size
