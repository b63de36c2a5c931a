"""Remembered sha256 digests of local files, so that pushing an unchanged model again does
not read it again. A digest is reused only while the file's size, mtime, ctime, inode and
device are all unchanged (ctime moves on every write and cannot be set back by a tool)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from device_agent.manifest import file_sha256
from edge.core.paths import cache_dir

MAX_ENTRIES = 20000


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


class HashCache:
    """A JSON file of path -> [size, mtime_ns, ctime_ns, ino, dev, sha256]."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / "file-digests.json"
        self.lock = threading.Lock()
        self.changed = False
        try:
            self.entries: dict[str, list] = json.loads(self.path.read_text())
            if not isinstance(self.entries, dict):
                self.entries = {}
        except (OSError, ValueError):
            self.entries = {}

    def hash_file(self, path: str, st: os.stat_result) -> tuple[int, str]:
        """(size, sha256) of `path`, from the cache when the file is unchanged."""
        path = os.path.abspath(path)
        with self.lock:
            hit = self.entries.get(path)
        if isinstance(hit, list) and len(hit) == 6 and hit[:5] == _key(st):
            return st.st_size, str(hit[5])
        size, digest = file_sha256(path)
        after = os.stat(path)
        if _key(after) == _key(st) and size == st.st_size:  # not written while we read it
            with self.lock:
                self.entries.pop(path, None)
                self.entries[path] = [*_key(st), digest]
                self.changed = True
        return size, digest

    def save(self) -> None:
        """Write the cache back (atomically) if it learned anything; best effort."""
        if not self.changed:
            return
        with self.lock:
            items = list(self.entries.items())[-MAX_ENTRIES:]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(dict(items)))
            os.replace(tmp, self.path)
            self.changed = False
        except OSError:  # a read-only cache dir only costs the next push a re-read
            pass
