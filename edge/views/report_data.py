"""What `edge report` says about its runs: roles, labels, pairs, the headline and the
device, model and settings rows. Pure functions of stored runs; report.py lays them out.

A bench run is "converted" when its model is the output of a recorded convert run (its path
is that run's `output_model`) or it ran an engine backend; otherwise it is "native". A
converted run pairs with a native run of the same device (preferably of the convert run's
source model) on their common batch sizes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Dict, List, Optional, Tuple

from device_agent.jetson import jetpack_for_l4t
from device_agent.protocol import BenchResult, BenchRun
from edge.history.store import Run

NATIVE_BACKENDS = (None, "", "native", "auto")
_SUFFIXES = re.compile(
    r"([_-](saved[_-]?model|converted|trt|tftrt|fp16|fp32|int8|native))+$|\.(onnx|engine|plan)$",
    re.IGNORECASE,
)


@dataclass
class Series:
    """One bench run as plotted and tabled: its role and the label that says so."""

    label: str
    run: Run
    result: BenchResult
    role: str = "native"  # "native" | "converted"
    model: str = ""  # the model's short name ("mnist")
    detail: str = "native"  # "converted (tftrt, FP16)"
    source: Optional[Run] = None  # the convert run that made this model


@dataclass
class Pair:
    """A native and a converted bench run of one model on one device."""

    native: Series
    converted: Series
    batches: List[int]

    def at(self, batch: int) -> Tuple[BenchRun, BenchRun]:
        n = {b.batch_size: b for b in self.native.result.runs}
        c = {b.batch_size: b for b in self.converted.result.runs}
        return n[batch], c[batch]


def base_name(path: str) -> str:
    """The last component of a host or device path (either separator)."""
    text = path.rstrip("/\\")
    name = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return name or text or "-"


def model_stem(path: str) -> str:
    """A model's short name: 'mnist' for .../mnist_saved_model or .../mnist_converted."""
    name = base_name(path)
    return _SUFFIXES.sub("", name) or name


def short_digest(digest: Optional[str]) -> str:
    return digest[:12] if digest else "-"


def output_of(run: Run) -> Optional[str]:
    """Where a convert run wrote its model (as its device named the path)."""
    out = run.metrics.get("output_model") or run.artifacts.get("output_model")
    return str(out) if out else None


def _source(run: Run, result: BenchResult, converts: Sequence[Run]) -> Optional[Run]:
    """The convert run that made this bench run's model: the newest that wrote its path;
    for an engine backend (a model pulled back to the host), the newest with that backend
    of the same model name on the same device."""
    paths = {run.model, str(result.model or "")}
    mine = [c for c in reversed(converts) if c.device == run.device and c.status == "succeeded"]
    for c in mine:
        if output_of(c) in paths:
            return c
    if result.backend in NATIVE_BACKENDS:
        return None
    for c in mine:
        if c.metrics.get("backend") == result.backend and model_stem(c.model) == model_stem(
            run.model
        ):
            return c
    return None


def _converted_detail(result: BenchResult, source: Optional[Run]) -> Tuple[str, str]:
    """(detail for the headline, short tag for the legend)."""
    if source is not None:
        backend = str(source.metrics.get("backend") or "?")
        precision = str(source.metrics.get("precision") or "?")
        return f"converted ({backend} backend, {precision})", f"converted {precision}"
    return f"converted ({result.backend} backend)", f"converted {result.backend}"


def series_of(runs: Sequence[Run], converts: Sequence[Run] = ()) -> List[Series]:
    """Bench runs as series labelled by role, model and device ("native mnist @ local",
    "converted FP16 mnist @ orin1"); the run id is added where labels repeat.
    `converts`: convert runs (of the report and the store) that may have made the models."""
    pool = [*converts, *(r for r in runs if r.kind == "convert")]
    out: List[Series] = []
    for run in runs:
        if run.kind != "bench":
            continue
        result = run.result()
        source = _source(run, result, pool)
        if source is not None or result.backend not in NATIVE_BACKENDS:
            detail, tag = _converted_detail(result, source)
            role = "converted"
        else:
            detail, tag, role = "native", "native", "native"
        model = model_stem(source.model if source is not None else run.model)
        out.append(
            Series(f"{tag} {model} @ {run.device}", run, result, role, model, detail, source)
        )
    labels = [s.label for s in out]
    for s in out:
        if labels.count(s.label) > 1:
            s.label = f"{s.label} ({s.run.run_id})"
    return out


