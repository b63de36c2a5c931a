"""Rich views of results. The structured data is the truth; these are only views.

Every string that came from a device goes through `safe_text` (edge.core.untrusted) before it
meets rich markup: a cell is markup, so `[/x]` would crash the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from device_agent.protocol import (
    BenchResult,
    BenchRun,
    ConvertResult,
    DeviceFacts,
    ValidateResult,
)
from edge.core.untrusted import safe_text
from edge.views.engines import build_table, capability_rows, plan_rows
from edge.views.layout import FitTable


def facts_table(name: str, facts: DeviceFacts) -> Table:
    t = FitTable(title=safe_text(name), show_header=False)
    t.column("fact", style="bold").column("value", kind="text")
    j = facts.jetson
    rows = [
        ("module", j.module if j else "not a Jetson"),
        ("JetPack / L4T", f"{j.jetpack or '?'} / {j.l4t or '?'}" if j else "-"),
        ("compute capability", (j.compute_capability or "?") if j else "-"),
        ("nvpmodel", (j.nvpmodel or "-") if j else "-"),
        ("jetson_clocks", _clocks(j.jetson_clocks) if j else "-"),
        ("memory", f"{facts.memory_available_mb} MB free of {facts.memory_total_mb} MB"),
        ("swap", f"{facts.swap_total_mb} MB"),
        ("disk free", f"{facts.disk_free_mb} MB"),
        ("python", facts.python),
        ("tensorflow", facts.tensorflow or "not installed"),
        ("agent", f"{facts.agent_version} (protocol {facts.protocol})"),
    ]
    if facts.tensorrt_enabled is not None:
        rows.append(
            (
                "tensorrt",
                f"linked {facts.tensorrt_linked}, loaded {facts.tensorrt_loaded}"
                if facts.tensorrt_enabled
                else "not built with TensorRT",
            )
        )
    if facts.capabilities is not None:
        rows.extend(capability_rows(facts.capabilities))
    for k, v in rows:
        t.add_row(k, safe_text(v))
    return t


def convert_tables(results: Sequence[ConvertResult]) -> Group:
    """One overview table, then each device's engines."""
    over = FitTable(title="Conversion")
    over.column("device").column("status").column("backend").column("precision")
    over.column("engines", "number", drop=2).column("converted")
    over.column("build", "text").column("validation", "text", drop=1)
    over.column("time", "number", drop=4)
    parts: list = [over]
    for r in results:
        s = r.summary
        over.add_row(
            safe_text(r.device),
            _status(r.status),
            safe_text(r.backend or "-"),
            safe_text(r.precision or "-"),
            str(len(s.engines)) if s else "-",
            f"{s.percent_converted:.1f}% [{s.ops_converted}/{s.ops_total}]" if s else "-",
            _build_note(r) if r.status == "succeeded" else "-",
            _validation_note(r.validation),
            f"{r.seconds:.1f}s" if r.seconds is not None else "-",
        )
        if r.tensorrt is not None:
            parts.append(build_table(r.device, r.tensorrt, s))
        elif s and s.engines:
            et = FitTable(title=f"{safe_text(r.device)}: TensorRT engines")
            et.column("engine").column("nodes", "number").column("top ops", "text", drop=1)
            et.column("inputs", "text").column("outputs", "text")
            for e in s.engines:
                top = ", ".join(
                    f"{op} x{n}" for op, n in sorted(e.ops.items(), key=lambda kv: -kv[1])[:4]
                )
                et.add_row(
                    safe_text(e.name),
                    str(e.nodes),
                    safe_text(top),
                    safe_text(" ".join(e.input_shapes)),
                    safe_text(" ".join(e.output_shapes)),
                )
            parts.append(et)
        if s and s.non_converted:
            nt = FitTable(title=f"{safe_text(r.device)}: ops not converted")
            nt.column("op").column("count", "number").column("reason", "text")
            for n in s.non_converted:
                nt.add_row(safe_text(n.op), str(n.count), safe_text(n.reason))
            parts.append(nt)
    return Group(*parts)


