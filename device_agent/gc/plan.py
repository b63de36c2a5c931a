"""The plan of `gc`: every entry of the device root sorted into kept (and why) or removed
(and why), with the bytes each removal frees. It reads and locks nothing but worker.lock
probes (worker_lock.worker_alive); `device_agent.gc` does the removing."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .. import worker_lock
from ..protocol import GC_CATEGORIES, TERMINAL, JobState

MAX_JOB_FILE = 16 << 20  # job.json/result.json larger than this are not read for references
TRASH = ".gc-"
LEFTOVER = (".tmp-", ".bad-")  # staging and discard directories of store.py and convert.py
HEX = set("0123456789abcdef")
# Whatever --grace says, something written this recently is in use (an upload being sent,
# a job being created, a tree being materialized): never removed.
ACTIVE_SECONDS = 60.0
Ident = Tuple[int, int]


@dataclass
class Entry:
    """One thing under the root that gc decides on."""

    category: str
    rel: str
    path: str
    st: os.stat_result
    kept: str = ""  # why it stays ("" when it goes)
    reason: str = ""  # why it goes
    bytes: int = 0
    files: List[Tuple[Ident, int, int]] = field(default_factory=list)  # (ident, size, nlink)


@dataclass
class Scan:
    root: str
    keep: int
    grace: float
    now: float
    entries: List[Entry] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    job_names: Set[str] = field(default_factory=set)
    kept_jobs: List[str] = field(default_factory=list)
    refs: Set[str] = field(default_factory=set)  # "models/<d>", "cache/<key>", ...
    words: Set[str] = field(default_factory=set)  # other strings kept jobs hold (cache keys)
    any_live: bool = False
    live_convert: bool = False
    push_in_flight: bool = False

    def young(self, when: float) -> bool:
        return self.now - when < self.grace

    def active(self, when: float) -> bool:
        return self.now - when < max(self.grace, ACTIVE_SECONDS)

    def add(self, category: str, rel: str, st: os.stat_result, kept: str, reason: str = "") -> None:
        path = os.path.join(self.root, *rel.split("/"))
        self.entries.append(Entry(category, rel, path, st, kept, reason))


def lstat(path: str) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _names(scan: Scan, rel: str) -> List[str]:
    """The names in directory `rel` of the root; none when it is missing, and none (with a
    note) when it or a directory above it is a symlink: gc never leaves the root."""
    path = scan.root
    for part in rel.split("/"):
        path = os.path.join(path, part)
        st = lstat(path)
        if st is None:
            return []
        if not stat.S_ISDIR(st.st_mode):
            kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            scan.notes.append(f"{rel}: {kind}, not followed or cleaned")
            return []
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        scan.notes.append(f"{rel}: cannot list ({exc.strerror})")
        return []


def walk(path: str) -> Iterator[Tuple[str, os.stat_result]]:
    """(path, lstat) of every non-directory at or under `path`, never through a symlink."""
    st = lstat(path)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        yield path, st
        return
    try:
        with os.scandir(path) as it:
            children = list(it)
    except OSError:
        return
    for child in children:
        if child.is_dir(follow_symlinks=False):
            yield from walk(child.path)
        else:
            try:
                yield child.path, child.stat(follow_symlinks=False)
            except OSError:
                continue


# ---------------------------------------------------------------------- jobs


def _job_state(path: str) -> Optional[JobState]:
    try:
        with open(os.path.join(path, "status.json")) as f:
            return JobState.from_json(f.read())
    except (OSError, ValueError, TypeError):
        return None


def _job_live(scan: Scan, path: str, state: Optional[JobState], st: os.stat_result) -> bool:
    """Whether a worker runs the job, or it is being created or spawned right now."""
    alive = worker_lock.worker_alive(path)
    if alive is not None:
        return alive
    if state is None:  # no status.json yet (being created), or torn by a crash
        return scan.active(st.st_mtime)
    if state.status in TERMINAL:
        return False
    if state.pid is None:  # created, its worker not spawned yet
        return scan.active(state.created_at)
    return worker_lock.legacy_worker(state.pid, state.job_id)


def _strings(value: Any, out: Set[str]) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        for v in value.values():
            _strings(v, out)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out)


def _reference(scan: Scan, path: str) -> None:
    """Record what job directory `path` names: paths under the root, and other strings."""
    found: Set[str] = set()
    for name in ("job.json", "result.json"):
        try:
            with open(os.path.join(path, name), "rb") as f:
                _strings(json.loads(f.read(MAX_JOB_FILE)), found)
        except (OSError, ValueError, RecursionError):
            continue
    bases = {scan.root, os.path.realpath(scan.root)}
    for text in found:
        norm = os.path.normpath(text) if text.startswith("/") else ""
        for base in bases:
            if norm.startswith(base + os.sep):
                parts = norm[len(base) + 1 :].split(os.sep)
                scan.refs.update("/".join(parts[:n]) for n in (2, 3))
        if "/" not in text and len(text) <= 128:
            scan.words.add(text)


def _scan_jobs(scan: Scan) -> None:
    finished: List[Tuple[float, str]] = []
    for name in _names(scan, "jobs"):
        rel, path = "jobs/" + name, os.path.join(scan.root, "jobs", name)
        st = lstat(path)
        if st is None:
            continue
        if name.startswith("."):
            if name.startswith(TRASH):
                scan.add("trash", rel, st, "", "left by an interrupted gc")
            continue
        scan.job_names.add(name)
        if not stat.S_ISDIR(st.st_mode):
            scan.add("trash", rel, st, "recent" if scan.young(st.st_mtime) else "", "not a job")
            continue
        state = _job_state(path)
        if _job_live(scan, path, state, st):
            scan.any_live = True
            scan.live_convert |= state is None or state.kind == "convert"
            scan.add("jobs", rel, st, "live")
            scan.kept_jobs.append(name)
            _reference(scan, path)
        else:
            finished.append((state.created_at if state else st.st_mtime, name))
    finished.sort(reverse=True)
    for i, (_, name) in enumerate(finished):
        rel = "jobs/" + name
        st = lstat(os.path.join(scan.root, rel))
        if st is None:
            continue
        if i < scan.keep:
            scan.add("jobs", rel, st, f"one of the {scan.keep} most recent")
            scan.kept_jobs.append(name)
            _reference(scan, os.path.join(scan.root, rel))
        else:
            scan.add("jobs", rel, st, "", f"older than the {scan.keep} most recent jobs")


# ---------------------------------------------------------------------- trees and caches


def _leftover(scan: Scan, top: str, name: str, st: os.stat_result) -> None:
    """A hidden entry: gc's own trash, or a staging/discard directory of the store or cache."""
    rel = top + "/" + name
    if name.startswith(TRASH):
        scan.add("trash", rel, st, "", "left by an interrupted gc")
    elif name.startswith(LEFTOVER) or name.endswith(".tmp"):
        if top == "cache" and scan.any_live:
            scan.add("trash", rel, st, "a job is running")
        elif scan.active(st.st_mtime):
            scan.add("trash", rel, st, "in progress")
        else:
            scan.add("trash", rel, st, "", "left by an interrupted push, conversion or write")


