"""`edge report`: one self-contained HTML page (tables + PNG plots) for stored runs.

The page opens with what was compared and the speedup, then the runs, devices, models and
bench settings, the results (each row with its run id and model) and the plots
(`report_plots`). Conversion, power and validation rows are the terminal's tables, read
back by `table_rows`, so the numbers cannot disagree. Device text is escaped for each
medium (edge.core.untrusted): rich markup in the tables, HTML in the page, mathtext in the
plots. Host paths (models, EDGE_HOME, the home directory) are left out of the page: models
are shown by name and digest.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from rich.table import Table
from rich.text import Text

from device_agent.protocol import BenchResult
from edge.core.errors import EdgeError
from edge.core.paths import data_dir
from edge.core.settings import settings
from edge.core.untrusted import safe_html, safe_text
from edge.history.compare import compare, comparison_rows
from edge.history.store import Run, RunStore
from edge.views import report_data as data
from edge.views.report_data import Series, base_name, bench_rows, series_of
from edge.views.report_plots import PLOTS, latency_axis
from edge.views.tables import bench_table, convert_tables

__all__ = [
    "PLOTS",
    "Report",
    "Series",
    "bench_rows",
    "build_report",
    "report",
    "result_tables",
    "series_of",
]


@dataclass
class Report:
    html: Path
    plots: List[Path] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)  # plot title -> why
    points: Dict[str, int] = field(default_factory=dict)  # plot title -> points drawn
    headline: List[str] = field(default_factory=list)
    outliers: List[str] = field(default_factory=list)  # latency values beyond the plot's axis


# --------------------------------------------------------------------------- tables


def table_rows(table: Table) -> Tuple[List[str], List[List[str]]]:
    """Headers and plain-text rows of a rich Table (markup stripped)."""

    def plain(cell: Any) -> str:
        if isinstance(cell, Text):
            return cell.plain
        return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)

    headers = [plain(c.header) for c in table.columns]
    columns = [[plain(cell) for cell in c.cells] for c in table.columns]
    return headers, [list(r) for r in zip(*columns)]


def power_table(results: Sequence[BenchResult]) -> Optional[Table]:
    """Power and energy per (device, batch size); None when no run measured power."""
    rows = [(r, b) for r in results for b in r.runs if b.power]
    if not rows:
        return None
    t = Table(title="Power")
    for col in ("device", "batch", "avg mW", "peak mW", "mJ / inference", "GPU %", "peak C"):
        t.add_column(col, justify="left" if col == "device" else "right")
    for r, b in rows:
        p = b.power
        assert p is not None
        t.add_row(
            safe_text(r.device),
            str(b.batch_size),
            f"{p.avg_mw:,.0f}",
            f"{p.peak_mw:,.0f}",
            f"{p.energy_per_inference_mj:.3f}",
            "-" if b.gpu_load_avg_pct is None else f"{b.gpu_load_avg_pct:.0f}",
            "-" if b.temp_peak_c is None else f"{b.temp_peak_c:.1f}",
        )
    return t


def validate_table(results: Sequence[Any]) -> Table:
    """Per-output errors of validate results."""
    t = Table(title="Validation")
    for col in ("device", "status", "output", "max abs err", "max rel err", "top-1", "passed"):
        t.add_column(col)
    for r in results:
        outputs = r.validation.outputs if r.validation else {}
        if not outputs:
            t.add_row(safe_text(r.device), safe_text(r.status), "-", "-", "-", "-", "-")
        for name, o in outputs.items():
            top1 = "-" if o.top1_agreement is None else f"{o.top1_agreement:.3f}"
            t.add_row(
                safe_text(r.device),
                safe_text(r.status),
                safe_text(name),
                f"{o.max_abs_err:.3g}",
                f"{o.max_rel_err:.3g}",
                top1,
                "yes" if o.passed else "NO",
            )
    return t


def result_tables(runs: Sequence[Run]) -> List[Table]:
    """The tables `edge runs show` prints and the report embeds, for these runs."""
    by_kind: Dict[str, List[Any]] = {}
    for run in runs:
        by_kind.setdefault(run.kind, []).append(run.result())
    tables: List[Table] = []
    if "convert" in by_kind:
        tables += [
            t for t in convert_tables(by_kind["convert"]).renderables if isinstance(t, Table)
        ]
    if "bench" in by_kind:
        # the bench table carries the power columns itself (the page adds its own table)
        tables.append(bench_table(by_kind["bench"]))
    if "validate" in by_kind:
        tables.append(validate_table(by_kind["validate"]))
    return tables


def _prefixed(
    runs: Sequence[Run], label: Dict[int, str], tables_of: Callable[[Any], List[Table]]
) -> List[Tuple[str, List[str], List[List[str]], str]]:
    """Each run's own tables with its run id and model (and device) in front: (title,
    headers, rows, caption), same-titled tables of several runs merged."""
    merged: Dict[str, Tuple[str, List[str], List[List[str]], str]] = {}
    for run in runs:
        for t in tables_of(run.result()):
            headers, rows = table_rows(t)
            title = Text.from_markup(str(t.title)).plain if t.title else ""
            device = safe_text(run.device)
            key = title.replace(f"{device}: ", "")  # per-device titles: one table of all
            caption = Text.from_markup(str(t.caption)).plain if t.caption else ""
            keep = [i for i, h in enumerate(headers) if h not in ("model", "device")]
            out = [[run.run_id, label[run.id], *(row[i] for i in keep)] for row in rows]
            if key in merged:
                merged[key][2].extend(out)
            else:
                merged[key] = (key, ["run", "model", *(headers[i] for i in keep)], out, caption)
    return list(merged.values())


def _convert_tables(result: Any) -> List[Table]:
    return [t for t in convert_tables([result]).renderables if isinstance(t, Table)]


def _power_tables(result: BenchResult) -> List[Table]:
    t = power_table([result])
    return [t] if t is not None else []


# --------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;
color:#222;line-height:1.35}
h1{font-size:1.45em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ddd;
padding-bottom:.2em;margin-top:1.6em}h3{font-size:1em;margin:1em 0 .2em}
.headline{font-size:1.1em;background:#f4f8f2;border-left:4px solid #4a4;padding:.5em .8em}
.headline p{margin:.2em 0}.meta{color:#666;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em;max-width:100%}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:left;vertical-align:top;
overflow-wrap:break-word}td.w{overflow-wrap:anywhere}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}
caption{caption-side:bottom;font-size:.85em;color:#666;text-align:left;padding-top:.2em}
tr.regression td{color:#b00;font-weight:bold}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
p.skipped{color:#777;font-style:italic}
@media (max-width:900px){body{padding:0 .5em}table{font-size:.75em}th,td{padding:.15em .3em}}
"""
_NUMBER = set("0123456789.,*x%+- ")
_LONG_TOKEN = 18


