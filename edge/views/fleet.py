"""Tables of the fleet: the inventory, probe results, agent installs and device jobs.

Device-supplied text goes through `safe_text`; inventory fields (the user's own fleet.yaml)
are shown as `Text`, so no value is read as rich markup.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from edge.core.errors import EdgeError
from edge.core.untrusted import safe_text
from edge.fleet.devices import Device
from edge.views.engines import backends_cell
from edge.views.layout import FitTable

if TYPE_CHECKING:  # the results' modules are loaded by the commands that make them
    from edge.ops.agents import AgentInstall
    from edge.ops.info import ProbeResult
    from edge.ops.joblist import Listing


def inventory_table(devices: Sequence[Device], path: Path) -> Table:
    """`edge fleet ls`: one row per device of the inventory at `path`."""
    table = FitTable("name", "host", title=f"fleet ({path})", title_justify="left")
    table.column("endpoint")  # as OpenSSH resolves it (ssh -G): user@host:port, via JUMP
    for header in ("port", "user", "python", "root", "tags"):
        table.column(header)
    with ThreadPoolExecutor(8) as pool:  # one `ssh -G` per device: not one after another
        endpoints = list(pool.map(_endpoint_cell, devices))
    for d, endpoint in zip(devices, endpoints):
        cells = (
            d.name,
            d.host or "(this machine)",
            endpoint,
            d.port or "-",
            d.user or "-",
            d.python,
            d.root,
            ", ".join(d.tags) or "-",
        )
        table.add_row(*(Text(str(c)) for c in cells))
    return table.droppable("python", "root", "port", "user", "tags", "host")


def _endpoint_cell(device: Device) -> str:
    """`user@host:port`, and `via HOPS` on a line of its own: no address is ever folded."""
    if device.is_local:
        return "-"
    try:
        ep = device.endpoint()
        return ep.label + (f"\nvia {','.join(ep.proxy_jump)}" if ep.proxy_jump else "")
    except EdgeError as exc:
        return f"? ({exc.message})"


def probe_table(results: Sequence[ProbeResult]) -> Table:
    """`edge fleet probe`: each device's facts in one row ("-" where the probe failed)."""
    t = FitTable(title="Probe")
    t.column("device").column("status").column("module", "text").column("JetPack")
    t.column("memory MB", "number", drop=3).column("disk free MB", "number", drop=4)
    t.column("python", drop=2).column("tensorflow", drop=1).column("backends", "text")
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
    t = FitTable("device", "status", "python", "numpy", "action", title=f"Agent {version}")
    for r in results:
        t.add_row(
            *(safe_text(c) for c in (r.device, r.status, r.python or "-", r.numpy or "missing")),
            "installed" if r.installed else ("up to date" if r.python else "-"),
        )
    return t


def jobs_table(listings: Sequence[Listing], now: float | None = None) -> Table:
    """`edge jobs ls`: one row per job, its age as of `now` (default: the current time)."""
    t = FitTable(title="Jobs")
    t.column("device").column("job").column("kind", drop=1).column("status")
    t.column("age", "number", drop=2).column("error", "text")
    now = time.time() if now is None else now
    for r in listings:
        for j in r.jobs:
            t.add_row(
                *(safe_text(c) for c in (r.device, j.job_id, j.kind, j.status)),
                f"{(now - j.created_at) / 60:.0f} min",
                safe_text(next(iter((j.error or "").splitlines()), "")),
            )
    return t
