"""What `ssh -G` printed, kept on disk between commands while nothing it read changed.

Every fleet command resolves each device through `ssh -G` (OpenSSH's own reading of the
client config). One run costs ~5 ms of CPU and a process; sixteen of them, started from
the threads of one command, took ~0.2 s of a warm 16-device probe on this 2-core machine.
The answer depends only on the config files ssh reads (and the files they include), the
ssh binary, the user and the host name, so it is kept under a key made of those. A config
whose answer can depend on anything else is never kept: `Match` (exec, localnetwork,
...), `CanonicalizeHostname` (DNS) or `${ENV}` references. The cache is an optimisation
only: anything odd about it (unreadable, corrupt, foreign) is a miss.
"""

from __future__ import annotations

import getpass
import glob
import hashlib
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from edge.core.paths import cache_dir

SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")
_UNCACHEABLE = ("match", "canonicalizehostname")
MAX_FILES = 64  # an Include loop or a huge glob: not worth keeping
_LOCK = threading.Lock()
_SCANNED: dict[tuple[Any, ...], list[list[Any]] | None] = {}


def stamp(path: str) -> list[Any]:
    """[path, mtime_ns, size, inode], or [path, None] where it cannot be read: a file
    that is replaced or edited gets a new stamp."""
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_mtime_ns, st.st_size, st.st_ino]


def _inputs(files: list[Path], user_dir: Path) -> list[list[Any]] | None:
    """Stamps of every file and Include directory ssh reads; None: not cacheable."""
    stamps: list[list[Any]] = []
    todo = [(str(f), f != SYSTEM_CONFIG) for f in files]
    seen: set[str] = set()
    while todo:
        path, user = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        if len(seen) > MAX_FILES:
            return None
        stamps.append(stamp(path))
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue  # a missing file is part of the key as `None`
        for line in text.splitlines():
            words = line.replace("=", " ", 1).split()
            if not words or words[0].startswith("#"):
                continue
            keyword = words[0].lower()
            if keyword in _UNCACHEABLE or "${" in line:
                return None
            if keyword != "include":
                continue
            for pattern in words[1:]:
                pattern = os.path.expanduser(pattern)
                if not os.path.isabs(pattern):
                    pattern = str((user_dir if user else SYSTEM_CONFIG.parent) / pattern)
                stamps.append(stamp(os.path.dirname(pattern)))  # a file added or removed
                todo += [(p, user) for p in sorted(glob.glob(pattern))]
    return stamps


def _inputs_once(files: list[Path]) -> list[list[Any]] | None:
    """`_inputs`, scanned once per process while the top files stand still (a fleet
    command asks for each of its devices, from as many threads)."""
    memo = (tuple(files), tuple(tuple(stamp(str(f))) for f in files))
    with _LOCK:
        if memo not in _SCANNED:
            _SCANNED[memo] = _inputs(files, Path.home() / ".ssh")
        return _SCANNED[memo]


def key(ssh: str, args: list[str], alias: str, files: list[Path]) -> str | None:
    """The cache key of `ssh -G args alias`, or None when its answer may not be kept."""
    stamps = _inputs_once(files)
    if stamps is None:
        return None
    parts = {
        "ssh": stamp(ssh),
        "args": args,
        "alias": alias,
        "inputs": stamps,
        "who": [getpass.getuser(), os.getuid(), str(Path.home()), socket.gethostname()],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _path(digest: str) -> Path:
    return cache_dir() / "ssh-g" / f"{digest}.json"


def load(digest: str) -> dict[str, Any] | None:
    """The kept answer, or None (missing, unreadable or not the expected shape)."""
    try:
        data = json.loads(_path(digest).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return None
    for v in data.values():
        if not (isinstance(v, str) or isinstance(v, list) and all(isinstance(i, str) for i in v)):
            return None
    return data


def save(digest: str, found: dict[str, Any]) -> None:
    """Keep an answer (atomically; a failure to write is only a later miss)."""
    path = _path(digest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(found))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
