"""device_agent.durable's replacement of a file: atomic_write, and replace_then_sync, whose
new bytes are in place at once and fsynced by the function it returns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_agent import durable


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_the_new_bytes_are_in_place_before_the_sync_and_nothing_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rec.ranges"
    path.write_text("old")
    os.chmod(path, 0o640)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    sync = durable.replace_then_sync(str(path), b"new")
    assert path.read_bytes() == b"new" and synced == []  # renamed, not yet fsynced
    assert oct(path.stat().st_mode & 0o777) == oct(0o640)  # the replaced file's mode
    sync()
    assert len(synced) == 2  # the file, then its directory
    assert _leftovers(tmp_path) == []


def test_a_temporary_name_already_taken_is_skipped_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    taken = tmp_path / f".state.json.{os.getpid()}.{durable._created + 1}.tmp"
    taken.write_text("someone else's")
    durable.atomic_write(str(path), "mine")
    assert path.read_text() == "mine" and taken.read_text() == "someone else's"
    assert _leftovers(tmp_path) == [taken.name]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    path.write_text("old")

    def full(fd: int, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(durable, "write_all", full)
    with pytest.raises(OSError, match="No space"):
        durable.replace_then_sync(str(path), "new")
    assert path.read_text() == "old" and _leftovers(tmp_path) == []
