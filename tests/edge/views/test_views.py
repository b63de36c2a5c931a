"""The views of edge/views/{fleet,history,recipes}.py, built from real result objects and
read back as printed: every row, and device text shown as sent (markup and escape
sequences neither styled nor passed to the terminal)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

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
)
from edge.fleet.devices import Device
from edge.history.compare import compare
from edge.history.store import Run, RunStore
from edge.ops.agents import AgentInstall
from edge.ops.info import ProbeResult
from edge.ops.joblist import Listing
from edge.recipes.loader import list_recipes, load_recipe, load_recipe_file
from edge.recipes.resolve import resolve
from edge.views.fleet import agent_install_table, inventory_table, jobs_table, probe_table
from edge.views.history import comparison_table, headline, run_table, runs_table
from edge.views.recipes import recipe_table, recipes_table

MARKUP = "[bold]x[/]"
CLEAR = "\x1b[2J"
LINK = "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"
HOSTILE = f"{MARKUP}{CLEAR}{LINK}"
SHOWN = f"{MARKUP}link"  # what a terminal shows of HOSTILE: the sequences are gone


def render(table: Table) -> str:
    console = Console(record=True, width=200, file=io.StringIO(), color_system=None)
    console.print(table)
    return console.export_text()


def rows(table: Table) -> list[list[str]]:
    """The body rows as printed, one list of cells per line (`│` separates them)."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in render(table).splitlines()
        if line.startswith("│")
    ]


def header(table: Table) -> list[str]:
    line = next(ln for ln in render(table).splitlines() if ln.startswith("┃"))
    return [cell.strip() for cell in line.strip().strip("┃").split("┃")]


def assert_literal(text: str) -> None:
    """Device text reached the output as text: no escape sequence, no OSC 8 target."""
    assert "\x1b" not in text and "\x9b" not in text and "http://evil" not in text
    assert SHOWN in text


# --------------------------------------------------------------------------- fleet


