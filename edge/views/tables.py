"""Rich views of results. The structured data is the truth; these are only views.

Every string that came from a device goes through `safe_text` (edge.core.untrusted) before it
meets rich markup: a cell is markup, so `[/x]` would crash the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table

from device_agent.protocol import BenchResult, ConvertResult, DeviceFacts, ValidateResult
from edge.core.untrusted import safe_text
from edge.views.engines import build_table, capability_rows, plan_rows


def facts_table(name: str, facts: DeviceFacts) -> Table:
    t = Table(title=safe_text(name), show_header=False)
    t.add_column("fact", style="bold")
    t.add_column("value")
    j = facts.jetson
    rows = [
        ("module", j.module if j else "not a Jetson"),
        ("JetPack / L4T", f"{j.jetpack or '?'} / {j.l4t or '?'}" if j else "-"),
        ("compute capability", (j.compute_capability or "?") if j else "-"),
        ("nvpmodel", (j.nvpmodel or "-") if j else "-"),
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
    over = Table(title="Conversion")
    for col in (
        "device",
        "status",
        "backend",
        "precision",
        "engines",
        "ops converted",
        "build",
        "validation",
        "time",
    ):
        over.add_column(col)
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
            et = Table(title=f"{safe_text(r.device)}: TensorRT engines")
            for col in ("engine", "nodes", "top ops", "inputs", "outputs"):
                et.add_column(col)
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
            nt = Table(title=f"{safe_text(r.device)}: ops not converted")
            for col in ("op", "count", "reason"):
                nt.add_column(col)
            for n in s.non_converted:
                nt.add_row(safe_text(n.op), str(n.count), safe_text(n.reason))
            parts.append(nt)
    return Group(*parts)


def bench_table(results: Sequence[BenchResult], title: str = "Benchmark") -> Table:
    """One row per (device, model, batch size); latencies in ms."""
    t = Table(title=title)
    for col in ("device", "model", "backend", "batch", "p50", "p90", "p99", "mean", "per s"):
        t.add_column(col, justify="left" if col in ("device", "model", "backend") else "right")
    noisy = False
    for r in results:
        if not r.runs:
            t.add_row(
                safe_text(r.device),
                _short(r.model),
                safe_text(r.backend or "-"),
                "-",
                "-",
                "-",
                "-",
                "-",
                _status(r.status),
            )
        for run in r.runs:
            lat = run.latency_ms
            noisy = noisy or run.noisy
            t.add_row(
                safe_text(r.device),
                _short(r.model),
                safe_text(r.backend or "-"),
                str(run.batch_size),
                f"{lat.p50:.3f}",
                f"{lat.p90:.3f}",
                f"{lat.p99:.3f}",
                f"{lat.mean:.3f}",
                f"{run.throughput_per_s:,.0f}" + ("*" if run.noisy else ""),
            )
    t.caption = "latency in ms" + (
        "; * noisy run: coefficient of variation above 10%" if noisy else ""
    )
    return t


def validate_table(results: Sequence[ValidateResult]) -> Table:
    """One row per (device, output): errors, mismatches, top-1 agreement and the verdict."""
    t = Table(title="Validation")
    for col in ("device", "output", "max abs err", "max rel err", "mismatched", "top-1", "result"):
        t.add_column(col)
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
    "bench": bench_table,
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
        t = Table(
            title=safe_text(f"{p.device}: conversion plan ({plan.backend})"), show_header=False
        )
        t.add_column("what", style="bold")
        t.add_column("value")
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
    t = Table(title="Push")
    for col in ("device", "status", "files sent", "MB sent", "MB skipped", "MB/s", "seconds"):
        t.add_column(col, justify="left" if col in ("device", "status") else "right")
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
                f"[bold red]{safe_text(r.device)}: failed:[/] {safe_text(r.error)}", highlight=False
            )
            if r.hint:
                console.print(f"  [bold]hint:[/] {safe_text(r.hint)}", highlight=False)


def _build_note(r: ConvertResult) -> str:
    if r.cache == "shared":
        return f"shared from {safe_text(r.shared_from)}"
    if r.cache == "hit":
        return "cache hit"
    retries = len([a for a in r.attempts if a.outcome == "oom"])
    return "built" + (f" ({retries} OOM retries)" if retries else "")


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