def pairs_of(series: Sequence[Series]) -> List[Pair]:
    """Each converted series with the native series it compares against: same device,
    common batch sizes, the convert run's source model first, then the same model name."""
    pairs: List[Pair] = []
    natives = [s for s in series if s.role == "native"]
    for c in (s for s in series if s.role == "converted"):
        batches = {b.batch_size for b in c.result.runs}
        candidates = [n for n in natives if n.run.device == c.run.device]
        digest = c.source.model_digest if c.source is not None else None

        def rank(n: Series, digest: Optional[str] = digest, model: str = c.model) -> int:
            return 0 if digest and n.run.model_digest == digest else 1 if n.model == model else 2

        for n in sorted(candidates, key=rank)[:1]:
            common = sorted(batches & {b.batch_size for b in n.result.runs})
            if common:
                pairs.append(Pair(n, c, common))
    return pairs


def native_pairs(series: Sequence[Series]) -> List[Tuple[str, float, float]]:
    """(label, native p50 ms, converted p50 ms): from a bench job that timed the native
    model too (`native_latency_ms`, `speedup_vs_native`), or from a native and a converted
    run of one device (`pairs_of`)."""
    out: List[Tuple[str, float, float]] = []
    for s in series:
        for b in s.result.runs:
            name = f"{s.model} @ {s.run.device} bs{b.batch_size}"
            if b.native_latency_ms is not None:
                out.append((name, b.native_latency_ms.p50, b.latency_ms.p50))
            elif b.speedup_vs_native:
                out.append((name, b.latency_ms.p50 * b.speedup_vs_native, b.latency_ms.p50))
    for p in pairs_of(series):
        for batch in p.batches:
            n, c = p.at(batch)
            name = f"{p.converted.model} @ {p.converted.run.device} bs{batch}"
            out.append((name, n.latency_ms.p50, c.latency_ms.p50))
    return out


def headline(runs: Sequence[Run], series: Sequence[Series]) -> List[str]:
    """One sentence per comparison the runs hold; else what the runs are."""
    lines: List[str] = []
    for p in pairs_of(series):
        batch = p.batches[-1]
        n, c = p.at(batch)
        speed = c.throughput_per_s / n.throughput_per_s if n.throughput_per_s else 0.0
        noisy = " (noisy: timings vary more than 10%)" if n.noisy or c.noisy else ""
        lines.append(
            f"{p.converted.model} on {p.converted.run.device}: {p.converted.detail} vs native: "
            f"{speed:.2f}x throughput at batch {batch}, p50 {n.latency_ms.p50:.3f} ms -> "
            f"{c.latency_ms.p50:.3f} ms{noisy}"
        )
    for s in series:
        timed = [b for b in s.result.runs if b.native_latency_ms is not None]
        if timed:
            b = timed[-1]
            assert b.native_latency_ms is not None
            ratio = b.native_latency_ms.p50 / b.latency_ms.p50 if b.latency_ms.p50 else 0.0
            lines.append(
                f"{s.model} on {s.run.device}: {s.detail} vs native (timed in one job): "
                f"{ratio:.2f}x p50 at batch {b.batch_size}, p50 {b.native_latency_ms.p50:.3f} ms"
                f" -> {b.latency_ms.p50:.3f} ms"
            )
    if not lines:
        kinds: Dict[str, List[Run]] = {}
        for r in runs:
            kinds.setdefault(r.kind, []).append(r)
        for kind, rs in kinds.items():
            models = ", ".join(dict.fromkeys(model_stem(r.model) for r in rs))
            devices = ", ".join(dict.fromkeys(r.device for r in rs))
            count = len(rs)
            lines.append(f"{count} {kind} run{'s' * (count > 1)} of {models} on {devices}")
        lines += [f"{s.label}: {s.result.headline}" for s in series if s.result.headline]
    return lines


# --------------------------------------------------------------------------- tables

FOOTNOTE_FACTS = (
    "-: not recorded. Convert and bench runs keep the device's facts since run-store schema "
    "3; for older runs, a conversion's fingerprint (module, L4T, TensorRT) is shown."
)
FOOTNOTE_CLOCKS = (
    "jetson_clocks: on when every CPU's and the GPU's minimum clock is pinned to its maximum."
)


def _clocks(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, "-") if isinstance(value, bool) else "-"


def bench_rows(series: Sequence[Series]) -> Tuple[List[str], List[List[str]]]:
    """The benchmark table: a row per run and batch size, named by run id and model."""
    headers = ["run", "model", "backend", "batch", "p50", "p90", "p99", "max", "per s"]
    rows: List[List[str]] = []
    for s in series:
        r = s.result
        if not r.runs:
            rows.append([s.run.run_id, s.label, r.backend or "-", "-", *"----", r.status])
        for b in r.runs:
            lat = b.latency_ms
            rows.append(
                [
                    s.run.run_id,
                    s.label,
                    r.backend or "-",
                    str(b.batch_size),
                    *(f"{v:.3f}" for v in (lat.p50, lat.p90, lat.p99, lat.max)),
                    f"{b.throughput_per_s:,.0f}" + ("*" if b.noisy else ""),
                ]
            )
    return headers, rows