def _is_export(path: str) -> bool:
    """A pushed tree that holds an ONNX export or reference outputs, not a SavedModel."""
    return any(lstat(os.path.join(path, n)) for n in ("model.onnx", "reference.npz")) and not (
        lstat(os.path.join(path, "saved_model.pb"))
    )


def _scan_trees(scan: Scan) -> None:
    for top in ("models", "calib", "cache"):
        for name in _names(scan, top):
            rel = top + "/" + name
            path = os.path.join(scan.root, top, name)
            st = lstat(path)
            if st is None:
                continue
            if name.startswith("."):
                _leftover(scan, top, name, st)
                continue
            category = top
            if top == "models" and stat.S_ISDIR(st.st_mode) and _is_export(path):
                category = "exports"
            if rel in scan.refs or (top == "cache" and name in scan.words):
                kept = "used by a kept job"
            elif top == "cache" and scan.live_convert:
                kept = "a convert job is running"
            elif scan.young(st.st_mtime):
                kept = "recent"
            else:
                kept = ""
            scan.add(category, rel, st, kept, "no kept job uses it")


def _scan_trt(scan: Scan) -> None:
    timing = []
    for name in _names(scan, "trt/timing"):
        st = lstat(os.path.join(scan.root, "trt", "timing", name))
        if st is None:
            continue
        if name.startswith("."):
            _leftover(scan, "trt/timing", name, st)
        elif name.endswith(".cache") and stat.S_ISREG(st.st_mode):
            timing.append((st.st_mtime, name, st))
    timing.sort(reverse=True)
    for i, (mtime, name, st) in enumerate(timing):
        kept = "the newest timing cache" if i == 0 else "recent" if scan.young(mtime) else ""
        scan.add("trt-timing", "trt/timing/" + name, st, kept, "an older TensorRT timing cache")
    cached = {e.rel[len("cache/") :] for e in scan.entries if e.category == "cache" and e.kept}
    for name in _names(scan, "trt/calib"):
        rel = "trt/calib/" + name
        st = lstat(os.path.join(scan.root, "trt", "calib", name))
        if st is None:
            continue
        if name.startswith("."):
            _leftover(scan, "trt/calib", name, st)
            continue
        key = name[: -len(".cache")] if name.endswith(".cache") else name
        if rel in scan.refs or key in cached or key in scan.words:
            kept = "used by a kept job"
        elif scan.live_convert:
            kept = "a convert job is running"
        else:
            kept = "recent" if scan.young(st.st_mtime) else ""
        scan.add("trt-calib", rel, st, kept, "no kept job uses it")


