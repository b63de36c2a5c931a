"""Fixtures of the transport tests."""

from __future__ import annotations

import subprocess

import pytest

from edge.transport import ssh_config


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The aliases `ssh -G` really ran for (the last argument of each run)."""
    calls: list[str] = []
    real_run = subprocess.run

    def spy(argv: list[str], *args: object, **kwargs: object) -> object:
        calls.append(argv[-1])
        return real_run(argv, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(ssh_config.subprocess, "run", spy)
    return calls
