"""Result rows, the printed/markdown table, target checks, and RESULTS.md."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20


@dataclass
class Row:
    """One measurement. `role`: edge, baseline (compared with the group's edge row), or
    ref (line time, raw TCP, ...: edge's share of it is shown instead)."""

    case: int
    group: str
    tool: str
    seconds: float | None
    role: str = "baseline"
    nbytes: int = 0  # per device, for MiB/s
    devices: int = 1
    note: str = ""
    key: str = ""
    samples: list[float] = field(default_factory=list)
    others_busy: float = 0.0  # CPU share other processes used just before it
    cpu_s: float | None = None  # client CPU (user+sys) of the tool's processes, median
    cpu_samples: list[float] = field(default_factory=list)

    @property
    def mib_s(self) -> float | None:
        if not self.seconds or not self.nbytes:
            return None
        return self.nbytes / MIB / self.seconds

    @property
    def agg_mib_s(self) -> float | None:
        """MiB/s summed over the devices."""
        mib = self.mib_s
        return None if mib is None else mib * self.devices

    @property
    def cpu_ms_per_mib(self) -> float | None:
        return cpu_ms_per_mib(self.cpu_s, self.nbytes, self.devices)


def cpu_ms_per_mib(cpu_s: float | None, nbytes: int, devices: int) -> float | None:
    """Client CPU milliseconds per MiB sent (the payload times the devices it went to)."""
    if cpu_s is None or not nbytes or devices < 1:
        return None
    return 1000.0 * cpu_s / (nbytes * devices / MIB)


def edge_row(rows: Sequence[Row], row: Row) -> Row | None:
    """The edge row a row is compared with: the first of its case and group."""
    return next(
        (
            r
            for r in rows
            if r.case == row.case and r.group == row.group and r.role == "edge" and r.seconds
        ),
        None,
    )


def _ratio(rows: Sequence[Row], row: Row) -> str:
    edge = edge_row(rows, row)
    if row.role == "edge" or edge is None or not row.seconds or edge.seconds is None:
        return ""
    if row.role == "ref":
        return f"edge at {100 * row.seconds / edge.seconds:.0f}% of it"
    return f"{row.seconds / edge.seconds:.2f}x"


def table(rows: Sequence[Row]) -> str:
    """Markdown table: seconds, MiB/s per device, client CPU, and baseline/edge time (>1:
    edge faster)."""
    out = [
        "| case | setup | tool | seconds | MiB/s per device | client CPU s | CPU ms/MiB "
        "| baseline s / edge s |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        secs = f"{r.seconds:.2f}" if r.seconds is not None else "-"
        if len(r.samples) > 1:
            secs += f" (median of {len(r.samples)})"
        mib = f"{r.mib_s:.1f}" if r.mib_s else ""
        cpu = f"{r.cpu_s:.2f}" if r.cpu_s is not None and r.seconds is not None else ""
        per = r.cpu_ms_per_mib
        per_mib = f"{per:.2f}" if per is not None and r.seconds is not None else ""
        tool = f"**{r.tool}**" if r.role == "edge" else r.tool
        ratio = _ratio(rows, r)
        note = f" ({r.note})" if r.note else ""
        if r.seconds is None:
            ratio = r.note or "failed"
            note = ""
        out.append(
            f"| {r.case} | {r.group} | {tool}{note} | {secs} | {mib} | {cpu} | {per_mib} "
            f"| {ratio} |"
        )
    return "\n".join(out)


@dataclass
class Target:
    text: str
    verdict: str  # PASS, FAIL, n/a
    detail: str


def _get(rows: Sequence[Row], key: str) -> float | None:
    return next((r.seconds for r in rows if r.key == key and r.seconds), None)


def _row(rows: Sequence[Row], key: str) -> Row | None:
    return next((r for r in rows if r.key == key and r.seconds), None)


def _cpu(rows: Sequence[Row], key: str) -> float | None:
    r = _row(rows, key)
    return r.cpu_ms_per_mib if r else None


def _agg(rows: Sequence[Row], key: str) -> float | None:
    r = _row(rows, key)
    return r.agg_mib_s if r else None


def check_targets(rows: Sequence[Row], devices: int) -> list[Target]:
    """Issue 14's targets, judged from the rows that carry their keys (all ratios of one
    run); the scale case adds an "info" line (no target, only its growth)."""
    out: list[Target] = []

    def add(
        text: str,
        keys: Sequence[str],
        ok: Callable[..., bool],
        detail: Callable[..., str],
        get: Callable[[Sequence[Row], str], float | None] = _get,
    ) -> None:
        vals = [get(rows, k) for k in keys]
        if any(v is None for v in vals):
            missing = ", ".join(k for k, v in zip(keys, vals) if v is None)
            out.append(Target(text, "n/a", f"not measured: {missing}"))
        else:
            out.append(Target(text, "PASS" if ok(*vals) else "FAIL", detail(*vals)))

    n = devices
    add(
        f"{n} devices fan-out: edge no slower than {n} parallel scp",
        ["c3.scp", "c3.edge"],
        lambda s, e: e <= s,
        lambda s, e: f"scp {s:.2f}s / edge {e:.2f}s = {s / e:.2f}x",
    )
    add(
        f"{n} devices fan-out: edge's client CPU/MiB within 1.5x of paramiko put",
        ["c3.paramiko", "c3.edge"],
        lambda pm, e: e <= 1.5 * pm,
        lambda pm, e: f"edge {e:.2f} ms/MiB, paramiko put {pm:.2f} ms/MiB = {e / pm:.2f}x",
        get=_cpu,
    )
    add(
        "1 device, 100 Mbit/s: edge >= scp",
        ["c1.scp", "c1.edge"],
        lambda s, e: e <= s,
        lambda s, e: f"scp {s:.2f}s / edge {e:.2f}s = {s / e:.2f}x",
    )
    add(
        "1 device, 100 Mbit/s: edge >= 95% of the raw TCP ceiling",
        ["c1.tcp", "c1.edge"],
        lambda t, e: t / e >= 0.95,
        lambda t, e: f"raw TCP {t:.2f}s / edge {e:.2f}s = {100 * t / e:.0f}%",
    )
    add(
        "1 device, 100 Mbit/s: MobileNetV2 SavedModel, edge >= scp",
        ["c1.model_scp", "c1.model_edge"],
        lambda s, e: e <= s,
        lambda s, e: f"scp {s:.2f}s / edge {e:.2f}s = {s / e:.2f}x",
    )
    add(
        "1 device, 50 ms RTT, no cap: edge >= 3x scp",
        ["c2.scp", "c2.edge"],
        lambda s, e: s / e >= 3.0,
        lambda s, e: f"scp {s:.2f}s / edge {e:.2f}s = {s / e:.2f}x",
    )
    add(
        f"unchanged re-push to {n}, cold: edge no slower than {n} parallel rsync",
        ["c4.rsync", "c4.edge"],
        lambda r, e: e <= r,
        lambda r, e: f"rsync {r:.2f}s / edge {e:.2f}s = {r / e:.2f}x",
    )
    add(
        f"unchanged re-push to {n}, warm (edge mux): under 0.5 s",
        ["c4.edge_warm"],
        lambda w: w < 0.5,
        lambda w: f"edge {w:.2f}s",
    )
    add(
        f"probe of {n}, cold: edge no slower than {n} parallel ssh",
        ["c5.ssh", "c5.edge_cold"],
        lambda s, e: e <= s,
        lambda s, e: (
            f"ssh {s:.2f}s / edge {e:.2f}s = {s / e:.2f}x (agent installed; see the table "
            "for a first probe that installs it)"
        ),
    )
    add(
        f"probe of {n}, warm (edge mux): under 0.3 s",
        ["c5.edge_warm"],
        lambda e: e < 0.3,
        lambda e: f"edge {e:.2f}s",
    )
    out += scale_lines(rows)
    return out


def growth(small: float, large: float) -> float:
    """How many times the aggregate rate grew from the small fleet to the large one."""
    return large / small


def scale_lines(rows: Sequence[Row]) -> list[Target]:
    """Case 6: each tool's aggregate MiB/s at both device counts and its growth ("info":
    the issue sets no bar, it asks for the numbers)."""
    out = []
    for tool, name in (("edge", "edge push"), ("scp", "parallel scp")):
        small, large = _row(rows, f"c6.{tool}.small"), _row(rows, f"c6.{tool}.large")
        text = f"scale, no shaping: {name} aggregate MiB/s"
        if small is None or large is None:
            missing = [k for k, r in (("small", small), ("large", large)) if r is None]
            out.append(Target(text, "n/a", f"not measured: c6.{tool}.{', '.join(missing)}"))
            continue
        a, b = small.agg_mib_s or 0.0, large.agg_mib_s or 0.0
        out.append(
            Target(
                text,
                "info",
                f"{small.devices} devices {a:.0f} MiB/s, {large.devices} devices {b:.0f} "
                f"MiB/s: {growth(a, b):.2f}x"
                if a
                else "no rate",
            )
        )
    return out


def targets_md(targets: Sequence[Target]) -> str:
    lines = ["| target | verdict | measured |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.verdict} | {t.detail} |" for t in targets]
    return "\n".join(lines)


def _cmd(*argv: str) -> str:
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
        return (p.stdout.strip() or p.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "not installed"


def _ver(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


def machine_info(repo: Path) -> dict[str, str]:
    """What the numbers were measured on."""
    mem_kb = 0
    cpu = "?"
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    rev = _cmd("git", "-C", str(repo), "rev-parse", "--short", "HEAD")
    dirty = _cmd("git", "-C", str(repo), "status", "--porcelain", "--", "edge", "device_agent")
    return {
        "uname -a": _cmd("uname", "-a"),
        "nproc": _cmd("nproc"),
        "cpu": cpu,
        "memory": f"{mem_kb / 1048576:.1f} GiB",
        "python": platform.python_version(),
        "OpenSSH": _cmd("ssh", "-V"),
        "paramiko": _ver("paramiko"),
        "rsync": _cmd("rsync", "--version"),
        "ansible-core": _ver("ansible-core"),
        "parallel-ssh": _ver("parallel-ssh"),
        "jetson-edge": f"{_ver('jetson-edge')} (git {rev}"
        + (
            ", uncommitted changes in edge/ or device_agent/)"
            if dirty not in ("", "not installed")
            else ")"
        ),
    }


def write_results(
    path: Path,
    command: str,
    info: dict[str, str],
    rows: Sequence[Row],
    targets: Sequence[Target],
    notes: Sequence[str],
    elapsed: float,
) -> None:
    """(Over)write RESULTS.md with the latest run."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = "\n".join(f"- {k}: `{v}`" for k, v in info.items())
    text = (
        f"""# Push benchmark results

Latest run: {now}, {elapsed:.0f} s in all. Produced by:

    {command}

## Machine

{machine}

## Results

Seconds are wall-clock from launching the tool(s) to the last one done, as a user would
run them (CLI start-up included). MiB/s is the payload per device over that time. The
last column is the baseline's time over edge's (above 1: edge is faster); on reference
rows (line time, raw TCP) it is the share of that ideal edge reaches.

{table(rows)}

## Targets

{targets_md(targets)}

## Notes

"""
        + "\n".join(f"- {n}" for n in notes)
        + "\n"
    )
    path.write_text(text)
