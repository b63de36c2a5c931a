"""Converted-model cache entries survive a power cut and tampering: each entry records the
tree digest of its model (and the summary's sha256) when it is complete, and is checked
against it before use; a torn or altered entry is discarded and rebuilt, never reused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from helpers import agent, agent_json

from device_agent.convert import ModelCache
from device_agent.protocol import (
    ConversionSummary,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    Event,
)


def convert(root: Path, model: Path) -> ConvertResult:
    spec = ConvertSpec(model=str(model), convert=ConvertOptions(backend="native"))
    proc = agent(root, "submit", "-", input=spec.to_json(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    (done,) = [e for e in events if e.kind == "result"]
    return ConvertResult.from_dict(done.data["result"])


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def largest_file(tree: Path) -> Path:
    return max((p for p in tree.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_a_truncated_cache_entry_is_rebuilt_not_reused(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    first = convert(root, tiny_model)
    assert first.cache == "built" and first.plan and first.plan.cache_key
    key = first.plan.cache_key
    model = Path(ModelCache(str(root)).path(key))
    good = tree_hashes(model)
    victim = largest_file(model)
    mode = victim.stat().st_mode
    victim.chmod(0o644)
    with open(victim, "r+b") as f:  # what a power cut leaves of an unsynced write
        f.truncate(victim.stat().st_size // 2)
    victim.chmod(mode)  # only the bytes differ
    assert agent_json(root, "cache", key)["hit"] is False  # the host's probe says so too
    second = convert(root, tiny_model)
    assert second.cache == "built", "a torn cache entry was reused"
    assert tree_hashes(Path(ModelCache(str(root)).path(key))) == good
    third = convert(root, tiny_model)  # the rebuilt entry is trusted again
    assert third.cache == "hit"


def _entry(tmp_path: Path) -> tuple[ModelCache, str, Path]:
    cache = ModelCache(str(tmp_path / "root"))
    key = "k" * 64
    staging = Path(cache.staging(key))
    (staging / "model" / "variables").mkdir(parents=True)
    (staging / "model" / "saved_model.pb").write_bytes(b"graph" * 50)
    (staging / "model" / "variables" / "v.data").write_bytes(bytes(range(256)) * 8)
    cache.commit(key, str(staging), ConversionSummary(ops_total=7))
    entry = Path(cache.dir) / key
    assert cache.lookup(key) == ConversionSummary(ops_total=7)
    return cache, key, entry


def test_tampered_file_bytes_are_detected(tmp_path: Path) -> None:
    cache, key, entry = _entry(tmp_path)
    victim = entry / "model" / "variables" / "v.data"
    data = bytearray(victim.read_bytes())
    data[100] ^= 1  # same size and mode: only the digest can tell
    mode = victim.stat().st_mode
    victim.chmod(0o644)
    victim.write_bytes(bytes(data))
    victim.chmod(mode)
    assert cache.lookup(key) is None
    assert not entry.exists(), "a bad entry must be discarded so that it is rebuilt"


def test_tampered_summary_and_extra_files_are_detected(tmp_path: Path) -> None:
    cache, key, entry = _entry(tmp_path)
    summary = json.loads((entry / "summary.json").read_text())
    summary["ops_total"] = 8
    (entry / "summary.json").chmod(0o644)
    (entry / "summary.json").write_text(json.dumps(summary))
    assert cache.lookup(key) is None
    cache, key, entry = _entry(tmp_path / "again")
    (entry / "model" / "variables" / "planted.py").write_text("import os")
    assert cache.lookup(key) is None


def test_an_entry_without_a_recorded_digest_is_not_trusted(tmp_path: Path) -> None:
    """An entry from before digests were recorded (its marker holds only a time)."""
    cache, key, entry = _entry(tmp_path)
    marker = entry / "complete"
    marker.chmod(0o644)
    marker.write_text("1700000000.0")
    assert cache.lookup(key) is None
    cache, key, entry = _entry(tmp_path / "torn")
    (entry / "complete").chmod(0o644)
    (entry / "complete").write_text('{"tree_digest": "ab')  # torn marker
    assert cache.lookup(key) is None


def test_commit_over_a_bad_entry_replaces_it(tmp_path: Path) -> None:
    """A job that finds a bad entry at its key (say, one it could not discard before)
    installs its own build there instead of returning the bad one."""
    cache, key, entry = _entry(tmp_path)
    (entry / "model" / "saved_model.pb").chmod(0o644)
    (entry / "model" / "saved_model.pb").write_bytes(b"torn")
    staging = Path(cache.staging(key))
    shutil.copytree(tmp_path / "root" / "cache" / key / "model", staging / "model")
    (staging / "model" / "saved_model.pb").chmod(0o644)
    (staging / "model" / "saved_model.pb").write_bytes(b"graph" * 50)
    path = cache.commit(key, str(staging), ConversionSummary(ops_total=7))
    assert Path(path, "saved_model.pb").read_bytes() == b"graph" * 50
    assert cache.lookup(key) == ConversionSummary(ops_total=7)
