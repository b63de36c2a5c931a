"""Fetch a converted model back from a device, verified file by file.

The device's manifest is untrusted (the scp CVE-2019-6111 pattern): every path passes the
agent's own manifest rules and must resolve inside the staging directory; each file is
read only up to its declared size, from a remote regular file (never a symlink or special
file), into an exclusive temporary name outside the tree, and renamed into the tree only
once its sha256 matches. `--out` appears, whole, only when every file did.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from device_agent.errors import AgentError
from device_agent.manifest import file_sha256, validate_manifest
from device_agent.protocol import ConvertResult, Manifest, ManifestEntry
from edge.agent.client import AgentClient
from edge.core.errors import DeviceError, EdgeError

FILE_MODE = 0o644  # pulled files: readable, never executable, whatever the device says


def checked_manifest(device: str, data: object) -> Manifest:
    """The device's manifest reply, decoded and held to the agent's own path rules
    (relative, no `..`/`.`/empty components, no backslash or NUL, no duplicates, no path
    that is both a file and a directory, sane sizes, digests and permission bits)."""
    hint = "The device sent a manifest this host will not use: check the device and its agent."
    try:
        manifest = Manifest.from_dict(data)  # type: ignore[arg-type]
        validate_manifest(manifest)
    except AgentError as exc:
        raise DeviceError(f"{device}: {exc.message}", hint) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DeviceError(f"{device}: bad manifest reply: {exc}", hint) from None
    return manifest


def confined(tree: Path, entry: ManifestEntry, device: str) -> Path:
    """Where `entry` goes under `tree`, which must be where it resolves to as well."""
    target = tree.joinpath(*entry.path.split("/"))
    top = tree.resolve()
    if top not in target.resolve().parents:
        raise DeviceError(
            f"{device}: manifest path {entry.path!r} leaves the download directory; refused.",
            "Check the device and its agent.",
        )
    return target


def _make_parents(tree: Path, target: Path) -> None:
    """Create target's parent directories under `tree`, refusing anything but a plain
    directory on the way (nothing else can be there: the tree is ours and new)."""
    d = tree
    for part in target.relative_to(tree).parts[:-1]:
        d = d / part
        try:
            d.mkdir(mode=0o755)
        except FileExistsError:
            if d.is_symlink() or not d.is_dir():
                raise DeviceError(
                    f"cannot create {d}: something else is there", "Run the pull again."
                ) from None


def pull_job_model(
    client: AgentClient, job_id: str, out: Path, result: ConvertResult | None = None
) -> tuple[Manifest, Path]:
    """Download the output model of convert job `job_id` into `out` (which must not exist).
    Files land in a private temporary sibling directory first, so `out` is complete or
    absent. `result`: the job's result when the caller has it already (one hop less)."""
    if out.exists():
        raise EdgeError(f"{out} already exists.", "Pass a new --out directory.")
    name = client.device.name
    if result is None:
        result = client.result("convert", job_id)
    if (
        not isinstance(result, ConvertResult)
        or result.status != "succeeded"
        or not result.output_model
    ):
        raise DeviceError(
            f"{name}: job {job_id} has no converted model "
            f"({getattr(result, 'error', None) or 'not a finished convert job'}).",
            f"Check it with: edge jobs attach {job_id} --to {name}",
        )
    manifest = checked_manifest(name, client.call("manifest", result.output_model))
    out.parent.mkdir(parents=True, exist_ok=True)
    need = manifest.total_bytes()
    free = shutil.disk_usage(out.parent).free
    if need > free:
        raise EdgeError(
            f"{name}: the model needs {need / 1e6:.1f} MB, {out.parent} has "
            f"{free / 1e6:.1f} MB free.",
            "Free space or pass another --out.",
        )
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))  # mode 0700
    tree, parts = work / "tree", work / "parts"
    try:
        tree.mkdir()
        parts.mkdir()
        for i, entry in enumerate(manifest.entries):
            target = confined(tree, entry, name)
            part = parts / str(i)
            client.transport.download(
                f"{result.output_model}/{entry.path}", part, max_bytes=entry.size
            )
            size = part.stat().st_size
            if size != entry.size:
                raise DeviceError(
                    f"{name}: {entry.path} arrived with {size} of its {entry.size} bytes.",
                    "Run the pull again.",
                )
            if file_sha256(str(part))[1] != entry.sha256:
                raise DeviceError(
                    f"{name}: {entry.path} arrived corrupted (sha256 mismatch).",
                    "Run the pull again.",
                )
            os.chmod(part, FILE_MODE)
            _make_parents(tree, target)
            if os.path.lexists(target):  # the manifest rules make this impossible
                raise DeviceError(
                    f"{name}: {entry.path} would replace another file.",
                    "Check the device and its agent.",
                )
            os.rename(part, target)
        tree.chmod(0o755)
        os.rename(tree, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest, out