def _facts_of(device: str, runs: Sequence[Run]) -> Dict[str, Any]:
    for r in reversed(runs):
        facts = r.context.get("device_facts") if r.device == device else None
        if isinstance(facts, dict):
            return facts
    return {}


def _fingerprint_of(device: str, runs: Sequence[Run]) -> Dict[str, Any]:
    for r in reversed(runs):
        if r.device == device and isinstance(r.fingerprint, dict):
            return r.fingerprint
    return {}


def _text(value: Any) -> str:
    return "-" if value in (None, "") else str(value)


def device_rows(runs: Sequence[Run]) -> List[List[str]]:
    """device, module, JetPack (L4T), TensorRT, TensorFlow, nvpmodel, jetson_clocks,
    throttled during the bench."""
    rows: List[List[str]] = []
    for device in dict.fromkeys(r.device for r in runs):
        facts, fp = _facts_of(device, runs), _fingerprint_of(device, runs)
        jetson = facts.get("jetson") if isinstance(facts.get("jetson"), dict) else None
        if jetson:
            module, l4t, nvp = jetson.get("module"), jetson.get("l4t"), jetson.get("nvpmodel")
        elif facts:
            module, l4t, nvp = f"{facts.get('machine')} host (not a Jetson)", None, "n/a"
        else:
            module, l4t, nvp = fp.get("module"), fp.get("l4t"), None
        jetpack = (jetson or {}).get("jetpack") or (jetpack_for_l4t(str(l4t)) if l4t else None)
        trt = facts.get("tensorrt_loaded") or facts.get("tensorrt_linked") or fp.get("tensorrt")
        throttled = [
            b.throttled
            for r in runs
            if r.device == device and r.kind == "bench"
            for b in r.result().runs
            if b.throttled is not None
        ]
        rows.append(
            [
                device,
                _text(module),
                f"{jetpack} (L4T {l4t})" if jetpack and l4t else _text(jetpack or l4t),
                _text(trt),
                _text(facts.get("tensorflow") or fp.get("tensorflow")),
                _text(nvp),
                "n/a" if facts and not jetson else _clocks((jetson or {}).get("jetson_clocks")),
                ("yes" if any(throttled) else "no") if throttled else "-",
            ]
        )
    return rows


def human_bytes(n: Any) -> str:
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return "-"


def model_rows(runs: Sequence[Run], series: Sequence[Series]) -> List[List[str]]:
    """name, digest, size, precision, backend, role, runs: one row per model."""
    role = {s.run.id: s for s in series}
    rows: Dict[str, List[str]] = {}
    for r in runs:
        key = r.model_digest or r.model
        s = role.get(r.id)
        if s is not None and s.role == "converted":
            src = s.source.metrics if s.source is not None else {}
            precision = _text(src.get("precision"))
            backend = _text(src.get("backend") or s.result.backend)
            what = f"converted from {model_stem(s.source.model)}" if s.source else "converted"
        elif r.kind == "convert":
            precision, backend, what = "as exported", "-", "conversion source"
        else:
            precision, backend = "as exported", _text(s.result.backend if s else None)
            what = "native"
        if key in rows:
            rows[key][-1] += f", {r.run_id}"
            continue
        size = human_bytes(r.context.get("model_bytes"))
        rows[key] = [
            base_name(r.model),
            short_digest(r.model_digest),
            size,
            precision,
            backend,
            what,
            r.run_id,
        ]
    return list(rows.values())


def _yes(value: Any) -> str:
    return "-" if value is None else "yes" if value else "no"


def settings_rows(series: Sequence[Series]) -> List[List[str]]:
    """run, model, batch sizes, iterations, warmup, scenario, transfers, cuda_graph,
    telemetry: what each bench was run with."""
    rows: List[List[str]] = []
    for s in series:
        o, r = s.result.options, s.result
        batches = ", ".join(str(b.batch_size) for b in r.runs) or "-"
        if o is None:
            iters = warm = "-"
        else:
            iters = str(o.iterations) if o.iterations else f"{o.duration_seconds:g} s"
            iters += f" (min {o.min_iterations})" if not o.iterations else ""
            warm = f"{o.warmup_iterations} it, {o.warmup_seconds:g} s"
        sources = sorted({b.telemetry_source for b in r.runs if b.telemetry_source})
        telemetry = ", ".join(sources) or ("off" if o is not None and not o.telemetry else "-")
        if o is not None and o.telemetry and sources:
            telemetry += f" every {o.telemetry_interval_ms} ms"
        rows.append(
            [
                s.run.run_id,
                s.label,
                batches,
                iters,
                warm,
                _text(r.scenario or (o.scenario if o else None)),
                _yes(r.transfers),
                _yes(r.cuda_graph),
                telemetry,
                _yes(o.compare_native if o else None),
            ]
        )
    return rows


def when(created_at: str) -> str:
    """'2026-12-03 07:03 UTC' from the stored ISO time."""
    try:
        return datetime.fromisoformat(created_at).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return created_at
