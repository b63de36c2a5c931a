"""Every table of edge/views at 80 and 100 columns and piped, with realistic long values:
no '…', no value cut or split across lines, no line wider than the terminal. And the
consoles: wide when piped, a hint printed whole on a narrow terminal."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Union

import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType

from device_agent.protocol import (
    BenchResult,
    BenchRun,
    ConversionSummary,
    ConvertResult,
    DeviceFacts,
    Engine,
    JetsonInfo,
    JobState,
    LatencyStats,
    NonConverted,
    OutputCheck,
    ValidateResult,
    ValidationReport,
)
from edge.cli import main as cli_main
from edge.core.errors import EdgeError
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory, make_device
from edge.history.compare import compare
from edge.history.store import RunStore
from edge.ops.agents import AgentInstall
from edge.ops.info import ProbeResult
from edge.ops.joblist import Listing
from edge.ops.push import PushResult
from edge.recipes.loader import list_recipes
from edge.views.fleet import agent_install_table, inventory_table, jobs_table, probe_table
from edge.views.history import comparison_table, run_table, runs_table
from edge.views.layout import PIPED_WIDTH, FitTable, PipeConsole
from edge.views.recipes import recipes_table
from edge.views.tables import (
    bench_table,
    convert_tables,
    facts_table,
    model_label,
    push_table,
    validate_table,
)

DEV = "jetson-orin-nano-devkit-lab-03"
DEV2 = "xavier-nx-02"
MODEL = "mobilenet_v2_1.0_224_int8_calibrated"
MODEL_PATH = f"/data/models/{MODEL}"
HOST = "orin-nano-03.lab.example.com"
JOB = "20261203-070510-bench-bb50d9"
WIDTHS = [80, 100, None]  # None: piped


def render_at(renderable: RenderableType, width: int | None) -> str:
    """What a terminal of `width` columns shows, or (None) what a pipe receives."""
    out = io.StringIO()
    PipeConsole(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


Value = Union[str, tuple[str, str]]


def assert_intact(text: str, values: Sequence[Value], width: int | None) -> None:
    """Each value is on one line of `text`; a (column, value) pair may instead be in a
    column the caption names as not shown. Nothing is wider than `width`."""
    lines = text.splitlines()
    assert "…" not in text, text
    if width is not None:
        assert max(cell_len(line) for line in lines) <= width, text
    hidden = {
        col.strip()
        for line in lines
        if "not shown here: " in line
        for col in line.split("not shown here: ", 1)[1].split(",")
    }
    for value in values:
        column, shown = value if isinstance(value, tuple) else ("", value)
        if column and column in hidden:
            assert width is not None, f"a column was left out of piped output:\n{text}"
            continue
        assert any(shown in line for line in lines), f"{value!r} cut or split:\n{text}"


def latency(p50: float) -> LatencyStats:
    return LatencyStats(
        p50=p50, p90=p50 * 1.25, p95=p50 * 1.4, p99=p50 * 1.9, mean=p50 * 1.1, min=p50, max=p50 * 3
    )


def bench_result(device: str, model: str, tput: float, p50: float) -> BenchResult:
    runs = [
        BenchRun(
            batch_size=bs, iterations=5000, latency_ms=latency(p50 * bs), throughput_per_s=tput
        )
        for bs in (1, 32)
    ]
    return BenchResult(device, "succeeded", backend="tftrt", model=model, runs=runs)


def convert_result(device: str) -> ConvertResult:
    engine = Engine(
        name="TRTEngineOp_000_000",
        nodes=123456789,
        ops={"Conv2D": 52, "Relu6": 35, "DepthwiseConv2dNative": 17},
        input_dtypes=["float32"],
        output_dtypes=["float32"],
        input_shapes=["[-1,224,224,3]"],
        output_shapes=["[-1,1001]"],
    )
    summary = ConversionSummary(
        engines=[engine, engine],
        ops_total=32,
        ops_converted=28,
        percent_converted=87.5,
        op_histogram={},
        inputs=[],
        outputs=[],
        non_converted=[NonConverted("NonMaxSuppressionV5", 4, "unsupported op in TF-TRT 8.6")],
    )
    check = OutputCheck(max_abs_err=1.2e-3, max_rel_err=4.5e-3, passed=True, elements=1001)
    return ConvertResult(
        device,
        "succeeded",
        backend="tftrt",
        precision="FP16",
        summary=summary,
        seconds=123.4,
        engines_built=True,
        validation=ValidationReport(passed=True, atol=0.01, rtol=0.01, outputs={"logits": check}),
    )


def facts(module: str) -> DeviceFacts:
    return DeviceFacts(
        agent_version="0.9.0",
        protocol=3,
        python="3.8.10",
        machine="aarch64",
        hostname="h",
        memory_total_mb=7620,
        memory_available_mb=5123,
        swap_total_mb=3810,
        disk_free_mb=123456789,
        tensorflow="2.12.0+nv23.06",
        jetson=JetsonInfo(module=module, jetpack="5.1.2", l4t="35.4.1"),
    )


def stored_runs(store: RunStore) -> list:
    big = bench_result(DEV, MODEL_PATH, 123094567.0, 0.25)
    slow = bench_result(DEV, MODEL_PATH, 98765432.0, 0.5)
    return [
        store.record(
            "convert", convert_result(DEV), MODEL_PATH, "f908c1a2b3c4d5e6", recipe="mobilenet-v2"
        ),
        store.record("bench", big, MODEL_PATH, "f908c1a2b3c4d5e6"),
        store.record("bench", slow, MODEL_PATH, "f908c1a2b3c4d5e6"),
    ]


TableCase = Callable[[Path], "tuple[RenderableType, list[Value]]"]


def case_bench(tmp: Path) -> tuple[RenderableType, list[Value]]:
    native = bench_result(DEV, "/m/mnist_saved_model", 123094567.0, 0.244)
    conv = bench_result(DEV, "/m/mnist_converted", 98765432.0, 0.187)
    failed = BenchResult.failure(DEV2, "out of memory", "smaller batch")
    labels = [
        model_label(native.model),
        model_label(
            conv.model, ConvertResult(DEV, "succeeded", backend="native", precision="FP32")
        ),
        model_label(None),
    ]
    table = bench_table([native, conv, failed], "Benchmark: native vs converted", labels)
    return table, [DEV, DEV2, *labels[:2], "123,094,567", "98,765,432", "0.244", "failed"]


def case_convert(tmp: Path) -> tuple[RenderableType, list[Value]]:
    group = convert_tables([convert_result(DEV)])
    return group, [
        DEV,
        "succeeded",
        "tftrt",
        "FP16",
        "87.5% [28/32]",
        "123456789",
        "TRTEngineOp_000_000",
        ("engines", "2"),
        ("time", "123.4s"),
    ]


def case_validate(tmp: Path) -> tuple[RenderableType, list[Value]]:
    check = OutputCheck(max_abs_err=1.25e-3, max_rel_err=0.5, passed=False, mismatched=123456789)
    report = ValidationReport(passed=False, outputs={"StatefulPartitionedCall:0": check})
    table = validate_table([ValidateResult(DEV, "succeeded", validation=report)])
    return table, [DEV, "StatefulPartitionedCall:0", "0.00125", "123456789/0", "FAIL"]


def case_push(tmp: Path) -> tuple[RenderableType, list[Value]]:
    r = PushResult(
        DEV,
        "succeeded",
        files_total=1234,
        files_sent=1234,
        bytes_sent=123456789012,
        bytes_skipped=987654321,
        seconds=12.5,
    )
    return push_table([r]), [
        DEV,
        "succeeded",
        "1234/1234",
        "123456.8",
        ("MB skipped", "987.7"),
        ("MB/s", "9876.5"),
        ("seconds", "12.50"),
    ]


def case_facts(tmp: Path) -> tuple[RenderableType, list[Value]]:
    table = facts_table(DEV, facts("NVIDIA Jetson Orin Nano Developer Kit"))
    return table, [DEV, "5.1.2 / 35.4.1", "123456789 MB", "2.12.0+nv23.06", "JetPack / L4T"]


def case_runs(tmp: Path) -> tuple[RenderableType, list[Value]]:
    with RunStore(tmp / "runs.sqlite") as store:
        runs = stored_runs(store)
    values: list[Value] = ["r1", "r2", "r3", DEV, MODEL, "123,094,567/s", "98,765,432/s"]
    values += [("status", "succeeded"), ("digest", "f908c1a2b3"), ("recipe", "mobilenet-v2")]
    return runs_table(runs), values


def case_run(tmp: Path) -> tuple[RenderableType, list[Value]]:
    with RunStore(tmp / "runs.sqlite") as store:
        run = stored_runs(store)[1]
    return run_table(run), ["Run r2", DEV, MODEL_PATH, "f908c1a2b3c4d5e6", "succeeded"]


def case_compare(tmp: Path) -> tuple[RenderableType, list[Value]]:
    with RunStore(tmp / "runs.sqlite") as store:
        _, a, b = stored_runs(store)
    cmp = compare(a, b)
    return comparison_table(cmp), ["throughput_per_s", "123,094,567", "98,765,432", "REGRESSION"]


def case_inventory(tmp: Path) -> tuple[RenderableType, list[Value]]:
    devices = [
        Device(DEV, host=HOST, user="ubuntu", port=2222, tags=["lab", "orin-nano"]),
        Device(DEV2, host="10.0.0.5", user="nvidia"),
    ]
    table = inventory_table(devices, tmp / "fleet.yaml")
    return table, [DEV, DEV2, HOST, "ubuntu", "10.0.0.5"]


def case_probe(tmp: Path) -> tuple[RenderableType, list[Value]]:
    results = [
        ProbeResult(DEV, "succeeded", facts=facts("NVIDIA Jetson Orin Nano Developer Kit")),
        ProbeResult.failure(DEV2, "unreachable", "check the cable"),
    ]
    return probe_table(results), [DEV, DEV2, "succeeded", "failed", "5.1.2"]


def case_jobs(tmp: Path) -> tuple[RenderableType, list[Value]]:
    job = JobState(job_id=JOB, kind="bench", status="succeeded", created_at=0.0, updated_at=0.0)
    table = jobs_table([Listing(DEV, "succeeded", jobs=[job])], now=600.0)
    return table, [DEV, JOB, "succeeded", ("age", "10 min")]


def case_agents(tmp: Path) -> tuple[RenderableType, list[Value]]:
    results = [AgentInstall(DEV, "succeeded", python="3.8.10", numpy="1.24.4", installed=True)]
    return agent_install_table(results, "0.9.0"), [DEV, "succeeded", "3.8.10", "1.24.4"]


def case_recipes(tmp: Path) -> tuple[RenderableType, list[Value]]:
    recipes = list_recipes()
    assert recipes, "no recipes found"
    return recipes_table(recipes), [r.name for r in recipes]


CASES: dict[str, TableCase] = {
    "bench": case_bench,
    "convert": case_convert,
    "validate": case_validate,
    "push": case_push,
    "facts": case_facts,
    "runs": case_runs,
    "run": case_run,
    "compare": case_compare,
    "inventory": case_inventory,
    "probe": case_probe,
    "jobs": case_jobs,
    "agents": case_agents,
    "recipes": case_recipes,
}


@pytest.mark.parametrize("width", WIDTHS, ids=lambda w: f"w{w}" if w else "piped")
@pytest.mark.parametrize("kind", sorted(CASES))
def test_no_value_cut(kind: str, width: int | None, tmp_path: Path) -> None:
    renderable, values = CASES[kind](tmp_path)
    assert_intact(render_at(renderable, width), values, width)


def test_piped_tables_keep_every_column() -> None:
    """Piped, nothing is left out: the bench table has all its columns on one header line."""
    table = bench_table([bench_result(DEV, MODEL_PATH, 123094567.0, 0.25)])
    text = render_at(table, None)
    header = next(line for line in text.splitlines() if "device" in line)
    for col in ("device", "model", "backend", "batch", "p50", "p90", "p99", "mean", "per s"):
        assert col in header
    assert "not shown" not in text


def test_narrow_drops_low_priority_columns_first() -> None:
    table = FitTable(title="t")
    table.column("name").column("spare", drop=2).column("extra", drop=1).column("note", "text")
    table.add_row("a" * 30, "b" * 20, "c" * 20, "some words to wrap here")
    wide = render_at(table, 120)
    assert "b" * 20 in wide and "c" * 20 in wide and "not shown" not in wide
    text = render_at(table, 80)  # room for one of the two: the lower priority goes
    assert "b" * 20 not in text and "c" * 20 in text and "not shown here: spare" in text
    text = render_at(table, 60)
    assert "b" * 20 not in text and "c" * 20 not in text
    assert "not shown here: spare, extra" in text
    assert "a" * 30 in text


def test_too_narrow_for_any_row_falls_back_to_records() -> None:
    table = FitTable(title="t")
    table.column("device").column("model").column("status")
    table.add_row(DEV, MODEL, "succeeded")
    text = render_at(table, 50)
    assert_intact(text, [DEV, MODEL, "succeeded"], 50)
    lines = text.splitlines()
    assert any("device" in ln and DEV in ln for ln in lines)  # one `header value` per line


def test_pipe_console_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert PipeConsole(file=io.StringIO()).width == PIPED_WIDTH
    assert PipeConsole(file=io.StringIO(), width=60).width == 60
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as tty:
            assert PipeConsole(file=tty).width == 80  # a terminal: its width (COLUMNS here)
    finally:
        os.close(leader)


def test_error_hint_is_not_wrapped_mid_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 40-column terminal the hint's command is still one line: the terminal wraps it."""
    out = io.StringIO()
    console = PipeConsole(file=out, width=40, force_terminal=True, color_system=None)
    monkeypatch.setattr(cli_main, "err_console", console)
    hint = f"Replace it with: edge fleet add {DEV} --host {HOST} --user ubuntu --replace"
    cli_main._user_error(EdgeError(f"Device {DEV} is already in the fleet.", hint), debug=False)
    lines = out.getvalue().splitlines()
    assert f"hint: {hint}" in lines
    assert f"error: Device {DEV} is already in the fleet." in lines


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run(
        [_edge_bin(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _edge_bin() -> str:
    path = Path(sys.executable).parent / "edge"
    assert path.exists(), f"the edge console script is missing: {path}"
    return str(path)


def test_cli_runs_ls_and_fleet_ls_piped_at_80_columns(tmp_path: Path) -> None:
    with RunStore() as store:
        stored_runs(store)
    inventory = Inventory.load()
    inventory.add(make_device(DEV, host=HOST, user="ubuntu", port=2222, tags=["lab"]))
    inventory.save()
    runs = _edge("runs", "ls")
    assert runs.returncode == 0, runs.stderr
    assert_intact(runs.stdout, ["r1", "r3", DEV, MODEL, "succeeded", "123,094,567/s"], None)
    header = next(line for line in runs.stdout.splitlines() if " id " in line)
    for col in ("kind", "digest", "recipe", "created", "status", "result"):  # none left out
        assert col in header, runs.stdout
    assert "mobilenet-v2" in runs.stdout and "not shown" not in runs.stdout
    fleet = _edge("fleet", "ls")
    assert fleet.returncode == 0, fleet.stderr
    assert_intact(fleet.stdout, [DEV, HOST, "ubuntu", "2222"], None)


HOSTILE = "[bold]x[/]\x1b[2J\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"


@pytest.mark.parametrize("width", [40, 60, None], ids=lambda w: f"w{w}" if w else "piped")
def test_hostile_device_text_in_every_layout(width: int | None) -> None:
    """Grouped titles and records re-show cells: device text stays literal there too."""
    r = bench_result(HOSTILE, f"/m/{HOSTILE}", 1234.0, 0.5)
    runs = runs_table([])  # an empty table renders too
    for renderable in (bench_table([r]), jobs_table([Listing(HOSTILE, "succeeded")]), runs):
        text = render_at(renderable, width)
        assert "\x1b" not in text and "http://evil" not in text
    text = render_at(bench_table([r]), width)
    assert "[bold]x[/]link" in text


@pytest.mark.parametrize("pinned", [True, False, None])
def test_facts_table_says_whether_jetson_clocks_is_on(pinned: bool | None) -> None:
    f = facts("Jetson Orin Nano 8GB")
    assert f.jetson is not None
    f.jetson.jetson_clocks = pinned
    console = Console(width=100, record=True)
    console.print(facts_table(DEV, f))
    line = next(x for x in console.export_text().splitlines() if "jetson_clocks" in x)
    word = line.split("jetson_clocks", 1)[1].strip(" │┃|").split()[0]
    assert word == {True: "on", False: "off", None: "unknown"}[pinned]
