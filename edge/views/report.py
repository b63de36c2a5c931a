"""`edge report`: one self-contained HTML page (tables + PNG plots) for stored runs.

The page's tables are the terminal's tables: both come from the rich Tables built here and
in `edge.views.tables`, read back into rows by `table_rows`, so the numbers cannot disagree.
Plots are drawn with matplotlib's Agg backend; each plot function returns how many points
it drew, and a plot with nothing to draw is skipped and named in the page. Device text is
escaped for each medium (edge.core.untrusted): rich markup in the tables, HTML in the page,
mathtext (`$`) in the plots.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from rich.table import Table
from rich.text import Text

from device_agent.protocol import BenchResult, BenchRun
from edge.core.errors import EdgeError
from edge.core.untrusted import safe_html, safe_plot, safe_text
from edge.history.compare import compare, comparison_rows
from edge.history.store import Run, RunStore
from edge.views.tables import bench_table, convert_tables


@dataclass
class Series:
    """One bench run as a plotted series (one per device; the run id added on clashes)."""

    label: str
    run: Run
    result: BenchResult


@dataclass
class Report:
    html: Path
    plots: List[Path] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)  # plot title -> why
    points: Dict[str, int] = field(default_factory=dict)  # plot title -> points drawn


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
        tables.append(bench_table(by_kind["bench"]))
        power = power_table(by_kind["bench"])
        if power is not None:
            tables.append(power)
    if "validate" in by_kind:
        tables.append(validate_table(by_kind["validate"]))
    return tables


# --------------------------------------------------------------------------- plots


def _figure(title: str, xlabel: str, ylabel: str) -> Tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.2), dpi=100)
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, format="png")


def _batches(series: Sequence[Series]) -> List[int]:
    return sorted({b.batch_size for s in series for b in s.result.runs})


def _offsets(n: int, width: float = 0.8) -> List[float]:
    step = width / max(n, 1)
    return [-width / 2 + step * (i + 0.5) for i in range(n)]


def plot_latency(series: Sequence[Series], path: Path) -> int:
    """Percentile ladder per batch size: min-max line, p50-p99 bar, a mark per percentile."""
    batches = _batches(series)
    if not batches:
        return 0
    fig, ax = _figure("Latency per batch size", "batch size", "latency (ms)")
    marks = (("p50", "o"), ("p90", "^"), ("p95", "s"), ("p99", "v"))
    points = 0
    for i, (s, off) in enumerate(zip(series, _offsets(len(series)))):
        color = f"C{i}"
        for b in s.result.runs:
            x, lat = batches.index(b.batch_size) + off, b.latency_ms
            ax.vlines(x, lat.min, lat.max, colors=color, linewidth=1)
            ax.vlines(x, lat.p50, lat.p99, colors=color, linewidth=7, alpha=0.35)
            for name, marker in marks:
                ax.plot([x], [getattr(lat, name)], marker=marker, color=color, linestyle="")
            points += 1
        ax.plot([], [], color=color, linewidth=7, alpha=0.35, label=safe_plot(s.label))
    for name, marker in marks:
        ax.plot([], [], marker=marker, color="gray", linestyle="", label=name)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    _save(fig, ax, path)
    return points


def plot_throughput(series: Sequence[Series], path: Path) -> int:
    """Inferences per second against batch size, one line per series."""
    points = 0
    fig, ax = _figure("Throughput vs batch size", "batch size", "inferences / s")
    for s in series:
        runs = sorted(s.result.runs, key=lambda b: b.batch_size)
        if runs:
            ax.plot(
                [b.batch_size for b in runs],
                [b.throughput_per_s for b in runs],
                marker="o",
                label=safe_plot(s.label),
            )
            points += len(runs)
    if points:
        batches = _batches(series)
        if len(batches) > 1 and batches[-1] / batches[0] >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        _save(fig, ax, path)
    return points


def native_pairs(series: Sequence[Series]) -> List[Tuple[str, float, float]]:
    """(label, native p50 ms, converted p50 ms): from `native_latency_ms` or
    `speedup_vs_native` of a run, or from a native run and a converted run of one device."""
    pairs: List[Tuple[str, float, float]] = []
    for s in series:
        for b in s.result.runs:
            if b.native_latency_ms is not None:
                pairs.append(
                    (f"{s.label} bs{b.batch_size}", b.native_latency_ms.p50, b.latency_ms.p50)
                )
            elif b.speedup_vs_native:
                pairs.append(
                    (
                        f"{s.label} bs{b.batch_size}",
                        b.latency_ms.p50 * b.speedup_vs_native,
                        b.latency_ms.p50,
                    )
                )
    native = [s for s in series if s.result.backend == "native"]
    converted = [s for s in series if s.result.backend not in (None, "native")]
    for n in native:
        for c in converted:
            if n.result.device != c.result.device:
                continue
            nb: Dict[int, BenchRun] = {b.batch_size: b for b in n.result.runs}
            for b in c.result.runs:
                if b.batch_size in nb:
                    pairs.append(
                        (
                            f"{c.result.device} bs{b.batch_size}",
                            nb[b.batch_size].latency_ms.p50,
                            b.latency_ms.p50,
                        )
                    )
    return pairs


def plot_native(series: Sequence[Series], path: Path) -> int:
    """p50 latency of the native model beside the converted one, with the speedup."""
    pairs = native_pairs(series)
    if not pairs:
        return 0
    fig, ax = _figure("Native vs converted (p50)", "", "latency p50 (ms)")
    xs = range(len(pairs))
    ax.bar([x - 0.2 for x in xs], [p[1] for p in pairs], width=0.4, label="native", color="C7")
    ax.bar([x + 0.2 for x in xs], [p[2] for p in pairs], width=0.4, label="converted", color="C2")
    for x, (_, nat, conv) in zip(xs, pairs):
        if conv:
            ax.annotate(f"{nat / conv:.2f}x", (x, max(nat, conv)), ha="center", va="bottom")
    ax.set_xticks(list(xs), [safe_plot(p[0]) for p in pairs], rotation=20, ha="right")
    _save(fig, ax, path)
    return len(pairs)


def _power_mw(sample: Any) -> Optional[float]:
    if sample.power_in_mw is not None:
        return float(sample.power_in_mw)
    return float(sum(sample.rails_mw.values())) if sample.rails_mw else None


def plot_power(series: Sequence[Series], path: Path) -> int:
    """Board power from the telemetry samples, seconds from each series' first sample."""
    points = 0
    fig, ax = _figure("Power over time", "time (s)", "power (mW)")
    for s in series:
        samples = sorted(
            (t for b in s.result.runs for t in b.telemetry if _power_mw(t) is not None),
            key=lambda t: t.ts,
        )
        if samples:
            t0 = samples[0].ts
            ax.plot(
                [t.ts - t0 for t in samples],
                [_power_mw(t) for t in samples],
                label=safe_plot(s.label),
            )
            points += len(samples)
    if points:
        _save(fig, ax, path)
    return points


