"""`runs compare` between noisy runs: "noisy, not comparable", never a REGRESSION, and
`--fail-on-regression` does not fail on them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from device_agent.protocol import BenchResult, BenchRun, LatencyStats
from edge.cli.runs import app
from edge.history.compare import compare, comparison_rows
from edge.history.store import RunStore

runner = CliRunner()


def bench(p50: float, tput: float, noisy_at: tuple[int, ...] = ()) -> BenchResult:
    runs = []
    for bs in (1, 8):
        cv = 0.35 if bs in noisy_at else 0.02
        lat = LatencyStats(
            p50=p50 * bs, p90=p50 * bs * 1.2, p95=p50 * bs * 1.3, p99=p50 * bs * 1.5,
            mean=p50 * bs, min=p50 * bs * 0.9, max=p50 * bs * 3, std=p50 * bs * cv, cv=cv,
        )  # fmt: skip
        runs.append(BenchRun(bs, 500, lat, tput * bs, noisy=bs in noisy_at))
    return BenchResult("orin-1", "succeeded", backend="tftrt", model="/m/resnet50", runs=runs)


def _store(*results: BenchResult) -> list:
    with RunStore() as store:
        return [store.record("bench", r, "/m/resnet50") for r in results]


def test_noisy_batch_is_not_a_regression() -> None:
    a, b = _store(bench(2.0, 500.0), bench(3.0, 300.0, noisy_at=(8,)))  # 50% slower
    cmp = compare(a, b, threshold_pct=5.0)
    by_batch = {bs: [d for d in cmp.deltas if d.batch_size == bs] for bs in (1, 8)}
    assert all(d.regression and not d.noisy for d in by_batch[1])  # quiet: a real regression
    assert all(d.noisy and not d.regression for d in by_batch[8])
    assert {d.batch_size for d in cmp.regressions} == {1}
    verdicts = {(r[0], r[-1]) for r in comparison_rows(cmp)}
    assert verdicts == {("1", "REGRESSION"), ("8", "noisy, not comparable")}
    data = cmp.to_dict()
    assert data["noisy"] == len(by_batch[8]) and data["regressions"] == len(by_batch[1])


def test_noisy_baseline_counts_too() -> None:
    a, b = _store(bench(2.0, 500.0, noisy_at=(1, 8)), bench(3.0, 300.0))
    cmp = compare(a, b)
    assert cmp.regressions == [] and len(cmp.noisy) == len(cmp.deltas) > 0


def test_cli_fail_on_regression_ignores_noisy_rows() -> None:
    _store(bench(2.0, 500.0, noisy_at=(1, 8)), bench(3.0, 300.0, noisy_at=(1,)))
    result = runner.invoke(app, ["compare", "r1", "r2", "--fail-on-regression"])
    assert result.exit_code == 0, result.output
    assert "noisy, not comparable" in result.output and "REGRESSION" not in result.output
    data = json.loads(runner.invoke(app, ["compare", "r1", "r2", "--json"]).stdout)
    assert data["regressions"] == 0 and data["noisy"] == len(data["deltas"])
    assert all(d["noisy"] and not d["regression"] for d in data["deltas"])
    # the same slowdown measured quietly still fails
    _store(bench(2.0, 500.0), bench(3.0, 300.0))
    failing = runner.invoke(app, ["compare", "r3", "r4", "--fail-on-regression"])
    assert failing.exit_code == 1 and "REGRESSION" in failing.output
