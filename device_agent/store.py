"""The device's content-addressed store: push plans and commits of manifests.

Layout under the device root: `store/<sha256>` (verified blobs), `store/<sha256>.partial`
(uploads in flight, written by the host at an offset), `models/<tree-digest>/` and
`calib/<tree-digest>/` (materialized trees: hard links into store/). The layout is the
agent's own: a push plan names every path the host may write (`BlobNeed.upload_path` and
`record_path`), and the host composes none.

Modes: a materialized file gets its manifest mode without write bits, owner-readable
(`(mode & 0o555) | 0o400`), so a model file can't be overwritten by accident through its
hard link into store/. A blob takes the mode of the first file that commits it; a later
file with the same bytes but another mode gets a copy instead of a link. Empty
directories are not represented in a manifest (a SavedModel loads without them).

The manifest functions (build, check, decode and digest one, `gaps`) are `manifest.py`,
shared with the host; the store is the agent's own. Stdlib only, Python 3.8.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Dict, List, Optional, Set, Tuple

from .durable import atomic_write, disk_usage, fsync_dir
from .errors import AgentError

# The `as` names are re-exported only, while the host still imports them from here.
from .manifest import build_manifest as build_manifest
from .manifest import fd_sha256, gaps, tree_digest, validate_manifest
from .manifest import file_sha256 as file_sha256
from .manifest import manifest_from_json as manifest_from_json
from .protocol_core import BlobNeed, Manifest, ManifestEntry, PushCommit, PushPlan

MB = 1 << 20
MIN_RESERVE = 8 * MB
#: Where the trees of each manifest kind (manifest.KINDS) are materialized.
KIND_DIRS = {"model": "models", "calib": "calib"}
_LINK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP}


def file_mode(entry: ManifestEntry) -> int:
    """Mode of a materialized file: manifest mode, read-only, always owner-readable."""
    return (entry.mode & 0o555) | 0o400


def hash_and_sync(path: str, st: os.stat_result) -> Tuple[int, str]:
    """A HashFn that also fsyncs the file it hashes: one read both proves and flushes it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        found = fd_sha256(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return found


def fsync_tree(top: str) -> None:
    """fsync every directory under `top` (deepest first) and `top` itself."""
    for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count(os.sep)):
        fsync_dir(dirpath)


