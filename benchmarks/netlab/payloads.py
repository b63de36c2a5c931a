"""Benchmark payloads: a directory with one random file, and a real Keras SavedModel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MIB = 1 << 20
CACHE = Path(tempfile.gettempdir()) / "edge-netlab-cache"
BUILD_SAVEDMODEL = """\
import sys
import tensorflow as tf
model = tf.keras.applications.MobileNetV2(weights=None)
model.save(sys.argv[1], include_optimizer=False)
"""


@dataclass
class Payload:
    """What is pushed: `dir` for edge (a SavedModel directory); `files` for the baselines
    (the random file alone, or the SavedModel directory)."""

    name: str
    dir: Path
    copy_src: Path  # what scp/rsync/ansible/pssh copy: a file, or a directory (recursive)

    @property
    def bytes(self) -> int:
        if self.copy_src.is_file():
            return self.copy_src.stat().st_size
        return sum(p.stat().st_size for p in self.copy_src.rglob("*") if p.is_file())

    @property
    def recursive(self) -> bool:
        return self.copy_src.is_dir()


def random_payload(work: Path, mib: int) -> Payload:
    """`random-<mib>MiB/blob.bin` of urandom bytes plus a stub saved_model.pb, which
    `edge push` wants; the baselines copy blob.bin alone."""
    d = work / f"random-{mib}MiB"
    d.mkdir(parents=True, exist_ok=True)
    blob = d / "blob.bin"
    with open(blob, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MIB))
    (d / "saved_model.pb").write_bytes(b"stub")
    return Payload(f"random {mib} MiB", d, blob)


def savedmodel_payload(python: str, timeout: float = 300.0) -> Payload | None:
    """MobileNetV2 (weights=None) saved as a SavedModel, built once with `python`'s
    TensorFlow and cached under the temp dir; None (with a message) if TF is missing."""
    target = CACHE / "mobilenet_v2_savedmodel"
    done = CACHE / "mobilenet_v2_savedmodel.complete"
    if not done.exists():
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
        try:
            proc = subprocess.run(
                [python, "-c", BUILD_SAVEDMODEL, str(target)],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            print(
                f"[payload] SavedModel build timed out after {timeout:.0f}s; skipped",
                file=sys.stderr,
            )
            return None
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            print(
                f"[payload] no SavedModel (TensorFlow for {python}?): {tail[0]}; skipped",
                file=sys.stderr,
            )
            return None
        done.write_text("ok\n")
    return Payload("MobileNetV2 SavedModel", target, target)
