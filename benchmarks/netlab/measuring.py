"""How the cases measure a tool: `measure` runs one tool `repeat` times; `interleave`
runs two or more tools in turn, round by round (A B, B A, A B, ...), so that a machine
that slows down or speeds up mid-run (this VM's neighbours do) weighs on each alike.
Each keeps the median of its samples in a Row."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .lab import Device, Lab
from .payloads import Payload
from .procs import cpu_busy
from .report import Row
from .tools import ToolFailed, Tools

BUSY_WARN = 0.25  # CPU share used by others that makes a measurement suspect


@dataclass
class Ctx:
    """Everything a case needs; `rows` collects the results."""

    lab: Lab
    tools: Tools
    random: Payload
    model: Payload | None
    devices: int
    probe_devices: int
    rate_mbit: float = 100.0
    delay_ms: float = 25.0
    repeat: int = 1
    model_fanout: bool = False
    wait_idle: float = 0.0  # seconds to wait for other processes to calm down
    scale: Payload | None = None  # case 6's payload
    scale_devices: tuple[int, ...] = (16, 64)
    rows: list[Row] = field(default_factory=list)

    def devs(self, n: int) -> list[Device]:
        return self.lab.devices[:n]

    def line_time(self, nbytes: int) -> float:
        return nbytes * 8 / (self.rate_mbit * 1e6)

    def payloads(self) -> list[Payload]:
        return [self.random] + ([self.model] if self.model else [])


class Trial:
    """The samples of one tool into its Row: `setup` (untimed) then `fn` (returns
    seconds) per sample. A tool that is not installed, fails twice or times out gets a
    row saying so."""

    def __init__(
        self,
        ctx: Ctx,
        case: int,
        group: str,
        tool: str,
        needs: str,
        fn: Callable[[], float],
        setup: Callable[[], object] | None = None,
        role: str = "baseline",
        nbytes: int = 0,
        devices: int = 1,
        key: str = "",
        timeout: float | None = None,
    ) -> None:
        self.ctx, self.fn, self.setup, self.timeout = ctx, fn, setup, timeout or 120.0
        self.row = Row(case, group, tool, None, role, nbytes, devices, key=key)
        ctx.rows.append(self.row)
        self.retried, self.cpu_lost, self.ended = "", False, False
        missing = [ctx.tools.missing[t] for t in needs.split(",") if t and t in ctx.tools.missing]
        if missing:
            self.row.note = "skipped: " + missing[0]
            self.ended = True
            print(f"[case {case}] {tool}: {self.row.note}", file=sys.stderr, flush=True)
            return
        self.row.others_busy = _quiet(ctx.wait_idle)
        if self.row.others_busy > BUSY_WARN:
            self.row.note = f"CPUs {100 * self.row.others_busy:.0f}% busy just before it"

    def sample(self) -> None:
        """One more sample (a failure is retried once, and reported)."""
        ctx, row = self.ctx, self.row
        ctx.tools.timeout = self.timeout
        while not self.ended:
            try:
                if self.setup:
                    self.setup()
                cpu0, ctx.tools.cpu_clean = ctx.tools.cpu_s, True
                row.samples.append(self.fn())
                if ctx.tools.cpu_clean:
                    row.cpu_samples.append(ctx.tools.cpu_s - cpu0)
                else:
                    self.cpu_lost = True
                return
            except ToolFailed as exc:
                if self.retried:  # a second failure ends it
                    row.note = f"failed twice: {exc}"
                    self.ended = True
                    return
                self.retried = str(exc)
                print(
                    f"[case {row.case}] {row.tool}: {exc}; retrying once",
                    file=sys.stderr,
                    flush=True,
                )

    def done(self) -> Row:
        """The row, with the median of the samples."""
        row = self.row
        if self.retried and not row.note.startswith("failed"):
            row.note = "; ".join(
                filter(None, [row.note, f"1 failed attempt, retried: {self.retried[:120]}"])
            )
        if row.samples and not row.note.startswith("failed"):
            row.seconds = statistics.median(row.samples)
            if row.cpu_samples and row.role != "ref":
                row.cpu_s = statistics.median(row.cpu_samples)
            if self.cpu_lost:  # another child of the harness was reaped while it ran
                row.note = "; ".join(filter(None, [row.note, "client CPU not counted"]))
            if len(row.samples) > 1:
                row.note = "; ".join(filter(None, [row.note, _spread(row.samples)]))
        shown = f"{row.seconds:.2f}s" if row.seconds is not None else row.note
        print(f"[case {row.case}] {row.group} | {row.tool}: {shown}", file=sys.stderr, flush=True)
        return row


def measure(ctx: Ctx, *args: Any, repeat: int | None = None, **trial: Any) -> Row:
    """Run one tool (Trial's arguments) `repeat` times (default ctx.repeat)."""
    t = Trial(ctx, *args, **trial)
    for _ in range(repeat or ctx.repeat):
        if t.ended:
            break
        t.sample()
    return t.done()


def interleave(ctx: Ctx, trials: Sequence[dict[str, Any]], rounds: int) -> list[Row]:
    """Run the tools in turn, `rounds` times, the order reversed every other round."""
    ts = [Trial(ctx, **kw) for kw in trials]
    for r in range(rounds):
        for t in ts if r % 2 == 0 else ts[::-1]:
            if not t.ended:
                t.sample()
    return [t.done() for t in ts]


def _spread(samples: list[float]) -> str:
    return f"runs {min(samples):.2f} to {max(samples):.2f} s"


def _quiet(wait: float) -> float:
    """CPU share others use while the harness is idle; waits up to `wait` s for it to drop
    under BUSY_WARN. Returns the last sample."""
    busy = cpu_busy(0.3)
    deadline = time.monotonic() + wait
    while busy > BUSY_WARN and time.monotonic() < deadline:
        busy = cpu_busy(2.0)
    return busy
