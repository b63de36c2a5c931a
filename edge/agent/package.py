"""Build the agent zipapp (`edge-agent-<version>-<build>.pyz`) from the installed device_agent."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import zipapp
from pathlib import Path

import device_agent
from device_agent import __version__
from edge.core.paths import cache_dir

# The zipapp's `__main__.py` is device_agent/bootstrap.py with FILES filled in: it checks
# the Python, verifies (or repairs) the unpacked copy against FILES, and runs the agent.
_FILES_LINE = re.compile(r"^(FILES: .* = )\{\}$", re.MULTILINE)


def _bootstrap_source() -> str:
    return (Path(device_agent.__file__).resolve().parent / "bootstrap.py").read_text()


def zipapp_main(files: dict[str, list[int | str]]) -> str:
    """The zipapp's `__main__.py` for a package with these files (name -> [size, sha256])."""
    table = json.dumps(files, sort_keys=True)
    source, found = _FILES_LINE.subn(lambda m: m.group(1) + table, _bootstrap_source(), 1)
    if not found:
        raise RuntimeError("device_agent/bootstrap.py lost its FILES line")
    return source


def source_digest() -> str:
    """sha256 over the agent's sources: names the build on the device. Computed once per
    process: the device threads of a fleet command all ask for it at once."""
    with _DIGEST_LOCK:
        return _source_digest()


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
    pkg = Path(device_agent.__file__).resolve().parent
    digest = hashlib.sha256()
    for src in _sources():
        digest.update(str(src.relative_to(pkg)).encode())
        digest.update(src.read_bytes())
    return digest.hexdigest()


_DIGEST_LOCK = threading.Lock()


def agent_filename() -> str:
    """`edge-agent-<version>-<build>.pyz`: a device that has the file has this build."""
    return f"edge-agent-{__version__}-{source_digest()[:12]}.pyz"


def _sources() -> list[Path]:
    pkg = Path(device_agent.__file__).resolve().parent
    return sorted(p for p in pkg.rglob("*.py") if "__pycache__" not in p.parts)


def build_zipapp(out_dir: Path | None = None) -> Path:
    """Return the path of the zipapp for this build, building it when the sources changed."""
    pkg = Path(device_agent.__file__).resolve().parent
    out_dir = out_dir or cache_dir() / "agent" / source_digest()[:16]
    target = out_dir / agent_filename()
    with _BUILD_LOCK:  # the devices of a fleet command ask for it from several threads
        if target.exists():
            return target
        out_dir.mkdir(parents=True, exist_ok=True)
        _build(pkg, target)
    return target


_BUILD_LOCK = threading.Lock()


def _build(pkg: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / "stage"
        for src in _sources():
            dest = stage / "device_agent" / src.relative_to(pkg)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        files: dict[str, list[int | str]] = {}
        for path in sorted(stage.rglob("*.py")):
            data = path.read_bytes()
            files[path.relative_to(stage).as_posix()] = [
                len(data),
                hashlib.sha256(data).hexdigest(),
            ]
        (stage / "__main__.py").write_text(zipapp_main(files))
        partial = target.with_suffix(f".pyz.partial{os.getpid()}")
        zipapp.create_archive(stage, partial, interpreter=None)
        os.replace(partial, target)  # other processes may race us: each has its own partial
