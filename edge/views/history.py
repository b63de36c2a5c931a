"""Tables of the run history: the runs list, one run's fields, and a comparison.

Stored runs hold what devices sent, so every cell goes through `safe_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from edge.core.untrusted import safe_text
from edge.history.compare import Comparison, comparison_rows
from edge.history.store import Run
from edge.views.layout import FitTable

SCENARIOS = ("single-stream", "offline")  # the bench scenarios with a headline of their own


def headline(run: Run) -> str:
    """One line that says what the run found."""
    m: dict[str, Any] = run.metrics
    if run.kind == "bench" and m.get("scenario") in SCENARIOS and m.get("headline"):
        return f"{m['headline']} ({m['scenario']})"  # what the scenario measures
    if run.kind == "bench" and m.get("runs"):
        first = m["runs"][0]
        text = (
            f"bs{first['batch_size']} p50 {first['latency_ms']['p50']:.3f} ms, "
            f"{first['throughput_per_s']:,.0f}/s"
        )
        return text + (f" (+{len(m['runs']) - 1} batch sizes)" if len(m["runs"]) > 1 else "")
    if run.kind == "convert" and m.get("summary"):
        s = m["summary"]
        return (
            f"{m.get('backend') or '?'} {m.get('precision') or ''} "
            f"{len(s.get('engines') or [])} engines, {s.get('percent_converted', 0):.1f}%"
        )
    if run.kind == "validate" and m.get("validation"):
        return "outputs match" if m["validation"].get("passed") else "outputs differ"
    return m.get("error") or "-"


def runs_table(runs: Sequence[Run]) -> Table:
    """`edge runs ls`: one row per run; the recipe column only when a run has one."""
    recipes = any(r.recipe for r in runs)
    t = FitTable(title="Runs")
    t.column("id").column("kind", drop=3).column("device").column("model")
    t.column("digest", drop=5)
    if recipes:
        t.column("recipe", drop=2)
    t.column("created", drop=4).column("status", drop=1).column("result", "text", least=36)
    for r in runs:
        name = r.model.rstrip("/").split("/")[-1] or r.model
        cells = [r.run_id, r.kind, r.device, name, (r.model_digest or "-")[:10]]
        cells += [r.recipe or "-"] if recipes else []
        cells += [r.created_at[:16].replace("T", " "), r.status, headline(r)]
        t.add_row(*(safe_text(c) for c in cells))
    return t


def run_table(run: Run) -> Table:
    """`edge runs show`: what ran where, with what, and where its files are."""
    meta = FitTable(title=safe_text(f"Run {run.run_id}"), show_header=False)
    meta.column("field", style="bold").column("value", "text")
    fp = run.fingerprint or {}
    for key, value in (
        ("kind", run.kind),
        ("device", run.device),
        ("model", run.model),
        ("model digest", run.model_digest or "-"),
        ("recipe", run.recipe or "-"),
        ("created", run.created_at),
        ("status", run.status),
        ("job", run.job_id or "-"),
        ("artifacts", ", ".join(f"{k}={v}" for k, v in run.artifacts.items() if v) or "-"),
        ("fingerprint", ", ".join(f"{k}={v}" for k, v in fp.items()) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in run.labels.items()) or "-"),
    ):
        meta.add_row(key, safe_text(value))
    return meta


def comparison_table(cmp: Comparison) -> Table:
    """`comparison_rows` as a rich Table; regressions in red."""
    t = FitTable(title=safe_text(f"{cmp.a} -> {cmp.b} ({cmp.kind})"))
    t.column("batch", "number").column("metric").column(safe_text(cmp.a), "number")
    t.column(safe_text(cmp.b), "number").column("delta", "number").column("", "text")
    for row in comparison_rows(cmp):
        t.add_row(*(safe_text(c) for c in row), style="bold red" if row[-1] else None)
    t.caption = f"delta = (B - A) / A; regression: worse by more than {cmp.threshold_pct:g}%"
    if cmp.noisy:
        t.caption += (
            f"; {len(cmp.noisy)} noisy, not comparable: a run's timings varied by more than "
            "10% (no verdict; rerun with a longer --duration on an idle device)"
        )
    return t
