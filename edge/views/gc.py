"""The view of `edge gc`: per device and category, what was (or would be) freed and kept."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from device_agent.protocol import GcResult
from edge.core.untrusted import safe_text
from edge.views.layout import FitTable

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (whole bytes below 1 KiB)."""
    size = float(n)
    for unit in UNITS:
        if size < 1024 or unit == UNITS[-1]:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def gc_table(results: Sequence[GcResult], dry_run: bool) -> FitTable:
    """One row per device and category with something in it, a total per device, and
    a total over devices when there are several."""
    freed = "would free" if dry_run else "freed"
    t = FitTable(
        title="Device store: would be removed" if dry_run else "Device store: removed",
        caption="a file linked from several places counts once, in the first category",
    )
    t.column("device").column("category").column("items", "number")
    t.column(freed, "number").column("kept", "number", drop=2).column("kept size", "number", drop=1)
    items = total = 0
    done = [r for r in results if r.ok]
    for r in done:
        name = safe_text(r.device)
        for c in r.categories:
            t.add_row(
                name,
                safe_text(c.category),
                str(c.removed),
                human_bytes(c.bytes_freed),
                str(c.kept),
                human_bytes(c.bytes_kept),
            )
        removed = sum(c.removed for c in r.categories)
        t.add_row(
            name,
            "total",
            str(removed),
            human_bytes(r.bytes_freed),
            str(sum(c.kept for c in r.categories)),
            human_bytes(sum(c.bytes_kept for c in r.categories)),
            style="bold",
            end_section=True,
        )
        items += removed
        total += r.bytes_freed
    if len(done) > 1:
        t.add_row("all devices", "total", str(items), human_bytes(total), "", "", style="bold")
    return t


def print_notes(console: Console, results: Sequence[GcResult]) -> None:
    """What a device noted (a symlinked directory left alone, an entry it could not remove)."""
    for r in results:
        for note in r.notes:
            console.print(
                f"{safe_text(r.device)}: {safe_text(note)}",
                style="dim",
                highlight=False,
                soft_wrap=True,
            )