def plot_energy(series: Sequence[Series], path: Path) -> int:
    """Energy per inference (mJ), a bar per batch size and series."""
    batches = _batches(series)
    fig, ax = _figure("Energy per inference", "batch size", "mJ / inference")
    points = 0
    for i, (s, off) in enumerate(zip(series, _offsets(len(series)))):
        runs = [b for b in s.result.runs if b.power]
        if runs:
            ax.bar(
                [batches.index(b.batch_size) + off for b in runs],
                [b.power.energy_per_inference_mj for b in runs if b.power],
                width=0.8 / len(series),
                label=safe_plot(s.label),
                color=f"C{i}",
            )
            points += len(runs)
    if points:
        ax.set_xticks(range(len(batches)), [str(b) for b in batches])
        _save(fig, ax, path)
    return points


PLOTS: List[Tuple[str, str, Callable[[Sequence[Series], Path], int], str]] = [
    ("latency", "Latency distribution", plot_latency, "no bench run has batch results"),
    ("throughput", "Throughput vs batch size", plot_throughput, "no bench run has batch results"),
    (
        "native_vs_converted",
        "Native vs converted",
        plot_native,
        "no native baseline: give a native and a converted run of one device, or bench with "
        "native comparison",
    ),
    ("power", "Power over time", plot_power, "no telemetry samples with power readings"),
    ("energy", "Energy per inference", plot_energy, "no run measured power"),
]


