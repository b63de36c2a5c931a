"""Tables of the fleet: the inventory, probe results, agent installs and device jobs.

Device-supplied text goes through `safe_text`; inventory fields (the user's own fleet.yaml)
are shown as `Text`, so no value is read as rich markup.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from edge.core.untrusted import safe_text
from edge.fleet.devices import Device
from edge.ops.agents import AgentInstall
from edge.ops.info import ProbeResult
from edge.ops.joblist import Listing
from edge.views.engines import backends_cell


def inventory_table(devices: Sequence[Device], path: Path) -> Table:
    """`edge fleet ls`: one row per device of the inventory at `path`."""
    table = Table(
        "name",
        "host",
        "port",
        "user",
        "python",
        "root",
        "tags",
        title=f"fleet ({path})",
        title_justify="left",
    )
    for d in devices:
        cells = (
            d.name,
            d.host or "(this machine)",
            d.port or "-",
            d.user or "-",
            d.python,
            d.root,
            ", ".join(d.tags) or "-",
        )
        table.add_row(*(Text(str(c)) for c in cells))
    return table


def probe_table(results: Sequence[ProbeResult]) -> Table:
    """`edge fleet probe`: each device's facts in one row ("-" where the probe failed)."""
    t = Table(title="Probe")
    for col in (
        "device",
        "status",
        "module",
        "JetPack",
        "memory MB",
        "disk free MB",
        "python",
        "tensorflow",
        "backends",
    ):
        t.add_column(col)
    for r in results:
        f = r.facts
        j = f.jetson if f else None
        cells = (
            r.device,
            r.status,
            j.module if j else ("not a Jetson" if f else "-"),
            (j.jetpack or "?") if j else "-",
            str(f.memory_total_mb) if f else "-",
            str(f.disk_free_mb) if f else "-",
            f.python if f else "-",
            (f.tensorflow or "none") if f else "-",
            backends_cell(f.capabilities) if f else "-",
        )
        t.add_row(*(safe_text(c) for c in cells))
    return t


def agent_install_table(results: Sequence[AgentInstall], version: str) -> Table:
    """`edge agent install`: each device's Python and numpy, and what was done."""
    t = Table(title=f"Agent {version}")
    for col in ("device", "status", "python", "numpy", "action"):
        t.add_column(col)
    for r in results:
        t.add_row(
            *(safe_text(c) for c in (r.device, r.status, r.python or "-", r.numpy or "missing")),
            "installed" if r.installed else ("up to date" if r.python else "-"),
        )
    return t


def jobs_table(listings: Sequence[Listing], now: float | None = None) -> Table:
    """`edge jobs ls`: one row per job, its age as of `now` (default: the current time)."""
    t = Table(title="Jobs")
    for col in ("device", "job", "kind", "status", "age", "error"):
        t.add_column(col)
    now = time.time() if now is None else now
    for r in listings:
        for j in r.jobs:
            t.add_row(
                *(safe_text(c) for c in (r.device, j.job_id, j.kind, j.status)),
                f"{(now - j.created_at) / 60:.0f} min",
                safe_text((j.error or "")[:60]),
            )
    return t
