"""The run store: round trips, filters, compare, export, schema migrations, the CLI."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from device_agent.protocol import (
    BenchOptions,
    BenchResult,
    BenchRun,
    ConversionSummary,
    ConvertOptions,
    ConvertResult,
    Engine,
    LatencyStats,
    OutputCheck,
    PowerStats,
    TelemetrySample,
    ValidateResult,
    ValidationReport,
)
from edge.cli.runs import app
from edge.core.errors import EdgeError
from edge.history.compare import compare
from edge.history.export import export
from edge.history.store import SCHEMA_VERSION, RunStore

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "runs-schema1.sqlite"
runner = CliRunner()


def latency(base: float) -> LatencyStats:
    return LatencyStats(
        p50=base,
        p90=base * 1.2,
        p95=base * 1.3,
        p99=base * 1.5,
        mean=base * 1.05,
        min=base * 0.9,
        max=base * 2.0,
        std=base * 0.1,
        cv=0.1,
    )


def bench(
    device: str = "orin-1",
    scale: float = 1.0,
    tput: float = 1.0,
    power: bool = True,
    sizes: tuple = (1, 4, 8),
    model: str = "models/resnet50",
    backend: str = "tftrt",
) -> BenchResult:
    """A bench result; `scale` multiplies latencies and energy, `tput` throughput."""
    runs = []
    for bs in sizes:
        p = None
        if power and bs != 1:  # batch 1 without power: a mixed result
            p = PowerStats(
                avg_mw=5000.0 * scale + bs,
                peak_mw=7000.0,
                energy_per_inference_mj=10.0 * scale / bs,
            )
        runs.append(
            BenchRun(
                batch_size=bs,
                iterations=100,
                latency_ms=latency(2.0 * bs * scale),
                throughput_per_s=500.0 * bs**0.5 * tput,
                wall_seconds=3.0,
                power=p,
                telemetry=[TelemetrySample(ts=100.0 + i, power_in_mw=5000.0 + i) for i in range(3)]
                if p
                else [],
            )
        )
    return BenchResult(
        device=device,
        status="succeeded",
        backend=backend,
        model=model,
        runs=runs,
        job_id=f"j-{device}",
        options=BenchOptions(batch_sizes=[1]),
    )


def convert(
    device: str = "orin-1", pct: float = 90.0, engines: int = 2, seconds: float = 40.0
) -> ConvertResult:
    summary = ConversionSummary(
        engines=[Engine(f"TRTEngineOp_{i}", 10) for i in range(engines)],
        ops_total=100,
        ops_converted=int(pct),
        percent_converted=pct,
    )
    return ConvertResult(
        device=device,
        status="succeeded",
        backend="tftrt",
        precision="FP16",
        output_model="/root/.edge/jobs/j1/artifacts/model",
        summary=summary,
        options=ConvertOptions(precision="FP16"),
        job_id="j1",
        seconds=seconds,
    )


def validate(device: str = "orin-1") -> ValidateResult:
    report = ValidationReport(passed=True, outputs={"out": OutputCheck(1e-4, 1e-3, True)})
    return ValidateResult(
        device=device, status="succeeded", model="m", converted="c", validation=report, job_id="j2"
    )


def test_round_trip_and_ids(tmp_path: Path) -> None:
    results = [
        ("bench", bench()),
        ("bench", bench(power=False)),
        ("convert", convert()),
        ("validate", validate()),
    ]
    with RunStore(tmp_path / "runs.sqlite") as store:
        stored = [
            store.record(k, r, "models/resnet50", "sha256:abc", {"trt": "8.5"}, "fp16")
            for k, r in results
        ]
        for (kind, original), run in zip(results, stored):
            again = store.get(run.run_id)
            assert again.result() == original
            assert store.get(str(run.id)).result() == original  # "12" as well as "r12"
            assert again.kind == kind and again.device == "orin-1"
            assert again.fingerprint == {"trt": "8.5"} and again.recipe == "fp16"
            assert again.job_id == original.job_id
            assert again.artifacts["job_id"] == original.job_id
    assert [r.run_id for r in stored] == ["r1", "r2", "r3", "r4"]
    assert stored[0].options == BenchOptions(batch_sizes=[1]).to_dict()
    assert stored[2].artifacts["output_model"] == "/root/.edge/jobs/j1/artifacts/model"
    assert stored[3].options is None


def test_default_path_is_under_edge_home(edge_home: Path) -> None:
    with RunStore() as store:
        store.record("bench", bench(), "m")
    assert (edge_home / "data" / "runs.sqlite").is_file()


def test_unknown_and_malformed_ids(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        for bad in ("r99", "xyz", "r"):
            with pytest.raises(EdgeError) as err:
                store.get(bad)
            assert "edge runs ls" in (err.value.hint or "")


def test_list_filters(tmp_path: Path) -> None:
    with RunStore(tmp_path / "r.sqlite") as store:
        store.record("bench", bench("orin-1"), "models/resnet50", "aaaa1111")
        store.record("bench", bench("nano-1"), "models/resnet50", "aaaa1111")
        store.record("convert", convert("orin-1"), "models/mobilenet_v2", "bbbb2222")
        store.record("bench", bench("orin-1"), "models/mobilenet_v2", "bbbb2222")
        ids = lambda runs: [r.run_id for r in runs]  # noqa: E731
        assert ids(store.list()) == ["r1", "r2", "r3", "r4"]
        assert ids(store.list(device="orin-1")) == ["r1", "r3", "r4"]
        assert ids(store.list(kind="convert")) == ["r3"]
        assert ids(store.list(model="mobilenet")) == ["r3", "r4"]
        assert ids(store.list(model="aaaa")) == ["r1", "r2"]  # digest prefix
        assert ids(store.list(model="1111")) == []  # not a prefix
        assert ids(store.list(model="%")) == []  # LIKE wildcards are literal
        assert ids(store.list(limit=2)) == ["r3", "r4"]  # the newest two, oldest first
        assert ids(store.list(device="orin-1", kind="bench", model="resnet")) == ["r1"]


def _pct(a: float, b: float) -> float:
    return (b - a) / a * 100.0


def test_compare_bench_deltas(tmp_path: Path) -> None:
    ra = bench(sizes=(1, 4, 8))
    rb = bench(scale=1.03, tput=0.9, sizes=(1, 4, 16))
    with RunStore(tmp_path / "r.sqlite") as store:
        a, b = store.record("bench", ra, "m"), store.record("bench", rb, "m")
    cmp = compare(a, b, threshold_pct=5.0)
    assert cmp.only_in_a == [8] and cmp.only_in_b == [16]
    got = {(d.batch_size, d.metric): d for d in cmp.deltas}
    expected = {}
    for x, y in zip(ra.runs[:2], rb.runs[:2]):
        assert x.batch_size == y.batch_size
        bs = x.batch_size
        for name in ("p50", "p90", "p99", "mean"):
            expected[(bs, f"{name}_ms")] = _pct(
                getattr(x.latency_ms, name), getattr(y.latency_ms, name)
            )
        expected[(bs, "throughput_per_s")] = _pct(x.throughput_per_s, y.throughput_per_s)
        if x.power and y.power:
            expected[(bs, "power_avg_mw")] = _pct(x.power.avg_mw, y.power.avg_mw)
            expected[(bs, "energy_per_inference_mj")] = _pct(
                x.power.energy_per_inference_mj, y.power.energy_per_inference_mj
            )
    assert set(got) == set(expected)
    assert (1, "power_avg_mw") not in got and (4, "energy_per_inference_mj") in got
    for key, pct in expected.items():
        assert got[key].delta_pct == pytest.approx(pct)
    # 3% slower is within 5%; 10% less throughput is a regression.
    assert {(d.batch_size, d.metric) for d in cmp.regressions} == {
        (1, "throughput_per_s"),
        (4, "throughput_per_s"),
    }
    strict = compare(a, b, threshold_pct=2.0)
    assert (1, "p50_ms") in {(d.batch_size, d.metric) for d in strict.regressions}
    lenient = compare(a, b, threshold_pct=15.0)
    assert lenient.regressions == []
    better = compare(b, a, threshold_pct=5.0)  # faster and more throughput: no regression
    assert [d for d in better.regressions if d.metric == "throughput_per_s"] == []


def test_compare_convert_and_mismatched_kinds(tmp_path: Path) -> None:
    ca, cb = convert(pct=90.0, engines=2, seconds=40.0), convert(pct=80.0, engines=3, seconds=41.0)
    with RunStore(tmp_path / "r.sqlite") as store:
        a, b = store.record("convert", ca, "m"), store.record("convert", cb, "m")
        c = store.record("bench", bench(), "m")
        d = store.record("bench", bench(sizes=(2,)), "m")
    cmp = compare(a, b)
    got = {d.metric: d for d in cmp.deltas}
    assert got["percent_converted"].delta_pct == pytest.approx(_pct(90.0, 80.0))
    assert got["engines"].delta_pct == pytest.approx(_pct(2, 3))
    assert got["seconds"].delta_pct == pytest.approx(_pct(40.0, 41.0))
    assert {d.metric for d in cmp.regressions} == {"percent_converted", "engines"}
    with pytest.raises(EdgeError):
        compare(a, c)
    with pytest.raises(EdgeError):  # no common batch size
        compare(c, d)


def _store_pair(scale: float) -> None:
    with RunStore() as store:
        store.record("bench", bench(), "m")
        store.record("bench", bench(scale=scale), "m")


def test_cli_compare_fail_on_regression() -> None:
    _store_pair(1.5)  # 50% slower
    plain = runner.invoke(app, ["compare", "r1", "r2"])
    assert plain.exit_code == 0, plain.output
    assert "REGRESSION" in plain.output
    failing = runner.invoke(app, ["compare", "r1", "r2", "--fail-on-regression"])
    assert failing.exit_code == 1
    loose = runner.invoke(app, ["compare", "1", "2", "--threshold", "80", "--fail-on-regression"])
    assert loose.exit_code == 0, loose.output
    data = json.loads(runner.invoke(app, ["compare", "r1", "r2", "--json"]).stdout)
    assert data["regressions"] == sum(d["regression"] for d in data["deltas"]) > 0


def test_cli_compare_no_regression_passes() -> None:
    _store_pair(1.0)
    result = runner.invoke(app, ["compare", "r1", "r2", "--fail-on-regression"])
    assert result.exit_code == 0, result.output


def test_ls_json_contract_and_show() -> None:
    with RunStore() as store:
        store.record("bench", bench(), "models/resnet50", "abc123")
        store.record("convert", convert(), "models/resnet50", "abc123")
    result = runner.invoke(app, ["ls", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["r1", "r2"]
    for row in rows:
        assert {"id", "kind", "device", "model_digest", "created_at", "status"} <= set(row)
        assert row["created_at"].endswith("+00:00")
    assert (
        json.loads(runner.invoke(app, ["ls", "--json", "--kind", "convert"]).stdout)[0]["kind"]
        == "convert"
    )
    table = runner.invoke(app, ["ls"])
    assert table.exit_code == 0 and "r2" in table.output
    show = runner.invoke(app, ["show", "r1"])
    assert show.exit_code == 0, show.output
    assert "Benchmark" in show.output and "avg mW" in show.output
    assert "Conversion" in runner.invoke(app, ["show", "r2"]).output
    assert (
        json.loads(runner.invoke(app, ["show", "2", "--json"]).stdout)["metrics"]["precision"]
        == "FP16"
    )


def test_export_csv_and_json(tmp_path: Path) -> None:
    rb = bench(sizes=(1, 4))
    with RunStore() as store:
        store.record("bench", rb, "models/resnet50")
        store.record("convert", convert(), "models/resnet50")
        runs = store.list()
    rows = list(csv.DictReader(io.StringIO(export(runs, "csv"))))
    assert len(rows) == 3  # two batch sizes, one convert run
    for row, b in zip(rows, rb.runs):
        assert row["run_id"] == "r1" and int(row["batch_size"]) == b.batch_size
        assert float(row["p95_ms"]) == pytest.approx(b.latency_ms.p95)
        assert float(row["throughput_per_s"]) == pytest.approx(b.throughput_per_s)
        energy = b.power.energy_per_inference_mj if b.power else None
        assert (
            float(row["energy_per_inference_mj"]) if row["energy_per_inference_mj"] else None
        ) == (pytest.approx(energy) if energy else None)
    assert rows[2]["kind"] == "convert" and rows[2]["batch_size"] == ""
    full = json.loads(export(runs, "json"))
    assert [r["id"] for r in full] == ["r1", "r2"] and full[0]["metrics"] == rb.to_dict()
    out = tmp_path / "out" / "runs.csv"
    result = runner.invoke(app, ["export", "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert list(csv.DictReader(out.open(newline=""))) == rows
    stdout = runner.invoke(app, ["export", "--format", "json", "--kind", "bench"]).stdout
    assert [r["id"] for r in json.loads(stdout)] == ["r1"]


def test_migrates_schema1_fixture(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        before = db.execute(
            "SELECT id, kind, device, model, created_at, status, result_json FROM runs ORDER BY id"
        ).fetchall()
    assert len(before) == 2
    with RunStore(path) as store:
        runs = store.list()
        assert [(r.id, r.kind, r.device, r.model, r.created_at, r.status) for r in runs] == [
            row[:6] for row in before
        ]
        for run, row in zip(runs, before):
            assert run.metrics == json.loads(row[6])
            assert run.model_digest is None
            assert run.options == json.loads(row[6]).get("options")
            assert run.job_id == json.loads(row[6])["job_id"]
            assert run.result().device == "orin-1"
            assert run.context == {}  # recorded before schema 3 kept any
        assert runs[1].options["batch_sizes"] == [1, 8]
        assert store.record("bench", bench(), "m", "digest").run_id == "r3"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        cols = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    assert {
        "model_digest",
        "fingerprint",
        "recipe",
        "options",
        "metrics",
        "artifacts",
        "job_id",
        "labels",
        "context",
    } <= cols


def test_context_is_kept(tmp_path: Path) -> None:
    """What a run was made with beyond its result (`record_runs`: model size, facts)."""
    model = tmp_path / "m"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"x" * 1234)
    with RunStore(tmp_path / "runs.sqlite") as store:
        context = {"model_bytes": 1234, "device_facts": {"jetson": {"nvpmodel": "MAXN"}}}
        run = store.record("bench", bench(), "m", context=context)
        assert store.get(run.run_id).context == context
        assert store.record("bench", bench(), "m").context == {}
    from edge.history.record import run_context

    assert run_context(model) == {"model_bytes": 1234}
    assert run_context(tmp_path / "gone") == {}  # a model no longer on this host


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        store.record("bench", bench(), "m")
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(EdgeError) as err:
        RunStore(path)
    assert "newer" in err.value.message and "Upgrade jetson-edge" in (err.value.hint or "")
    with sqlite3.connect(path) as db:  # left untouched
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.history.store as runs_mod

    path = tmp_path / "runs.sqlite"
    shutil.copy(FIXTURE, path)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE runs ADD COLUMN half_done TEXT")
        raise RuntimeError("disk on fire")

    monkeypatch.setitem(runs_mod.MIGRATIONS, 2, broken)
    with pytest.raises(RuntimeError):
        RunStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "half_done" not in {r[1] for r in db.execute("PRAGMA table_info(runs)")}
