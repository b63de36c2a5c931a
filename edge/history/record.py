"""Record every convert, bench and validate result in the run store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.history.store import Run, RunStore


def model_bytes(model: Path) -> int | None:
    """Size of a model file or tree on this host; None where it is not here to measure."""
    try:
        if model.is_file():
            return model.stat().st_size
        if model.is_dir():
            return sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    except OSError:
        pass
    return None


def run_context(model: Path, facts: Any = None) -> dict[str, Any]:
    """`Run.context`: the model's size and the device's facts (a DeviceFacts or dict)."""
    context: dict[str, Any] = {}
    size = model_bytes(model)
    if size is not None:
        context["model_bytes"] = size
    if facts is not None:
        context["device_facts"] = facts.to_dict() if hasattr(facts, "to_dict") else dict(facts)
    return context


def record_runs(
    kind: str,
    results: Sequence[Any],
    model: Path,
    model_digest: str | None,
    recipe: str | None = None,
    facts: Mapping[str, Any] | None = None,
) -> list[Run]:
    """Store each device's result; returns the stored runs (ids for `edge runs show`).
    `facts`: device name -> the DeviceFacts the operation read, kept with each run."""
    facts = facts or {}
    with RunStore() as store:
        return [
            store.record(
                kind,
                r,
                str(model),
                model_digest,
                getattr(getattr(r, "plan", None), "fingerprint", None),
                recipe,
                context=run_context(Path(model), facts.get(r.device)),
            )
            for r in results
        ]