# --------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{caption-side:bottom;font-size:.85em;color:#666;text-align:left}
tr.regression td{color:#b00;font-weight:bold}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}
p.skipped{color:#777;font-style:italic}
"""


def _html_table(
    title: str,
    headers: List[str],
    rows: List[List[str]],
    caption: str = "",
    marked: Optional[List[bool]] = None,
) -> str:
    e = safe_html
    out = [f"<table><caption>{e(caption)}</caption>" if caption else "<table>"]
    out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>")
    for i, row in enumerate(rows):
        cls = ' class="regression"' if marked and marked[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return (f"<h3>{e(title)}</h3>" if title else "") + "".join(out)


def _rich_html(table: Table) -> str:
    headers, rows = table_rows(table)
    title = Text.from_markup(str(table.title)).plain if table.title else ""
    caption = Text.from_markup(str(table.caption)).plain if table.caption else ""
    return _html_table(title, headers, rows, caption)


def series_of(runs: Sequence[Run]) -> List[Series]:
    """Bench runs as series, labelled by device (plus the run id where devices repeat)."""
    bench = [r for r in runs if r.kind == "bench"]
    devices = [r.device for r in bench]
    return [
        Series(
            r.device if devices.count(r.device) == 1 else f"{r.device} {r.run_id}", r, r.result()
        )
        for r in bench
    ]


def build_report(run_ids: Sequence[str], out_dir: Path, store: Optional[RunStore] = None) -> Report:
    """Write report.html and the PNG plots for `run_ids` into `out_dir`."""
    if not run_ids:
        raise EdgeError("Name at least one run.", "List runs with: edge runs ls")
    own = store is None
    store = store or RunStore()
    try:
        runs = [store.get(i) for i in run_ids]
    finally:
        if own:
            store.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = Report(html=out_dir / "report.html")
    series = series_of(runs)
    e = safe_html
    body = [
        f"<h1>jetson-edge report: {e(', '.join(r.run_id for r in runs))}</h1>",
        f"<p>generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>",
        "<h2>Runs</h2>",
    ]
    keys = ["id", "kind", "device", "model", "model_digest", "recipe", "created_at", "status"]
    body.append(_html_table("", keys, [[str(r.summary()[k] or "-") for k in keys] for r in runs]))
    body.append("<h2>Results</h2>")
    body += [_rich_html(t) for t in result_tables(runs)]
    if len(runs) == 2 and runs[0].kind == runs[1].kind:
        try:
            cmp = compare(runs[0], runs[1])
        except EdgeError:
            cmp = None
        if cmp is not None:
            rows = comparison_rows(cmp)
            body.append(
                _html_table(
                    f"{cmp.a} -> {cmp.b}",
                    ["batch", "metric", cmp.a, cmp.b, "delta", ""],
                    rows,
                    f"regression: worse by more than {cmp.threshold_pct:g}%",
                    [d.regression for d in cmp.deltas],
                )
            )
    body.append("<h2>Plots</h2>")
    for name, title, fn, why in PLOTS:
        png = out_dir / f"{name}.png"
        png.unlink(missing_ok=True)
        n = fn(series, png)
        rep.points[title] = n
        if n:
            rep.plots.append(png)
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            body.append(
                f'<figure id="{name}"><img alt="{e(title)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{e(title)} '
                f"({e(png.name)})</figcaption></figure>"
            )
        else:
            rep.skipped[title] = why
            body.append(f'<p class="skipped" id="{name}">{e(title)}: skipped, {e(why)}.</p>')
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>jetson-edge report'
        f"</title><style>{_CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
    rep.html.write_text(page, encoding="utf-8")
    return rep


def report(run_ids: Sequence[str], out_dir: Path) -> List[Path]:
    """Write the report; returns the HTML file, then the PNG files."""
    rep = build_report(run_ids, out_dir)
    return [rep.html, *rep.plots]
