"""Record every convert, bench and validate result in the run store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.history.store import Run, RunStore


def record_runs(
    kind: str,
    results: Sequence[Any],
    model: Path,
    model_digest: str | None,
    recipe: str | None = None,
) -> list[Run]:
    """Store each device's result; returns the stored runs (ids for `edge runs show`)."""
    with RunStore() as store:
        return [
            store.record(
                kind,
                r,
                str(model),
                model_digest,
                getattr(getattr(r, "plan", None), "fingerprint", None),
                recipe,
            )
            for r in results
        ]
