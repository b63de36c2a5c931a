"""Export stored runs: flat CSV rows (one per run and batch size), or full JSON."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Dict, List, Sequence

from edge.core.errors import EdgeError
from edge.history.store import Run

EXPORT_COLUMNS = (
    "run_id",
    "kind",
    "device",
    "model",
    "created_at",
    "status",
    "batch_size",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "mean_ms",
    "throughput_per_s",
    "power_avg_mw",
    "energy_per_inference_mj",
)


def export_rows(runs: Sequence[Run]) -> List[Dict[str, Any]]:
    """One flat row per (run, batch size); runs without batch results get one row."""
    out: List[Dict[str, Any]] = []
    for run in runs:
        base = {
            "run_id": run.run_id,
            "kind": run.kind,
            "device": run.device,
            "model": run.model,
            "created_at": run.created_at,
            "status": run.status,
        }
        batches = run.result().runs if run.kind == "bench" else []
        if not batches:
            out.append(base)
        for b in batches:
            lat = b.latency_ms
            out.append(
                {
                    **base,
                    "batch_size": b.batch_size,
                    "p50_ms": lat.p50,
                    "p90_ms": lat.p90,
                    "p95_ms": lat.p95,
                    "p99_ms": lat.p99,
                    "mean_ms": lat.mean,
                    "throughput_per_s": b.throughput_per_s,
                    "power_avg_mw": b.power.avg_mw if b.power else None,
                    "energy_per_inference_mj": b.power.energy_per_inference_mj if b.power else None,
                }
            )
    return out


def export(runs: Sequence[Run], format: str = "csv") -> str:
    """CSV (flat, per batch size) or JSON (full run dicts) text."""
    if format == "json":
        return json.dumps([r.to_dict() for r in runs], indent=2, sort_keys=True) + "\n"
    if format != "csv":
        raise EdgeError(f"Unknown export format {format!r}.", "Use --format csv or json.")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS, restval="")
    writer.writeheader()
    for row in export_rows(runs):
        writer.writerow({k: csv_cell(v) for k, v in row.items()})
    return buf.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet cannot run (OWASP CSV injection): text starting with
    = + - @ tab or CR gets a leading `'`; numbers, and text that is a number, stay as is."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
