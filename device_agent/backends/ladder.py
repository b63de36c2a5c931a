"""The OOM retry ladder for any backend's build: a backend that builds engines is retried
with half the workspace on each out-of-memory error, down to the 32 MiB floor
(`planner.run_with_retries`); one that builds none is run once."""

from __future__ import annotations

import shutil
import time
from typing import List, Optional, Tuple

from ..protocol import Attempt
from .base import Backend, BuildOutcome, BuildRequest

#: The first workspace when the memory plan gave none (as TF-TRT's own default, 1 GiB).
DEFAULT_WORKSPACE = 1 << 30


def build_with_ladder(
    backend: Backend, request: BuildRequest, output_dir: str
) -> Tuple[BuildOutcome, List[Attempt]]:
    """Build into `output_dir` (cleared before every attempt); returns the outcome and the
    attempts. Errors propagate with `exc.attempts` attached for engine builds."""
    from ..planner import run_with_retries

    def attempt(workspace: Optional[int]) -> BuildOutcome:
        shutil.rmtree(output_dir, ignore_errors=True)
        return backend.build(request, workspace, output_dir)

    if not backend.builds_engines:
        start = time.time()
        outcome = attempt(None)
        return outcome, [Attempt(None, "ok", seconds=round(time.time() - start, 3))]
    first = int(request.workspace_bytes or DEFAULT_WORKSPACE)
    return run_with_retries(attempt, first, log=request.log)
