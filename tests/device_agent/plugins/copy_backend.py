"""A test backend that plugs into the real jobs through the registry only.

Its build copies the SavedModel (plus a marker file), fails its first attempt in a process
with an out-of-memory error (so the job's OOM ladder has to step down), and counts "engines" as
10 - minimum_segment_size (so the job's sweep has something to choose). Its runner runs the
copy with TensorFlow and appends each call to $COPY_BACKEND_LOG, so a test can see that the
bench and validate jobs ran the artifact through it.

`install()` registers it first in `auto`'s list; the tests' sitecustomize.py calls it in
every agent process (the submitting one and the detached worker).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Callable, Dict, Optional, Sequence

from device_agent.backends import register
from device_agent.backends.base import (
    Backend,
    BuildOutcome,
    BuildRequest,
    Capability,
    ModelRunner,
    SegmentCounter,
)
from device_agent.backends.savedmodel import SavedModelRunner
from device_agent.protocol import ConversionSummary, SweepPoint

NAME = "copy"
MARKER = "copy-backend.json"


def _note(line: str) -> None:
    path = os.environ.get("COPY_BACKEND_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def engines_at(size: int) -> int:
    return max(0, 10 - size)


class CopyRunner(ModelRunner):
    def __init__(self, path: str, signature_key: str, tags: Optional[Sequence[str]]) -> None:
        self._model = SavedModelRunner(os.path.join(path, "model"), signature_key, tags)
        self.inputs, self.outputs = self._model.inputs, self._model.outputs
        _note(f"load {path}")

    def run(self, feed: Dict[str, Any]) -> Dict[str, Any]:
        _note("run")
        return self._model.run(feed)

    def timed_call(self, feed: Dict[str, Any]) -> Callable[[], Any]:
        _note("timed")
        return self._model.timed_call(feed)

    def close(self) -> None:
        self._model.close()


class CopyBackend(Backend):
    name = NAME
    builds_engines = True

    def __init__(self) -> None:
        self.attempts = 0

    def probe(self) -> Capability:
        return Capability(NAME, True, "always", {"copy": "1"})

    def segment_counter(self, request: BuildRequest) -> SegmentCounter:
        def count(size: int) -> SweepPoint:
            return SweepPoint(size, engines_at(size), 100.0 - size, 10 - size)

        return SegmentCounter(count, note="copy backend sweep")

    def build(
        self, request: BuildRequest, workspace_bytes: Optional[int], output_dir: str
    ) -> BuildOutcome:
        assert not os.path.exists(output_dir), "the ladder clears the output before each try"
        os.makedirs(output_dir)
        self.attempts += 1
        if workspace_bytes is None or self.attempts == 1:
            raise RuntimeError(f"Error Code 2: OutOfMemory (workspace {workspace_bytes})")
        shutil.copytree(request.model_dir, os.path.join(output_dir, "model"))
        with open(os.path.join(output_dir, MARKER), "w") as f:
            json.dump(
                {
                    "minimum_segment_size": request.options.minimum_segment_size,
                    "workspace_bytes": workspace_bytes,
                },
                f,
            )
        summary = ConversionSummary(ops_total=1, inputs=list(request.inputs))
        return BuildOutcome(summary, engines_built=False)

    def claims(self, artifact_dir: str) -> bool:
        return os.path.isfile(os.path.join(artifact_dir, MARKER))

    def load(
        self, artifact_dir: str, signature_key: str, tags: Optional[Sequence[str]] = None
    ) -> ModelRunner:
        return CopyRunner(artifact_dir, signature_key, tags)

    def render_summary(self, summary: ConversionSummary) -> str:
        return "copy backend: the model, copied"


def install() -> CopyBackend:
    """Register the copy backend, first in `auto`'s preference list."""
    return register(CopyBackend(), auto_rank=0)  # type: ignore[return-value]