class BlobStore:
    """store/, models/ and calib/ under a device root."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.store_dir = os.path.join(self.root, "store")

    def blob_path(self, sha256: str) -> str:
        return os.path.join(self.store_dir, sha256)

    def tree_path(self, manifest: Manifest, digest: str) -> str:
        return os.path.join(self.root, KIND_DIRS[manifest.kind], digest)

    @staticmethod
    def _blobs(manifest: Manifest) -> Dict[str, List[ManifestEntry]]:
        out: Dict[str, List[ManifestEntry]] = {}
        for e in manifest.entries:
            out.setdefault(e.sha256, []).append(e)
        return out

    def _size(self, path: str) -> Optional[int]:
        try:
            return os.stat(path).st_size
        except OSError:
            return None

    def _complete(self, tree: str, manifest: Manifest) -> bool:
        """True when every entry exists in `tree` as a regular file of the right size."""
        if not os.path.isdir(tree):
            return False
        for e in manifest.entries:
            try:
                st = os.stat(os.path.join(tree, *e.path.split("/")))
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or st.st_size != e.size:
                return False
        return True

    def plan(self, manifest: Manifest, ranged_min: Optional[int] = None) -> PushPlan:
        """What the device lacks for `manifest`, with resume offsets; checks free disk.

        With `ranged_min`, the uploads are prepared here, which saves the host round trips:
        every missing blob gets its `.partial`, and one with more than `ranged_min` bytes
        left gets a range record, so that it can be written in parallel byte ranges."""
        validate_manifest(manifest)
        digest = tree_digest(manifest)
        os.makedirs(self.store_dir, exist_ok=True)
        usage = disk_usage(self.root)
        plan = PushPlan(tree_digest=digest, disk_free_bytes=usage.free, store_dir=self.store_dir)
        tree = self.tree_path(manifest, digest)
        blobs = self._blobs(manifest)
        if self._complete(tree, manifest):
            plan.model_path = tree
            plan.bytes_present = sum(es[0].size for es in blobs.values())
            return plan
        for sha, es in sorted(blobs.items()):
            size = es[0].size
            if self._size(self.blob_path(sha)) == size:
                plan.bytes_present += size
                continue
            partial = self.blob_path(sha) + ".partial"
            todo = _ranges_todo(partial, size)
            if todo is not None:  # an interrupted parallel upload: resume by range
                plan.missing.append(BlobNeed(sha256=sha, size=size, ranges=todo))
                plan.bytes_missing += sum(end - start for start, end in todo)
                continue
            offset = self._size(partial) or 0
            if offset > size:
                os.remove(partial)
                offset = 0
            plan.missing.append(BlobNeed(sha256=sha, size=size, offset=offset))
            plan.bytes_missing += size - offset
        plan.prepared = ranged_min is not None
        reserve = max(usage.total // 100, MIN_RESERVE)
        if plan.bytes_missing > usage.free - reserve:
            raise AgentError(
                f"Not enough disk space for {manifest.name or 'this push'}: need "
                f"{plan.bytes_missing / MB:.1f} MB, {usage.free / MB:.1f} MB free on {self.root}"
                f" (keeping {reserve / MB:.1f} MB in reserve)",
                "free space on the device, or use a device root on a bigger disk: "
                "edge fleet add NAME --root DIR",
            )
        if ranged_min is not None:  # only once the push is known to fit
            for need in plan.missing:
                if not need.ranges:
                    _prepare(self.blob_path(need.sha256) + ".partial", need, ranged_min)
        for need in plan.missing:  # the host writes only where the plan says
            need.upload_path = self.blob_path(need.sha256) + ".partial"
            need.record_path = need.upload_path + RANGES_SUFFIX if need.ranges else ""
        return plan

    def uploaded(self, missing: List[BlobNeed], whole: Set[str]) -> bool:
        """True when every blob of `missing` is in the store, whole in this stream's
        uploads (`whole`: sha256s) or a ranged upload whose record covers it (the other
        streams of a push save theirs as they end): its commit needs no more bytes."""
        for need in missing:
            if need.sha256 in whole or self._size(self.blob_path(need.sha256)) == need.size:
                continue
            if _ranges_todo(self.blob_path(need.sha256) + ".partial", need.size) != []:
                return False
        return True

    def _promote(self, sha: str, entries: List[ManifestEntry]) -> Tuple[int, Optional[str]]:
        """Verify store/<sha>.partial and rename it into place.

        Returns (bytes hashed, problem); a wrong partial is deleted unless merely short.
        Another push of the same blob may commit at the same time: the partial is read
        through one descriptor, and whichever commit renames it first wins for both."""
        size = entries[0].size
        blob = self.blob_path(sha)
        partial = blob + ".partial"
        names = ", ".join(e.path for e in entries)
        try:
            fd = os.open(partial, os.O_RDONLY)
        except FileNotFoundError:
            if self._size(blob) == size:  # a concurrent commit promoted it first
                return 0, None
            return 0, f"{names}: blob {sha} was not uploaded"
        try:
            have = os.fstat(fd).st_size
            if have < size:
                return 0, f"{names}: upload incomplete ({have} of {size} bytes)"
            if have > size:
                _remove_same(partial, fd)
                return 0, f"{names}: upload too large ({have} bytes, expected {size})"
            actual = fd_sha256(fd)[1]
            if actual != sha:
                _remove_same(partial, fd)
                _remove(partial + RANGES_SUFFIX)
                return have, (
                    f"{names}: expected sha256 {sha}, got {actual} (corrupted upload removed)"
                )
            os.fsync(fd)
            os.fchmod(fd, file_mode(entries[0]))
            same = is_same_file(partial, fd)
        finally:
            os.close(fd)
        if same:
            _remove(partial + RANGES_SUFFIX)
            try:
                os.replace(partial, blob)
            except FileNotFoundError:  # a concurrent commit promoted it first
                pass
        if self._size(blob) != size:
            return have, f"{names}: blob {sha} vanished while it was committed"
        return size, None

    def commit(self, manifest: Manifest) -> PushCommit:
        """Verify every uploaded blob, then materialize the tree atomically.

        `bytes_verified` counts the bytes hashed by this commit (newly uploaded blobs)."""
        validate_manifest(manifest)
        digest = tree_digest(manifest)
        os.makedirs(self.store_dir, exist_ok=True)
        tree = self.tree_path(manifest, digest)
        result = PushCommit(tree_digest=digest, model_path=tree, files=len(manifest.entries))
        blobs = self._blobs(manifest)
        if self._complete(tree, manifest):
            for sha, es in blobs.items():
                if self._size(self.blob_path(sha)) == es[0].size:
                    self._drop_stale_upload(sha)
            return result
        problems: List[str] = []
        for sha, es in sorted(blobs.items()):
            if self._size(self.blob_path(sha)) == es[0].size:
                self._drop_stale_upload(sha)
                continue
            hashed, problem = self._promote(sha, es)
            if problem:
                problems.append(problem)
            else:
                result.bytes_verified += hashed
        if problems:
            raise AgentError(
                "Push verification failed: " + "; ".join(problems),
                "push again: the host re-sends the missing or corrupted blobs",
            )
        fsync_dir(self.store_dir)
        self._materialize(manifest, tree)
        return result

    def _drop_stale_upload(self, sha: str) -> None:
        """Remove the upload of a blob already in the store.

        A concurrent push of the same blob may create its `.partial` again after another
        push promoted it; every push commits after its own writes, so its commit is the
        place to drop what it left. A writer still busy holds an unlinked file, which is
        harmless: its own commit finds the blob present too."""
        partial = self.blob_path(sha) + ".partial"
        _remove(partial)
        _remove(partial + RANGES_SUFFIX)

    def _materialize(self, manifest: Manifest, tree: str) -> None:
        import shutil
        import tempfile

        parent = os.path.dirname(tree)
        os.makedirs(parent, exist_ok=True)
        # unique and created exclusively: a concurrent commit of this tree has its own
        tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(tree)[:16]}-", dir=parent)
        os.chmod(tmp, 0o755)
        try:
            for e in manifest.entries:
                target = os.path.join(tmp, *e.path.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                self._place(self.blob_path(e.sha256), target, file_mode(e))
            try:
                os.rename(tmp, tree)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                if not self._complete(tree, manifest):  # damaged: swap it for ours
                    trash = tmp + ".old"
                    os.rename(tree, trash)
                    os.rename(tmp, tree)
                    shutil.rmtree(trash, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        fsync_dir(parent)

    @staticmethod
    def _place(blob: str, target: str, mode: int) -> None:
        """Hard-link `blob` at `target` when its mode fits, else copy it."""
        if stat.S_IMODE(os.stat(blob).st_mode) == mode:
            try:
                os.link(blob, target)
                return
            except OSError as exc:
                if exc.errno not in _LINK_ERRNOS:
                    raise
        import shutil

        shutil.copyfile(blob, target)
        os.chmod(target, mode)


# A parallel upload writes byte ranges of one blob through several channels at once; the
# host records the finished ranges in `<sha>.partial.ranges` ({"done": [[start, end]...]}),
# so an interrupted upload resumes by range instead of by file size.
RANGES_SUFFIX = ".ranges"


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def is_same_file(path: str, fd: int) -> bool:
    """True when `path` is still the file open as `fd` (not a newer upload's)."""
    try:
        st, now = os.fstat(fd), os.lstat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (now.st_dev, now.st_ino)


def _remove_same(path: str, fd: int) -> None:
    """Remove `path` if it is still the file open as `fd` (not a newer upload's)."""
    if is_same_file(path, fd):
        _remove(path)


def _prepare(partial: str, need: BlobNeed, ranged_min: int) -> None:
    """Create the `.partial` (never truncating it) and, for a big remainder, the range
    record that says which bytes are already there."""
    with open(partial, "ab"):
        pass
    if need.size - need.offset > ranged_min:
        done = [[0, need.offset]] if need.offset else []
        atomic_write(partial + RANGES_SUFFIX, json.dumps({"done": done}).encode("ascii"))
        need.ranges = [[need.offset, need.size]]


def _ranges_todo(partial: str, size: int) -> Optional[List[List[int]]]:
    """The ranges still missing from a parallel upload, or None if there is none."""
    try:
        with open(partial + RANGES_SUFFIX) as f:
            done = json.load(f)["done"]
        spans = [(int(a), int(b)) for a, b in done]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not os.path.exists(partial):
        return None
    return gaps(spans, size)
