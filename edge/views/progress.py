"""Show job events as they stream in from devices."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from rich.console import Console

from device_agent.protocol import Event
from edge.agent.follow import EventSink
from edge.core.untrusted import safe_text

if TYPE_CHECKING:
    from rich.progress import TaskID  # rich.progress itself is imported when bars show


def event_printer(console: Console) -> EventSink:
    """An EventSink that prints one dim line per event, prefixed by the device name."""
    lock = threading.Lock()

    def sink(device: str, event: Event) -> None:
        if event.kind == "result":
            return
        style = "bold" if event.kind in ("status", "progress") else "dim"
        with lock:
            console.print(
                f"[cyan]{safe_text(device)}[/] {safe_text(event.message)}",
                style=style,
                highlight=False,
                soft_wrap=True,  # a long message is wrapped by the terminal, not split by us
            )

    return sink


class PushBars:
    """Rich progress bars for a push: one per device and a total (a PushProgress)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=False,
        )
        self.total = self.progress.add_task("total", total=0)
        self.tasks: dict[str, TaskID] = {}
        self.lock = threading.Lock()

    def __enter__(self) -> PushBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, device: str, total_bytes: int) -> None:
        with self.lock:
            self.tasks[device] = self.progress.add_task(safe_text(device), total=total_bytes)
            task = self.progress.tasks[self.total]
            self.progress.update(self.total, total=(task.total or 0) + total_bytes)

    def advance(self, device: str, nbytes: int) -> None:
        self.progress.advance(self.tasks[device], nbytes)
        self.progress.advance(self.total, nbytes)

    def finish(self, device: str, ok: bool) -> None:
        with self.lock:
            if device in self.tasks:
                name = safe_text(device)
                label = f"{name} [green]done[/]" if ok else f"{name} [red]failed[/]"
                self.progress.update(self.tasks[device], description=label)