class _Redact:
    """Host paths out of page text: model paths -> their names, EDGE_HOME and the home
    directory -> placeholders (longest first, so a model under home keeps its name)."""

    def __init__(self, runs: Sequence[Run]) -> None:
        subs: Dict[str, str] = {}
        for r in runs:
            for path in (r.model, r.metrics.get("model"), data.output_of(r)):
                if isinstance(path, str) and ("/" in path or "\\" in path):
                    subs[path] = base_name(path)
        edge_home = settings().home
        for path, name in ((edge_home and str(edge_home), "$EDGE_HOME"), (str(data_dir()), "")):
            if path and len(path) > 1:
                subs[path] = name or "$EDGE_DATA"
        home = os.path.expanduser("~")
        if len(home) > 1:
            subs[home] = "~"
        self.subs = sorted(subs.items(), key=lambda kv: -len(kv[0]))

    def __call__(self, text: object) -> str:
        out = str(text)
        for path, name in self.subs:
            out = out.replace(path, name)
        return out


def _cell(text: str, clean: Callable[[object], str]) -> str:
    """A cell: numbers never wrap; a long unbroken token (a digest, a hostname, an error's
    path) may break anywhere, so the table fits the page; words wrap between words."""
    shown = clean(text)
    cls = ""
    if shown and set(shown) <= _NUMBER and any(c.isdigit() for c in shown):
        cls = ' class="n"'
    elif max((len(w) for w in shown.split()), default=0) > _LONG_TOKEN:
        cls = ' class="w"'
    return f"<td{cls}>{safe_html(shown)}</td>"


def _html_table(
    title: str,
    headers: List[str],
    rows: List[List[str]],
    clean: Callable[[object], str],
    caption: str = "",
    marked: Optional[List[bool]] = None,
) -> str:
    e = safe_html
    out = [f"<table><caption>{e(clean(caption))}</caption>" if caption else "<table>"]
    out.append("<tr>" + "".join(f"<th>{e(clean(h))}</th>" for h in headers) + "</tr>")
    for i, row in enumerate(rows):
        cls = ' class="regression"' if marked and marked[i] else ""
        out.append(f"<tr{cls}>" + "".join(_cell(str(c), clean) for c in row) + "</tr>")
    out.append("</table>")
    return (f"<h3>{e(clean(title))}</h3>" if title else "") + "".join(out)


def _converts_for(store: RunStore, runs: Sequence[Run]) -> List[Run]:
    """The stored convert runs of the report's devices: where its bench models came from."""
    devices = {r.device for r in runs if r.kind == "bench"}
    return [c for d in sorted(devices) for c in store.list(device=d, kind="convert", limit=200)]


def _comparison(
    runs: Sequence[Run], series: Sequence[Series], clean: Callable[[object], str]
) -> List[str]:
    """Two runs of one kind, before and after; not a native/converted pair (the headline
    compares those: a slower converted model is no regression of the native one)."""
    if len(runs) != 2 or runs[0].kind != runs[1].kind or data.pairs_of(series):
        return []
    try:
        cmp = compare(runs[0], runs[1])
    except EdgeError:
        return []
    rows = comparison_rows(cmp)
    return [
        _html_table(
            f"{cmp.a} -> {cmp.b}",
            ["batch", "metric", cmp.a, cmp.b, "delta", ""],
            rows,
            clean,
            f"regression: worse by more than {cmp.threshold_pct:g}%",
            [d.regression for d in cmp.deltas],
        )
    ]


