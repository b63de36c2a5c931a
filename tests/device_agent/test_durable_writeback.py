"""device_agent.durable.start_writeback: sync_file_range where libc has it, else nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device_agent import durable


def test_it_starts_the_writes_of_a_real_file_and_keeps_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = os.urandom(3 << 20)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.pwrite(fd, data, 0)
        durable.start_writeback(fd, 1 << 20, 2 << 20)
        assert durable._sync_file_range  # Linux's glibc has it: the dirty pages go out
        os.fsync(fd)
        assert os.pread(fd, len(data), 0) == data
    finally:
        os.close(fd)


def test_it_calls_sync_file_range_to_write_without_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int, int, int]] = []
    monkeypatch.setattr(durable, "_sync_file_range", lambda *a: calls.append(a))
    durable.start_writeback(7, 100, 200)
    assert calls == [(7, 100, 200, 2)]  # SYNC_FILE_RANGE_WRITE only: no wait


def test_without_it_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(durable, "_sync_file_range", None)
    monkeypatch.setattr(durable, "_load_sync_file_range", lambda: False)
    durable.start_writeback(-1, 0, 1)  # a bad descriptor: not even tried
    assert durable._sync_file_range is False
