"""Compare two stored runs metric by metric: deltas, and the regressions among them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from edge.core.errors import EdgeError
from edge.history.store import Run


@dataclass
class Delta:
    """One metric of run A against run B; `delta_pct` = (b - a) / |a| * 100. `noisy`: a
    timing of either run varied too much (BenchRun.noisy), so no verdict: never a regression."""

    metric: str
    a: float
    b: float
    delta_pct: Optional[float]
    better: str  # "lower" | "higher"
    regression: bool
    batch_size: Optional[int] = None
    noisy: bool = False


@dataclass
class Comparison:
    """Run `b` against run `a` (both run ids): the per-metric deltas, and the batch sizes
    only one of them measured."""

    a: str
    b: str
    kind: str
    threshold_pct: float
    deltas: List[Delta] = field(default_factory=list)
    only_in_a: List[int] = field(default_factory=list)  # batch sizes without a partner
    only_in_b: List[int] = field(default_factory=list)

    @property
    def regressions(self) -> List[Delta]:
        """The deltas worse than the threshold."""
        return [d for d in self.deltas if d.regression]

    @property
    def noisy(self) -> List[Delta]:
        """The deltas between runs too noisy to compare (no verdict)."""
        return [d for d in self.deltas if d.noisy]

    def to_dict(self) -> Dict[str, Any]:
        """The `edge runs compare --json` object."""
        return {
            "a": self.a,
            "b": self.b,
            "kind": self.kind,
            "threshold_pct": self.threshold_pct,
            "deltas": [vars(d) for d in self.deltas],
            "regressions": len(self.regressions),
            "noisy": len(self.noisy),
            "only_in_a": self.only_in_a,
            "only_in_b": self.only_in_b,
        }


def _delta(
    metric: str,
    a: float,
    b: float,
    better: str,
    threshold: float,
    batch: Optional[int] = None,
    noisy: bool = False,
) -> Delta:
    pct = (b - a) / abs(a) * 100.0 if a else None
    worse = b > a if better == "lower" else b < a
    regression = not noisy and worse and (pct is None or abs(pct) > threshold)
    return Delta(metric, float(a), float(b), pct, better, regression, batch, noisy)


def _bench_metrics(run: Any) -> List[tuple]:
    lat = run.latency_ms
    out = [
        ("p50_ms", lat.p50, "lower"),
        ("p90_ms", lat.p90, "lower"),
        ("p99_ms", lat.p99, "lower"),
        ("mean_ms", lat.mean, "lower"),
        ("throughput_per_s", run.throughput_per_s, "higher"),
    ]
    if run.power:
        out += [
            ("power_avg_mw", run.power.avg_mw, "lower"),
            ("energy_per_inference_mj", run.power.energy_per_inference_mj, "lower"),
        ]
    return out


def _convert_metrics(result: Any) -> Dict[str, tuple]:
    out: Dict[str, tuple] = {}
    if result.summary:
        out["percent_converted"] = (result.summary.percent_converted, "higher")
        out["engines"] = (len(result.summary.engines), "lower")
    if result.seconds is not None:
        out["seconds"] = (result.seconds, "lower")
    return out


def compare(a: Run, b: Run, threshold_pct: float = 5.0) -> Comparison:
    """Per-metric deltas of B against A; worse by more than `threshold_pct` = regression."""
    if a.kind != b.kind:
        raise EdgeError(
            f"Cannot compare a {a.kind} run ({a.run_id}) with a {b.kind} run ({b.run_id}).",
            "Compare two bench runs or two convert runs.",
        )
    cmp = Comparison(a.run_id, b.run_id, a.kind, threshold_pct)
    ra, rb = a.result(), b.result()
    if a.kind == "bench":
        runs_a = {r.batch_size: r for r in ra.runs}
        runs_b = {r.batch_size: r for r in rb.runs}
        cmp.only_in_a = sorted(set(runs_a) - set(runs_b))
        cmp.only_in_b = sorted(set(runs_b) - set(runs_a))
        for bs in sorted(set(runs_a) & set(runs_b)):
            mb = {m: (v, better) for m, v, better in _bench_metrics(runs_b[bs])}
            noisy = runs_a[bs].noisy or runs_b[bs].noisy
            for metric, va, better in _bench_metrics(runs_a[bs]):
                if metric in mb:
                    vb = mb[metric][0]
                    cmp.deltas.append(_delta(metric, va, vb, better, threshold_pct, bs, noisy))
        if not cmp.deltas:
            raise EdgeError(
                f"Runs {a.run_id} and {b.run_id} share no batch size to compare.",
                "Benchmark both with the same --batch-sizes.",
            )
    elif a.kind == "convert":
        ma, mb2 = _convert_metrics(ra), _convert_metrics(rb)
        for metric, (va, better) in ma.items():
            if metric in mb2:
                cmp.deltas.append(_delta(metric, va, mb2[metric][0], better, threshold_pct))
    else:
        raise EdgeError(
            "Only bench and convert runs can be compared.",
            "Show a validate run with: edge runs show RUN",
        )
    return cmp


def comparison_rows(cmp: Comparison) -> List[List[str]]:
    """[batch, metric, A, B, delta, verdict] rows: the terminal and HTML tables use these."""
    rows = []
    for d in cmp.deltas:
        pct = "n/a" if d.delta_pct is None else f"{d.delta_pct:+.1f}%"
        verdict = "REGRESSION" if d.regression else ("noisy, not comparable" if d.noisy else "")
        rows.append(
            [
                "-" if d.batch_size is None else str(d.batch_size),
                d.metric,
                _number(d.a),
                _number(d.b),
                pct,
                verdict,
            ]
        )
    return rows


def _number(x: float) -> str:
    """5 significant digits; a large number (throughput) in full, not as 1.2309e+08."""
    return f"{x:,.0f}" if abs(x) >= 1e5 else f"{x:.5g}"
