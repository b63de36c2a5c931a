"""The report's plots (matplotlib, Agg). Each plot function returns how many points it
drew; 0 means nothing to draw, and the page names the plot as skipped.

Latency keeps its scale against outliers: a max beyond `OUTLIER_FACTOR` times its own
p99 does not stretch the y axis; each value cut off is drawn as a marker at the top edge
with its value written beside it (`latency_axis`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

from edge.core.untrusted import safe_plot
from edge.views.report_data import Series, native_pairs

OUTLIER_FACTOR = 2.0
LOG_SPREAD = 30.0  # p99 max / p50 min beyond which the latency axis is logarithmic
_MARKS = (("p50", "o"), ("p90", "^"), ("p95", "s"), ("p99", "v"))
_FIELDS = ("min", "p50", "p90", "p95", "p99", "max")


@dataclass
class Outlier:
    """A latency value above the axis: drawn at the top edge, its value annotated."""

    label: str
    batch: int
    stat: str  # "max", "p99", ...
    value: float


@dataclass
class LatencyAxis:
    bottom: float
    top: float
    log: bool
    outliers: List[Outlier]


def latency_axis(series: Sequence[Series]) -> Optional[LatencyAxis]:
    """The latency plot's y range. A ladder's max beyond OUTLIER_FACTOR x its own p99 is
    an outlier candidate; the axis ends just above every p99 and every other value, and
    whatever lies above that is an outlier (the largest stat per series and batch), drawn
    at the top edge. Logarithmic when p99s and p50s span more than LOG_SPREAD."""
    lats = [(s.label, b.batch_size, b.latency_ms) for s in series for b in s.result.runs]
    if not lats:
        return None
    kept = [lat.p99 for _, _, lat in lats]
    kept += [lat.max for _, _, lat in lats if lat.max <= OUTLIER_FACTOR * lat.p99]
    low = min(lat.min for _, _, lat in lats)
    log = low > 0 and max(kept) / max(min(lat.p50 for _, _, lat in lats), 1e-9) > LOG_SPREAD
    top = max(kept) * 1.1
    outliers: List[Outlier] = []
    for label, batch, lat in lats:
        above = [(getattr(lat, f), f) for f in _FIELDS if getattr(lat, f) > top]
        if above:
            value, stat = max(above)
            outliers.append(Outlier(label, batch, stat, value))
    return LatencyAxis(low * 0.8 if log else 0.0, top, log, outliers)


def _figure(title: str, xlabel: str, ylabel: str) -> Tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.0, 4.4), dpi=100)
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path, below: bool = True) -> None:
    """The legend under the axes (`below`; else inside), long labels wrapped, so neither
    squeezes the plot."""
    handles, labels = ax.get_legend_handles_labels()
    if handles and not below:
        ax.legend(fontsize="small", loc="upper left")
    elif handles:
        wrapped = [textwrap.fill(label, 60, break_long_words=True) for label in labels]
        ax.legend(
            handles,
            wrapped,
            fontsize="small",
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=2 if len(labels) > 3 else 1,
            frameon=False,
        )
    fig.savefig(path, format="png", bbox_inches="tight", pad_inches=0.15)


def _batches(series: Sequence[Series]) -> List[int]:
    return sorted({b.batch_size for s in series for b in s.result.runs})


def _offsets(n: int, width: float = 0.8) -> List[float]:
    step = width / max(n, 1)
    return [-width / 2 + step * (i + 0.5) for i in range(n)]


def plot_latency(series: Sequence[Series], path: Path) -> int:
    """Percentile ladder per batch size: min-max line, p50-p99 bar, a mark per percentile;
    values beyond the axis (`latency_axis`) as a red marker at the top edge, annotated."""
    fig, ax, points = latency_figure(series)
    if points:
        _save(fig, ax, path)
    return points


def latency_figure(series: Sequence[Series]) -> Tuple[Any, Any, int]:
    """`plot_latency`'s figure, axes and points drawn, before it is saved."""
    batches = _batches(series)
    axis = latency_axis(series)
    fig, ax = _figure("Latency per batch size", "batch size", "latency (ms)")
    if not batches or axis is None:
        return fig, ax, 0
    top = axis.top
    cut = {(o.label, o.batch): o for o in axis.outliers}
    points = 0
    for i, (s, off) in enumerate(zip(series, _offsets(len(series)))):
        color = f"C{i}"
        for b in s.result.runs:
            x, lat = batches.index(b.batch_size) + off, b.latency_ms
            ax.vlines(x, lat.min, min(lat.max, top), colors=color, linewidth=1)
            ax.vlines(x, lat.p50, min(lat.p99, top), colors=color, linewidth=7, alpha=0.35)
            for name, marker in _MARKS:
                value = getattr(lat, name)
                if value <= top:
                    ax.plot([x], [value], marker=marker, color=color, linestyle="")
            o = cut.get((s.label, b.batch_size))
            if o is not None:
                ax.plot([x], [top], marker="^", color="#c00", markersize=9, clip_on=False)
                ax.annotate(
                    f"{o.stat} {o.value:.3g} ms",
                    (x, top),
                    xytext=(4, -8),
                    textcoords="offset points",
                    rotation=90,
                    va="top",
                    fontsize="x-small",
                    color="#c00",
                )
            points += 1
        ax.plot([], [], color=color, linewidth=7, alpha=0.35, label=safe_plot(s.label))
    for name, marker in _MARKS:
        ax.plot([], [], marker=marker, color="gray", linestyle="", label=name)
    if axis.outliers:
        ax.plot([], [], marker="^", color="#c00", linestyle="", label="beyond axis")
    if axis.log:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")  # plain numbers: decades, and 2 and 5 between them
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(
            FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
        )
    ax.set_ylim(axis.bottom, top)
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    return fig, ax, points


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
        ax.set_ylim(bottom=0)
        _save(fig, ax, path)
    return points


def plot_native(series: Sequence[Series], path: Path) -> int:
    """p50 latency of the native model beside the converted one, with the speedup."""
    pairs = native_pairs(series)
    if not pairs:
        return 0
    title = "Native vs converted (p50)"
    where = {p[0].rsplit(" bs", 1)[0] for p in pairs}
    if len(where) == 1:  # one model on one device: its name once, in the title
        title += "\n" + textwrap.fill(where.pop(), 64, break_long_words=True)
        pairs = [(f"batch {p[0].rsplit(' bs', 1)[-1]}", p[1], p[2]) for p in pairs]
    fig, ax = _figure(safe_plot(title), "", "latency p50 (ms)")
    xs = range(len(pairs))
    ax.bar([x - 0.2 for x in xs], [p[1] for p in pairs], width=0.4, label="native", color="C7")
    ax.bar([x + 0.2 for x in xs], [p[2] for p in pairs], width=0.4, label="converted", color="C2")
    for x, (_, nat, conv) in zip(xs, pairs):
        if conv:
            ax.annotate(f"{nat / conv:.2f}x", (x, max(nat, conv)), ha="center", va="bottom")
    ticks = [textwrap.fill(safe_plot(p[0]), 28, break_long_words=True) for p in pairs]
    ax.set_xticks(list(xs), ticks, fontsize="small")
    ax.margins(y=0.15)
    _save(fig, ax, path, below=False)
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
        "no native baseline: give a native and a converted bench run of one device "
        "(the convert run's output, or an engine backend), or bench with native comparison",
    ),
    ("power", "Power over time", plot_power, "no telemetry samples with power readings"),
    ("energy", "Energy per inference", plot_energy, "no run measured power"),
]