def bench_table(
    results: Sequence[BenchResult],
    title: str = "Benchmark",
    models: Sequence[str] | None = None,
) -> Table:
    """One row per (device, model, batch size); latencies in ms. `models`: a label per
    result (e.g. which is native, which converted), else the model's directory name.
    Power columns when a run measured power, a speedup column when one was timed
    against its native model."""
    labels = list(models) if models is not None else [_short(r.model) for r in results]
    runs = [b for r in results for b in r.runs]
    power = any(b.power for b in runs)
    speedup = any(b.speedup_vs_native for b in runs)
    t = FitTable(title=title)
    t.column("device").column("model").column("backend", drop=4).column("batch", "number")
    t.column("p50", "number").column("p90", "number", drop=2).column("p99", "number", drop=3)
    t.column("mean", "number", drop=5).column("per s", "number")
    if power:
        t.column("avg mW", "number").column("peak mW", "number", drop=3)
        t.column("mJ/inf", "number", drop=1)
    if speedup:
        t.column("vs native", "number")
    t.grouped("device", "model")
    for r, label in zip(results, labels):
        head = [safe_text(r.device), safe_text(label), safe_text(r.backend or "-")]
        if not r.runs:
            rest = ["-"] * (len(t.columns) - 4)
            t.add_row(*head, "-", *rest[:-1], _status(r.status))
        for run in r.runs:
            lat = run.latency_ms
            cells = [
                str(run.batch_size),
                f"{lat.p50:.3f}",
                f"{lat.p90:.3f}",
                f"{lat.p99:.3f}",
                f"{lat.mean:.3f}",
                f"{run.throughput_per_s:,.0f}" + ("*" if run.noisy else ""),
            ]
            if power:
                cells += power_cells(run)
            if speedup:
                cells.append(f"{run.speedup_vs_native:.2f}x" if run.speedup_vs_native else "-")
            t.add_row(*head, *cells)
    notes = ["latency in ms"]
    if any(b.noisy for b in runs):
        notes.append("* noisy run: coefficient of variation above 10%")
    if power:
        notes.append("power: module input (tegrastats), mean and peak over the timed run")
    t.caption = "; ".join(notes)
    return t


def model_label(path: str | None, conversion: ConvertResult | None = None) -> str:
    """A model by name and role: `mnist (native)`, or for the output of `conversion`
    `mnist_trt (converted: tftrt backend, FP16)`."""
    if conversion is None:
        return f"{_short(path)} (native)"
    how = f"{conversion.backend or '?'} backend, {conversion.precision or '?'}"
    return f"{_short(path)} (converted: {safe_text(how)})"


def power_cells(run: BenchRun) -> list[str]:
    """[avg mW, peak mW, mJ per inference] of a run, "-" where it measured no power."""
    p = run.power
    if p is None:
        return ["-", "-", "-"]
    return [f"{p.avg_mw:,.0f}", f"{p.peak_mw:,.0f}", f"{p.energy_per_inference_mj:.3f}"]


def headlines(results: Sequence[BenchResult]) -> list[str]:
    """The `--scenario` headline of each result that ran one (single-stream p90, offline
    best throughput), as `device: headline (scenario)`."""
    return [
        f"{safe_text(r.device)}: {safe_text(r.headline)} ({r.scenario})"
        for r in results
        if r.headline and r.scenario in ("single-stream", "offline")
    ]


def bench_view(results: Sequence[BenchResult]) -> Group:
    """The bench table, then the scenario headlines (bold, one line each)."""
    lines = [Text.from_markup(h, style="bold") for h in headlines(results)]
    return Group(bench_table(results), *lines)


def validate_table(results: Sequence[ValidateResult]) -> Table:
    """One row per (device, output): errors, mismatches, top-1 agreement and the verdict."""
    t = FitTable(title="Validation")
    t.column("device").column("output").column("max abs err", "number")
    t.column("max rel err", "number", drop=2).column("mismatched", "number", drop=1)
    t.column("top-1", "number", drop=3).column("result")
    for r in results:
        v = r.validation
        for name, o in v.outputs.items() if v else []:
            t.add_row(
                safe_text(r.device),
                safe_text(name),
                f"{o.max_abs_err:.3g}",
                f"{o.max_rel_err:.3g}",
                f"{o.mismatched}/{o.elements}",
                "-" if o.top1_agreement is None else f"{o.top1_agreement:.1%}",
                "[green]pass[/]" if o.passed else "[red]FAIL[/]",
            )
        if v:
            t.caption = safe_text(
                f"{v.precision}: atol {v.atol:g}, rtol {v.rtol:g}; "
                f"inputs {v.inputs_from}, {v.samples} samples"
            )
    return t


# The view of each job kind's results (protocol.JOB_KINDS), for the command that ran the
# jobs and for `edge jobs attach`.
RESULT_VIEWS: dict[str, Callable[[Sequence[Any]], RenderableType]] = {
    "convert": convert_tables,
    "bench": bench_view,
    "validate": validate_table,
}


def result_view(kind: str, results: Sequence[Any]) -> RenderableType:
    """The results of jobs of `kind`, drawn with that kind's own view."""
    return RESULT_VIEWS[kind](results)


