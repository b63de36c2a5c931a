"""Show job events as they stream in from devices."""

from __future__ import annotations

import threading

from rich.console import Console

from device_agent.protocol import Event

from ..jobs import EventSink


def event_printer(console: Console) -> EventSink:
    """An EventSink that prints one dim line per event, prefixed by the device name."""
    lock = threading.Lock()

    def sink(device: str, event: Event) -> None:
        if event.kind == "result":
            return
        style = "bold" if event.kind in ("status", "progress") else "dim"
        with lock:
            console.print(f"[cyan]{device}[/] {event.message}", style=style, highlight=False)

    return sink