# ---------------------------------------------------------------------- blobs


def _is_sha(name: str) -> bool:
    return len(name) == 64 and set(name) <= HEX


def _sha256(path: str) -> Optional[str]:
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _scan_blobs(scan: Scan) -> None:
    uploads: Dict[str, List[Tuple[str, os.stat_result]]] = {}
    blobs: List[Tuple[str, os.stat_result]] = []
    for name in _names(scan, "store"):
        st = lstat(os.path.join(scan.root, "store", name))
        if st is None:
            continue
        if name.startswith("."):
            _leftover(scan, "store", name, st)
        elif _is_sha(name.split(".", 1)[0]) and name.endswith((".partial", ".partial.ranges")):
            uploads.setdefault(name.split(".", 1)[0], []).append((name, st))
        elif _is_sha(name):
            blobs.append((name, st))
    for group in uploads.values():
        fresh = scan.active(max(st.st_mtime for _, st in group))
        scan.push_in_flight |= fresh
        for name, st in group:
            scan.add("uploads", "store/" + name, st, "recent" if fresh else "", "abandoned upload")
    linked: Set[Ident] = set()
    copies: Dict[int, List[str]] = {}
    for e in scan.entries:
        if not e.kept or e.category not in ("jobs", "cache", "models", "exports", "calib"):
            continue
        for path, st in walk(e.path):
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                linked.add((st.st_dev, st.st_ino))
            elif e.category in ("models", "exports", "calib"):
                copies.setdefault(st.st_size, []).append(path)
    hashes: Dict[str, Optional[str]] = {}
    for name, st in blobs:
        kept = ""
        if not stat.S_ISREG(st.st_mode):
            kept = "recent" if scan.young(st.st_mtime) else ""
        elif (st.st_dev, st.st_ino) in linked:
            kept = "linked from a kept model"
        elif scan.push_in_flight:
            kept = "a push is in progress"
        elif scan.young(st.st_mtime):
            kept = "recent"
        else:
            for path in copies.get(st.st_size, []):
                if path not in hashes:
                    hashes[path] = _sha256(path)
                if hashes[path] == name:
                    kept = "a kept model holds a copy"
                    break
        scan.add("blobs", "store/" + name, st, kept, "no kept model uses it")


# ---------------------------------------------------------------------- plan, bytes, removal


def plan(root: str, keep: int, grace: float, now: Optional[float] = None) -> Scan:
    """What gc keeps and removes under `root`, with the bytes each removal frees."""
    scan = Scan(root=root, keep=keep, grace=grace, now=time.time() if now is None else now)
    _scan_jobs(scan)
    _scan_trees(scan)
    _scan_trt(scan)
    _scan_blobs(scan)
    order = {c: i for i, c in enumerate(GC_CATEGORIES)}
    scan.entries.sort(key=lambda e: (order[e.category], e.rel))
    for e in scan.entries:
        e.files = [((st.st_dev, st.st_ino), st.st_size, st.st_nlink) for _, st in walk(e.path)]
    account(scan.entries, [e for e in scan.entries if not e.kept])
    return scan


def account(entries: List[Entry], removed: List[Entry]) -> None:
    """Bytes per entry when `removed` go: a file counts for the first entry that holds it,
    and for a removed entry only when every link to it goes (else it frees none of it)."""
    gone = {id(e) for e in removed}
    links: Dict[Ident, int] = {}
    first: Dict[Ident, Tuple[int, int, Entry]] = {}
    for e in removed:
        e.bytes = 0
        for ident, size, nlink in e.files:
            links[ident] = links.get(ident, 0) + 1
            first.setdefault(ident, (size, nlink, e))
    for ident, (size, nlink, e) in first.items():
        if links[ident] >= nlink:
            e.bytes += size
    seen: Set[Ident] = set(first)
    for e in entries:
        if id(e) in gone:
            continue
        e.bytes = 0
        for ident, size, _ in e.files:
            if ident not in seen:
                seen.add(ident)
                e.bytes += size