def plan_tables(plans: Sequence[Any]) -> Group:
    """Dry-run plans: one table per device with the resolved converter call."""
    parts: list = []
    for p in plans:
        if p.plan is None:
            continue
        plan = p.plan
        t = FitTable(
            title=safe_text(f"{p.device}: conversion plan ({plan.backend})"), show_header=False
        )
        t.column("what", style="bold").column("value", "text")
        if plan.tensorrt is not None:
            for k, v in plan_rows(plan.tensorrt):
                t.add_row(k, safe_text(v))
        for k, v in plan.converter_kwargs.items():
            t.add_row(safe_text(k), safe_text(repr(v)))
        for k, v in plan.env.items():
            t.add_row(safe_text(k), safe_text(v))
        ws = plan.workspace_bytes
        t.add_row("workspace", f"{ws / 2**20:.0f} MiB" if ws else "converter default")
        if plan.tensorrt is None:
            t.add_row(
                "TF GPU memory",
                f"{plan.tf_gpu_memory_limit_mb} MB"
                if plan.tf_gpu_memory_limit_mb
                else "memory growth",
            )
        cal = plan.calibration
        t.add_row("calibration", f"{cal.batches} batches of {cal.batch_size}" if cal else "-")
        t.add_row("build shapes", safe_text(plan.build_shapes or "from the signature (batch 1)"))
        t.add_row("cache key", safe_text(plan.cache_key or "-"))
        if plan.fallback_reason:
            t.add_row("note", safe_text(plan.fallback_reason))
        for line in plan.workspace_arithmetic:
            t.add_row("", safe_text(line))
        parts.append(t)
    return Group(*parts)


def push_table(results: Sequence[Any]) -> Table:
    """PushResult rows: what travelled and what the device already had."""
    t = FitTable(title="Push")
    t.column("device").column("status").column("files sent", "number")
    t.column("MB sent", "number").column("MB skipped", "number", drop=2)
    t.column("MB/s", "number", drop=1).column("seconds", "number", drop=3)
    for r in results:
        rate = r.bytes_sent / r.seconds / 1e6 if r.seconds else 0.0
        t.add_row(
            safe_text(r.device),
            _status(r.status),
            f"{r.files_sent}/{r.files_total}",
            f"{r.bytes_sent / 1e6:.1f}",
            f"{r.bytes_skipped / 1e6:.1f}",
            f"{rate:.1f}",
            f"{r.seconds:.2f}",
        )
    return t


def print_failures(console: Console, results: Sequence[Any]) -> None:
    """One line per failed result (its error), and its hint."""
    for r in results:
        if r.status != "succeeded":
            console.print(
                f"[bold red]{safe_text(r.device)}: failed:[/] {safe_text(r.error)}",
                highlight=False,
                soft_wrap=True,  # the terminal wraps it: a command in it stays one line
            )
            if r.hint:
                console.print(
                    f"  [bold]hint:[/] {safe_text(r.hint)}", highlight=False, soft_wrap=True
                )


def _build_note(r: ConvertResult) -> str:
    """What the conversion did about TensorRT engines, as it happened."""
    if r.cache == "shared":
        return f"shared from {safe_text(r.shared_from)}"
    if r.cache == "hit":
        return "cache hit"
    retries = len([a for a in r.attempts if a.outcome == "oom"])
    suffix = f" ({retries} OOM retries)" if retries else ""
    engines = len(r.summary.engines) if r.summary else 0
    if r.backend == "native":
        return "no engines (native)" + suffix
    if not r.engines_built:
        if engines:  # TF-TRT segments whose engines are built when the model first runs
            return f"{_count(engines, 'engine')} at first run" + suffix
        return f"no engines ({safe_text(r.backend or '?')}: nothing converted)" + suffix
    if r.tensorrt is not None:
        return "engine built" + suffix
    return f"{_count(engines, 'engine')} built" + suffix


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _validation_note(v: Any) -> str:
    if v is None:
        return "-"
    worst = max((o.max_abs_err for o in v.outputs.values()), default=0.0)
    verdict = "[green]passed[/]" if v.passed else "[red]FAILED[/]"
    return f"{verdict} (max abs {worst:.2g}, atol {v.atol:g}, rtol {v.rtol:g})"


def _status(status: str) -> str:
    known = {"succeeded": "[green]succeeded[/]", "failed": "[red]failed[/]"}
    return known.get(status, safe_text(status))


def _short(path: str | None) -> str:
    if not path:
        return "-"
    return safe_text(path.rstrip("/").split("/")[-1])


def _clocks(pinned: bool | None) -> str:
    if pinned is None:
        return "unknown (clocks not readable)"
    return "on (clocks pinned at max)" if pinned else "off"