def _sections(runs: Sequence[Run], series: Sequence[Series], clean: Any) -> List[str]:
    t = _html_table
    body = ["<h2>Runs</h2>"]
    body.append(
        t(
            "",
            ["run", "kind", "device", "model", "digest", "recipe", "created", "status"],
            [
                [r.run_id, r.kind, r.device, base_name(r.model), data.short_digest(r.model_digest)]
                + [r.recipe or "-", data.when(r.created_at), r.status]
                for r in runs
            ],
            clean,
        )
    )
    body.append("<h2>Devices</h2>")
    headers = ["device", "module", "JetPack", "TensorRT", "TensorFlow", "nvpmodel"]
    headers += ["jetson_clocks", "throttled"]
    notes = f"{data.FOOTNOTE_FACTS} {data.FOOTNOTE_CLOCKS}"
    body.append(t("", headers, data.device_rows(runs), clean, notes))
    body.append("<h2>Models</h2>")
    headers = ["name", "digest", "size", "precision", "backend", "role", "runs"]
    body.append(t("", headers, data.model_rows(runs, series), clean))
    if series:
        body.append("<h2>Bench settings</h2>")
        headers = ["run", "model", "batch sizes", "iterations", "warmup", "scenario"]
        headers += ["transfers timed", "CUDA graph", "telemetry", "native in job"]
        body.append(t("", headers, data.settings_rows(series), clean))
    body.append("<h2>Results</h2>")
    label = {s.run.id: s.label for s in series}
    label.update({r.id: f"{base_name(r.model)} @ {r.device}" for r in runs if r.id not in label})
    by_kind = {k: [r for r in runs if r.kind == k] for k in ("convert", "bench", "validate")}
    for title, headers, rows, caption in _prefixed(by_kind["convert"], label, _convert_tables):
        body.append(t(title, headers, rows, clean, caption))
    if series:
        headers, rows = bench_rows(series)
        noisy = any(b.noisy for s in series for b in s.result.runs)
        caption = "latency in ms" + ("; * noisy: coefficient of variation above 10%" * noisy)
        body.append(t("Benchmark", headers, rows, clean, caption))
        for title, headers, rows, caption in _prefixed(by_kind["bench"], label, _power_tables):
            body.append(t(title, headers, rows, clean, caption))
    tables: List[Table] = []
    if by_kind["validate"]:
        tables = [validate_table([r.result() for r in by_kind["validate"]])]
    for vt in tables:
        headers, rows = table_rows(vt)
        body.append(t("Validation", headers, rows, clean))
    return body + _comparison(runs, series, clean)


def build_report(run_ids: Sequence[str], out_dir: Path, store: Optional[RunStore] = None) -> Report:
    """Write report.html and the PNG plots for `run_ids` into `out_dir`."""
    if not run_ids:
        raise EdgeError("Name at least one run.", "List runs with: edge runs ls")
    own = store is None
    store = store or RunStore()
    try:
        runs = [store.get(i) for i in run_ids]
        converts = _converts_for(store, runs)
    finally:
        if own:
            store.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = Report(html=out_dir / "report.html")
    series = series_of(runs, converts)
    clean = _Redact([*runs, *converts])
    e = safe_html
    rep.headline = [clean(line) for line in data.headline(runs, series)]
    axis = latency_axis(series)
    rep.outliers = [
        clean(f"{o.stat} {o.value:.3f} ms of {o.label} at batch {o.batch}")
        for o in (axis.outliers if axis else [])
    ]
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>jetson-edge report</h1>",
        '<div class="headline">' + "".join(f"<p>{e(h)}</p>" for h in rep.headline) + "</div>",
        f'<p class="meta">runs {e(", ".join(r.run_id for r in runs))}; generated {generated}</p>',
        *_sections(runs, series, clean),
        "<h2>Plots</h2>",
    ]
    for name, title, fn, why in PLOTS:
        png = out_dir / f"{name}.png"
        png.unlink(missing_ok=True)
        n = fn(series, png)
        rep.points[title] = n
        if not n:
            rep.skipped[title] = why
            body.append(f'<p class="skipped" id="{name}">{e(title)}: skipped, {e(why)}.</p>')
            continue
        rep.plots.append(png)
        note = ""
        if name == "latency" and rep.outliers:
            note = "; beyond the axis, drawn at its top edge: " + "; ".join(rep.outliers)
        data64 = base64.b64encode(png.read_bytes()).decode("ascii")
        body.append(
            f'<figure id="{name}"><img alt="{e(title)}" src="data:image/png;base64,{data64}">'
            f"<figcaption>{e(title)} ({e(png.name)}){e(note)}</figcaption></figure>"
        )
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>jetson-edge report</title><style>{_CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
    rep.html.write_text(page, encoding="utf-8")
    return rep


def report(run_ids: Sequence[str], out_dir: Path) -> List[Path]:
    """Write the report; returns the HTML file, then the PNG files."""
    rep = build_report(run_ids, out_dir)
    return [rep.html, *rep.plots]
