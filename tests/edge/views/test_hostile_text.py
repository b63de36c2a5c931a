"""Device-supplied text is shown as data: no rich markup, no escape sequences, no HTML.

A hostile device (tests/hostile_device.py, behind a real sshd) answers with well-formed
replies whose strings are rich markup (`[/x]` crashes rich, `[bold red]` restyles), an
OSC 8 hyperlink and a clear-screen sequence. The real `edge` CLI runs against it as a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import edge_bin
from hostile_device import hostile_python, json_reply, set_replies
from sshfleet import SshFleet

from device_agent.protocol import (
    BenchResult,
    BenchRun,
    ConversionSummary,
    ConvertResult,
    Engine,
    LatencyStats,
    NonConverted,
)
from edge.core.untrusted import clean, safe_html, safe_plot, safe_text
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.history.store import RunStore
from edge.views.report import build_report

CLOSE = "[/x]"
STYLE = "[bold red]"
LINK = "\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"
CLEAR = "\x1b[2J"
HOSTILE = f"{CLOSE} {STYLE}{LINK}{CLEAR} $x_{{"  # `$x_{` is broken mathtext too


def _no_raw_control(text: str) -> None:
    assert "\x1b" not in text and "\x9b" not in text and "\x9d" not in text
    assert "http://evil" not in text  # the OSC 8 target never reaches the terminal


@pytest.fixture
def hostile(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> Path:
    """A fleet with one device `h` (sshd d1) whose python is the hostile stand-in."""
    exe = hostile_python(tmp_path / "hostile", device_python)
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    inv.add(Device(name="h", host="d1", python=str(exe), root=str(tmp_path / "root")))
    inv.save()
    return tmp_path / "hostile"


def edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="200")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def _facts() -> dict[str, Any]:
    from device_agent.facts import collect

    facts = collect().to_dict()
    facts.update(python=HOSTILE, tensorflow=HOSTILE, hostname=HOSTILE, machine=HOSTILE)
    facts["jetson"] = {"module": HOSTILE, "l4t": HOSTILE, "jetpack": HOSTILE, "nvpmodel": HOSTILE}
    return facts


def test_safe_text_round_trips_through_rich() -> None:
    from rich.console import Console
    from rich.text import Text

    console = Console(width=300, color_system=None, record=True)
    console.print(safe_text(HOSTILE))
    out = console.export_text()
    assert out.strip() == f"{CLOSE} {STYLE}link $x_{{"
    assert Text.from_markup(safe_text(HOSTILE)).plain == clean(HOSTILE)
    assert clean("a\x00b\rc\td\ne\x7f\x85") == "a\ufffdb\ufffdc\td\ne\ufffd\ufffd"
    assert "<" not in safe_html("<script>") and "\\$" in safe_plot("$x$")


def test_info_shows_hostile_facts_as_text(hostile: Path) -> None:
    set_replies(hostile, {"info": json_reply(_facts())})
    proc = edge_cli("info", "--to", "h")
    assert proc.returncode == 0, proc.stderr
    _no_raw_control(proc.stdout + proc.stderr)
    assert CLOSE in proc.stdout and STYLE in proc.stdout and "link" in proc.stdout


def test_device_error_and_hint_print_as_text(hostile: Path) -> None:
    set_replies(hostile, {"info": json_reply({"error": HOSTILE, "hint": HOSTILE}, exit=3)})
    proc = edge_cli("info", "--to", "h")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    _no_raw_control(proc.stdout + proc.stderr)
    assert CLOSE in proc.stderr and STYLE in proc.stderr


def _job(**kw: Any) -> dict[str, Any]:
    now = time.time()
    job = {
        "job_id": "j-1",
        "kind": "convert",
        "status": "failed",
        "created_at": now,
        "updated_at": now,
        "error": HOSTILE,
        "log_tail": HOSTILE,
    }
    return job | kw


def test_jobs_ls_shows_hostile_jobs_as_text(hostile: Path) -> None:
    set_replies(hostile, {"jobs": json_reply([_job(), _job(job_id=f"j-{CLOSE}")])})
    proc = edge_cli("jobs", "ls", "--to", "h")
    _no_raw_control(proc.stdout + proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert CLOSE in proc.stdout + proc.stderr


def test_attach_prints_hostile_events_and_result_as_text(hostile: Path) -> None:
    events = "".join(
        json.dumps(e) + "\n"
        for e in (
            {"seq": 0, "ts": 1.0, "kind": "log", "message": HOSTILE},
            {"seq": 1, "ts": 2.0, "kind": "status", "status": "failed", "message": HOSTILE},
        )
    )
    summary = ConversionSummary(
        ops_total=3,
        ops_converted=1,
        percent_converted=33.3,
        engines=[
            Engine(
                name=HOSTILE,
                nodes=1,
                ops={HOSTILE: 1},
                input_shapes=[HOSTILE],
                output_shapes=[HOSTILE],
            )
        ],
        non_converted=[NonConverted(op=HOSTILE, count=1, reason=HOSTILE)],
    )
    result = ConvertResult(
        device="h",
        status="failed",
        backend=HOSTILE,
        precision=HOSTILE,
        error=HOSTILE,
        hint=HOSTILE,
        summary=summary,
        seconds=1.0,
    )
    set_replies(
        hostile,
        {
            "status": json_reply(_job()),
            "follow": {"stdout": events},
            "result": json_reply(result.to_dict()),
        },
    )
    proc = edge_cli("jobs", "attach", "j-1", "--to", "h")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr, proc.stderr
    _no_raw_control(proc.stdout + proc.stderr)
    assert proc.stderr.count(CLOSE) >= 3 and proc.stdout.count(CLOSE) >= 3  # events, tables


def test_report_html_and_plots_escape_device_text(tmp_path: Path) -> None:
    lat = LatencyStats(p50=1.0, p90=1.2, p95=1.3, p99=1.5, mean=1.1, min=0.9, max=2.0)
    runs = [
        BenchRun(
            batch_size=bs,
            iterations=10,
            latency_ms=lat,
            throughput_per_s=100.0 * bs,
            wall_seconds=1.0,
        )
        for bs in (1, 8)
    ]
    bench = BenchResult(
        device=HOSTILE, status="succeeded", backend=HOSTILE, model=HOSTILE, runs=runs
    )
    conv = ConvertResult(
        device=HOSTILE,
        status=HOSTILE,
        backend=HOSTILE,
        error=HOSTILE,
        summary=ConversionSummary(
            ops_total=1,
            ops_converted=0,
            percent_converted=0.0,
            non_converted=[NonConverted(op="<script>", count=1, reason=HOSTILE)],
        ),
    )
    with RunStore() as store:
        ids = [
            store.record("bench", bench, HOSTILE).run_id,
            store.record("convert", conv, HOSTILE).run_id,
        ]
    rep = build_report(ids, tmp_path / "out")
    page = rep.html.read_text(encoding="utf-8")
    _no_raw_control(page)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert page.count(CLOSE) >= 4 and page.count(STYLE) >= 4 and "link" in page
    assert rep.plots  # the `$` label did not break matplotlib's mathtext