def test_inventory_table_rows_and_literal_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    (tmp_path / "ssh_config").write_text("Host gw\n    HostName 10.0.0.1\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(tmp_path / "ssh_config"))  # no Host h, nano1
    devices = [
        Device("nano1", host="10.0.0.5", user="ubuntu", port=2222, tags=["lab", "nano"]),
        Device("local"),
        Device("odd", host="h", tags=[MARKUP], jump="gw"),
    ]
    table = inventory_table(devices, Path("/tmp/fleet.yaml"))
    assert header(table) == ["name", "host", "endpoint", "port", "user", "python", "root", "tags"]
    me = getpass.getuser()
    assert rows(table) == [
        ["nano1", "10.0.0.5", "ubuntu@10.0.0.5:2222", "2222", "ubuntu", "python3", "~/.edge"]
        + ["lab, nano"],
        ["local", "(this machine)", "-", "-", "-", "python3", "~/.edge", "-"],
        ["odd", "h", f"{me}@h:22", "-", "-", "python3", "~/.edge", MARKUP],
        ["", "", "via gw", "", "", "", "", ""],  # the jump on a line of its own
    ]
    assert "fleet (/tmp/fleet.yaml)" in render(table)


def _facts(module: str | None, text: str = "3.8.10") -> DeviceFacts:
    jetson = JetsonInfo(module=module, jetpack=text) if module is not None else None
    return DeviceFacts(
        agent_version="1",
        protocol=1,
        python=text,
        machine="aarch64",
        hostname="h",
        memory_total_mb=7620,
        memory_available_mb=5000,
        swap_total_mb=0,
        disk_free_mb=12000,
        tensorflow=None,
        jetson=jetson,
    )


def test_probe_table_rows() -> None:
    results = [
        ProbeResult("orin", "succeeded", facts=_facts("Jetson Orin Nano 8GB")),
        ProbeResult("pc", "succeeded", facts=_facts(None)),
        ProbeResult.failure("gone", "unreachable", "check the cable"),
    ]
    table = probe_table(results)
    assert header(table) == [
        "device",
        "status",
        "module",
        "JetPack",
        "memory MB",
        "disk free MB",
        "python",
        "tensorflow",
        "backends",
    ]
    assert rows(table) == [
        ["orin", "succeeded", "Jetson Orin Nano 8GB", "3.8.10", "7620", "12000", "3.8.10", "none",
         "-"],
        ["pc", "succeeded", "not a Jetson", "-", "7620", "12000", "3.8.10", "none", "-"],
        ["gone", "failed", "-", "-", "-", "-", "-", "-", "-"],
    ]  # fmt: skip


def test_probe_table_lists_the_backends_each_device_can_run() -> None:
    from device_agent.trt_types import BackendCheck, Capabilities

    facts = _facts("Jetson AGX Orin 64GB")
    facts.capabilities = Capabilities(
        tensorrt="10.3.0.30",
        backends=[
            BackendCheck("tftrt", False, "no TF-TRT"),
            BackendCheck("tensorrt", True, "TensorRT 10.3.0.30"),
            BackendCheck("native", True, "TensorFlow"),
        ],
    )
    bare = _facts(None)
    bare.capabilities = Capabilities(backends=[BackendCheck("native", False, "no TF")])
    table = probe_table([ProbeResult("orin", "succeeded", facts=facts),
                         ProbeResult("pc", "succeeded", facts=bare)])  # fmt: skip
    assert [row[-1] for row in rows(table)] == ["tensorrt native", "none"]


def test_probe_table_shows_hostile_facts_as_text() -> None:
    text = render(probe_table([ProbeResult(HOSTILE, "succeeded", facts=_facts(HOSTILE, HOSTILE))]))
    assert_literal(text)
    assert text.count(SHOWN) == 4  # device, module, JetPack, python


def test_agent_install_table_rows() -> None:
    results = [
        AgentInstall("a", "succeeded", python="3.8.10", numpy="1.24.4", installed=True),
        AgentInstall("b", "succeeded", python="3.10.12", numpy=None),
        AgentInstall.failure("c", "no python3", "install Python 3.8+"),
    ]
    table = agent_install_table(results, "9.9.9")
    assert "Agent 9.9.9" in render(table)
    assert header(table) == ["device", "status", "python", "numpy", "action"]
    assert rows(table) == [
        ["a", "succeeded", "3.8.10", "1.24.4", "installed"],
        ["b", "succeeded", "3.10.12", "missing", "up to date"],
        ["c", "failed", "-", "missing", "-"],
    ]
    assert_literal(
        render(
            agent_install_table(
                [AgentInstall(HOSTILE, "succeeded", python=HOSTILE, numpy=HOSTILE)], "1"
            )
        )
    )


def test_jobs_table_rows_age_and_hostile_text() -> None:
    now = time.time()
    job = JobState(
        job_id="j-1", kind="convert", status="running", created_at=now - 600, updated_at=now
    )
    bad = JobState(
        job_id=HOSTILE,
        kind="bench",
        status=HOSTILE,
        created_at=now - 60,
        updated_at=now,
        error=HOSTILE + "e" * 100,
    )
    listings = [
        Listing("orin", "succeeded", jobs=[job]),
        Listing("nano", "succeeded", jobs=[bad]),
        Listing.failure("gone", "unreachable"),
    ]
    table = jobs_table(listings, now=now)
    assert header(table) == ["device", "job", "kind", "status", "age", "error"]
    got = rows(table)
    assert got[0] == ["orin", "j-1", "convert", "running", "10 min", ""]
    assert got[1][:5] == ["nano", SHOWN, "bench", SHOWN, "1 min"]
    assert got[1][5].startswith(SHOWN) and len(got) == 2  # a failed listing has no rows
    assert_literal(render(table))


# --------------------------------------------------------------------------- history


def _bench(device: str, p50: float, model: str = "models/resnet50") -> BenchResult:
    lat = LatencyStats(
        p50=p50, p90=p50 * 1.2, p95=p50 * 1.3, p99=p50 * 1.5, mean=p50, min=p50, max=p50 * 2
    )
    runs = [
        BenchRun(batch_size=bs, iterations=10, latency_ms=lat, throughput_per_s=1000.0 * bs)
        for bs in (1, 8)
    ]
    return BenchResult(device=device, status="succeeded", backend="tftrt", model=model, runs=runs)


@pytest.fixture
def stored() -> list[Run]:
    summary = ConversionSummary(
        engines=[Engine("TRTEngineOp_0", 10)], ops_total=10, ops_converted=9, percent_converted=90.0
    )
    with RunStore() as store:
        return [
            store.record("bench", _bench("orin", 2.0), "models/resnet50/", "sha256:abcdef0123"),
            store.record("bench", _bench("orin", 3.0), "models/resnet50", recipe="resnet50"),
            store.record(
                "convert",
                ConvertResult(
                    device=HOSTILE,
                    status="failed",
                    backend="tftrt",
                    precision="FP16",
                    summary=summary,
                    error=HOSTILE,
                ),
                f"models/[red]m{CLEAR}",
            ),
        ]


def test_runs_table_rows(stored: list[Run]) -> None:
    table = runs_table(stored)
    assert header(table) == [
        "id",
        "kind",
        "device",
        "model",
        "digest",
        "recipe",
        "created",
        "status",
        "result",
    ]
    got = rows(table)
    created = stored[0].created_at[:16].replace("T", " ")
    assert got[0] == [
        "r1",
        "bench",
        "orin",
        "resnet50",
        "sha256:abc",
        "-",
        created,
        "succeeded",
        "bs1 p50 2.000 ms, 1,000/s (+1 batch sizes)",
    ]
    assert got[1][5] == "resnet50" and got[1][-1] == headline(stored[1])
    assert got[2][:4] == ["r3", "convert", SHOWN, "[red]m"]  # the model's last part
    assert got[2][-1] == "tftrt FP16 1 engines, 90.0%"
    assert_literal(render(table))


def test_runs_table_has_a_recipe_column_only_when_a_run_has_one(stored: list[Run]) -> None:
    assert "recipe" not in header(runs_table([stored[0], stored[2]]))
    assert rows(runs_table([])) == []


def test_run_table_rows(stored: list[Run]) -> None:
    fields = {row[0]: row[1] for row in rows(run_table(stored[0]))}
    assert list(fields) == [
        "kind",
        "device",
        "model",
        "model digest",
        "recipe",
        "created",
        "status",
        "job",
        "artifacts",
        "fingerprint",
        "labels",
    ]
    assert fields["model"] == "models/resnet50/" and fields["model digest"] == "sha256:abcdef0123"
    assert fields["artifacts"] == "device=orin" and fields["labels"] == "-"
    hostile = render(run_table(stored[2]))
    assert_literal(hostile)
    assert hostile.count(SHOWN) == 2 and "models/[red]m" in hostile  # device, artifacts


def test_comparison_table_rows_and_regressions(stored: list[Run]) -> None:
    cmp = compare(stored[0], stored[1], threshold_pct=5.0)
    table = comparison_table(cmp)
    assert header(table) == ["batch", "metric", "r1", "r2", "delta", ""]
    got = rows(table)
    assert ["1", "p50_ms", "2", "3", "+50.0%", "REGRESSION"] in got
    assert ["8", "throughput_per_s", "8000", "8000", "+0.0%", ""] in got
    assert len(got) == len(cmp.deltas)
    text = render(table)
    assert "r1 -> r2 (bench)" in text and "worse by more than 5%" in text


# --------------------------------------------------------------------------- recipes


def test_recipes_table_rows() -> None:
    table = recipes_table(list_recipes())
    assert header(table) == ["name", "family", "precision", "dynamic", "device overrides"]
    bert = next(r for r in rows(table) if r[0] == "bert-base")
    assert bert == [
        "bert-base",
        "nlp",
        "FP16",
        "Optimal",
        "agx-orin-64gb, nano-4gb, orin-nano-8gb, xavier-nx-8gb",
    ]
    assert [r[0] for r in rows(table)] == [r.name for r in list_recipes()]


def test_recipe_table_rows_for_a_device_class() -> None:
    table = recipe_table(resolve(load_recipe("bert-base"), "nano-4gb"))
    fields = {row[0]: row[1] for row in rows(table)}
    assert fields["device class"] == "nano-4gb"
    assert fields["override"] == (
        "devices.nano-4gb: allow_build_at_runtime, dynamic_shapes, workspace"
    )
    assert fields["workspace"] == "256MiB" and fields["allow_build_at_runtime"] == "False"
    assert fields["build shapes"] == (
        "{'input_ids': [1, 128], 'attention_mask': [1, 128], 'token_type_ids': [1, 128]}"
    )
    assert fields["bench batch sizes"] == "[1]"  # a list of ints prints as written
    assert fields["op denylist"] == "-"
    plain = {row[0]: row[1] for row in rows(recipe_table(resolve(load_recipe("bert-base"))))}
    assert plain["device class"] == "(none)" and plain["override"] == "(none)"


def test_recipe_text_is_not_markup(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(
        f"name: odd\ndescription: '{MARKUP} [red]'\nfamily: other\n"
        "inputs: [{name: x, dtype: float32, shape: [-1, 4]}]\n"
        "op_denylist: [Foo]\n"
    )
    table = recipe_table(resolve(load_recipe_file(path)))
    fields = {row[0]: row[1] for row in rows(table)}
    assert fields["description"] == f"{MARKUP} [red]"
    assert fields["op denylist"] == "Foo"
