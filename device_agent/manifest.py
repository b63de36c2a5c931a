"""Manifests, shared by the host and the device: build, check, decode and digest one.

A manifest lists a tree's files (sorted relative POSIX paths, size, sha256, mode); its
tree digest names the tree on the device. The host builds the manifest it pushes and
checks the one it pulls with these functions; the device's store (`store.py`) plans and
commits pushes against them. Stdlib only, Python 3.8: the host imports this module.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from typing import Callable, Iterable, List, Sequence, Set, Tuple

from .errors import AgentError
from .protocol_core import Manifest, ManifestEntry

CHUNK = 1 << 20
#: The kinds of tree a manifest describes (the store keeps each kind in its own directory).
KINDS = ("model", "calib")
_SHA_RE = re.compile(r"[0-9a-f]{64}")


# --------------------------------------------------------------------------- sha256


def fd_sha256(fd: int) -> Tuple[int, str]:
    """(size, sha256 hex) of an open file from its current offset, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: os.read(fd, CHUNK), b""):
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


def file_sha256(path: str) -> Tuple[int, str]:
    """(size, sha256 hex) of a file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return fd_sha256(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- build

# (path, its stat) -> (size, sha256 hex); the host passes one that remembers digests.
HashFn = Callable[[str, os.stat_result], Tuple[int, str]]


def _hash_stat(path: str, st: os.stat_result) -> Tuple[int, str]:
    return file_sha256(path)


def _entry(abs_path: str, rel: str, hash_file: HashFn = _hash_stat) -> ManifestEntry:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise AgentError(
            f"File name is not valid UTF-8: {rel!r}", "rename the file before pushing"
        ) from None
    try:
        st = os.stat(abs_path)
        if not stat.S_ISREG(st.st_mode):
            raise AgentError(f"Not a regular file: {abs_path}", "remove it from the directory")
        size, digest = hash_file(abs_path, st)
    except OSError as exc:
        raise AgentError(f"Cannot read {abs_path}: {exc.strerror}", "check the file") from None
    return ManifestEntry(path=rel, size=size, sha256=digest, mode=stat.S_IMODE(st.st_mode) & 0o777)


def build_manifest(
    directory: str, name: str = "", kind: str = "model", hash_file: HashFn = _hash_stat
) -> Manifest:
    """Manifest of a local directory (sorted relative POSIX paths), or of a single file."""
    if not os.path.isdir(directory):
        if not os.path.exists(directory):
            raise AgentError(f"No such file or directory: {directory}", "check the path")
        entry = _entry(directory, os.path.basename(os.path.normpath(directory)), hash_file)
        return Manifest(entries=[entry], name=name, kind=kind)
    top = os.path.realpath(directory)
    entries: List[ManifestEntry] = []

    def inside(real: str) -> bool:
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)

    def walk(abs_dir: str, rel_parts: List[str], stack: Set[str]) -> None:
        try:
            names = sorted(os.listdir(abs_dir))
        except OSError as exc:
            raise AgentError(
                f"Cannot list {abs_dir}: {exc.strerror}", "check permissions"
            ) from None
        for n in names:
            abs_path = os.path.join(abs_dir, n)
            rel = "/".join(rel_parts + [n])
            if os.path.islink(abs_path):
                real = os.path.realpath(abs_path)
                if not inside(real):
                    raise AgentError(
                        f"Symlink {rel} points outside {directory} (to {real})",
                        "copy the target into the directory or remove the link",
                    )
                if not os.path.exists(real):
                    raise AgentError(f"Broken symlink: {rel}", "fix or remove the link")
            if os.path.isdir(abs_path):
                real = os.path.realpath(abs_path)
                if real in stack:
                    raise AgentError(f"Symlink loop at {rel}", "remove the link")
                walk(abs_path, rel_parts + [n], stack | {real})
            else:
                entries.append(_entry(abs_path, rel, hash_file))

    walk(directory, [], {top})
    entries.sort(key=lambda e: e.path)
    return Manifest(entries=entries, name=name, kind=kind)


def tree_digest(manifest: Manifest) -> str:
    """sha256 over canonical JSON of the sorted (path, size, sha256, mode) entries."""
    rows = sorted([e.path, e.size, e.sha256, e.mode] for e in manifest.entries)
    text = json.dumps(rows, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------- check


def _bad(path: object, why: str) -> AgentError:
    return AgentError(
        f"Rejected manifest entry {path!r}: {why}",
        "manifest paths must be relative POSIX paths inside the pushed tree",
    )


def validate_manifest(manifest: Manifest) -> None:
    """Raise AgentError naming the first entry that could escape or confuse the tree."""
    if manifest.kind not in KINDS:
        raise AgentError(f"Unknown manifest kind {manifest.kind!r}", f"use one of {sorted(KINDS)}")
    files: Set[str] = set()
    dirs: Set[str] = set()
    for e in manifest.entries:
        p = e.path
        if not isinstance(p, str) or not p:
            raise _bad(p, "empty path")
        if "\x00" in p:
            raise _bad(p, "NUL in path")
        if "\\" in p:
            raise _bad(p, "backslash in path")
        if p.startswith("/"):
            raise _bad(p, "absolute path")
        parts = p.split("/")
        if ".." in parts:
            raise _bad(p, "'..' component")
        if "." in parts:
            raise _bad(p, "'.' component")
        if "" in parts:
            raise _bad(p, "empty component")
        if not isinstance(e.sha256, str) or not _SHA_RE.fullmatch(e.sha256):
            raise _bad(p, f"sha256 must be 64 lowercase hex characters, not {e.sha256!r}")
        if isinstance(e.size, bool) or not isinstance(e.size, int) or e.size < 0:
            raise _bad(p, f"bad size {e.size!r}")
        if isinstance(e.mode, bool) or not isinstance(e.mode, int) or not 0 <= e.mode <= 0o777:
            raise _bad(p, f"bad mode {e.mode!r}")
        if p in files:
            raise _bad(p, "duplicate path")
        if p in dirs:
            raise _bad(p, "is both a file and a directory")
        files.add(p)
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d in files:
                raise _bad(p, f"its parent {d!r} is also a file")
            dirs.add(d)


def manifest_from_json(text: str) -> Manifest:
    """Decode a Manifest from JSON; bad input is an AgentError, not a traceback."""
    try:
        return Manifest.from_json(text)
    except (ValueError, TypeError, AttributeError) as exc:
        raise AgentError(f"Bad manifest JSON: {exc}", "send a Manifest object on stdin") from None


# --------------------------------------------------------------------------- ranges


def gaps(spans: Iterable[Sequence[int]], size: int) -> List[List[int]]:
    """The parts of [0, size) that no [start, end) span covers, in order. The device turns
    a range record (done) into what to send; the host turns what to send into the record."""
    out, pos = [], 0
    for start, end in sorted((int(a), int(b)) for a, b in spans):
        if start > pos:
            out.append([pos, min(start, size)])
        pos = max(pos, end)
    if pos < size:
        out.append([pos, size])
    return [r for r in out if r[1] > r[0]]
