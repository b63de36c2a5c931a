"""Fetch a converted model back from a device, verified file by file."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from device_agent.protocol import ConvertResult, Manifest

from .client import AgentClient
from .errors import DeviceError, EdgeError


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pull_job_model(client: AgentClient, job_id: str, out: Path) -> tuple[Manifest, Path]:
    """Download the output model of convert job `job_id` into `out` (which must not exist).
    Files land in a temporary sibling directory first, so `out` is complete or absent."""
    if out.exists():
        raise EdgeError(f"{out} already exists.", "Pass a new --out directory.")
    result = client.result("convert", job_id)
    if not isinstance(result, ConvertResult) or result.status != "succeeded" \
            or not result.output_model:
        raise DeviceError(f"{client.device.name}: job {job_id} has no converted model "
                          f"({getattr(result, 'error', None) or 'not a finished convert job'}).",
                          f"Check it with: edge jobs attach {job_id} --to {client.device.name}")
    manifest = Manifest.from_dict(client.call("manifest", result.output_model))
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for entry in manifest.entries:
            local = stage / entry.path
            local.parent.mkdir(parents=True, exist_ok=True)
            client.transport.download(f"{result.output_model}/{entry.path}", local)
            if _sha256(local) != entry.sha256:
                raise DeviceError(f"{client.device.name}: {entry.path} arrived corrupted "
                                  "(sha256 mismatch).", "Run the pull again.")
            os.chmod(local, 0o644)
        os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest, out
