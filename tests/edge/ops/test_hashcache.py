"""Remembered file digests: reused only for an unchanged file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import edge.ops.hashcache as hc
from edge.ops.hashcache import HashCache
from edge.ops.push import make_payload


def test_digest_reused_until_the_file_changes(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 5000)
    reads: list[str] = []
    real = hc.file_sha256
    monkeypatch.setattr(hc, "file_sha256", lambda p: reads.append(p) or real(p))
    cache = HashCache(tmp_path / "digests.json")
    first = cache.hash_file(str(f), os.stat(f))
    assert first == (5000, hashlib.sha256(b"a" * 5000).hexdigest()) and len(reads) == 1
    cache.save()
    again = HashCache(tmp_path / "digests.json")  # a later command, from the file
    assert again.hash_file(str(f), os.stat(f)) == first and len(reads) == 1
    # same size, mtime put back: the ctime still tells it was written
    st = os.stat(f)
    f.write_bytes(b"b" * 5000)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    changed = again.hash_file(str(f), os.stat(f))
    assert changed[1] == hashlib.sha256(b"b" * 5000).hexdigest() and len(reads) == 2


def test_corrupt_cache_is_ignored_and_payload_digests_are_right(tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 10)
    payload = make_payload(src)  # fills the cache under EDGE_HOME
    cache_file = HashCache().path
    assert cache_file.exists()
    cache_file.write_text("{not json")
    (src / "a.bin").write_bytes(b"y" * 10)
    again = make_payload(src)
    assert again.manifest.entries[0].sha256 == hashlib.sha256(b"y" * 10).hexdigest()
    assert again.manifest.entries[0].sha256 != payload.manifest.entries[0].sha256
