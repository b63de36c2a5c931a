"""Pytest fixtures for the real-sshd test fleet (registered through `pytest_plugins`)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from sshfleet import SshFleet, find_sshd

DEVICE_NAMES = ["d1", "d2", "d3", "d4"]
JUMP_DEVICE = "dj"


@pytest.fixture(scope="session")
def ssh_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """Devices d1..d4 on 127.0.0.10-13, a bastion, and `dj` reachable only through it."""
    if find_sshd() is None:
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    base: Path = tmp_path_factory.mktemp("sshfleet")
    fleet = SshFleet(base, DEVICE_NAMES, bastion=True, behind_bastion=[JUMP_DEVICE])
    fleet.start()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def ssh_env(ssh_fleet: SshFleet, monkeypatch: pytest.MonkeyPatch) -> SshFleet:
    """Point the code under test at the fleet's ssh_config and known_hosts; no ssh-agent.

    Servers an earlier test stopped are started again first.
    """
    ssh_fleet.ensure_running()
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(ssh_fleet.ssh_config_path))
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(ssh_fleet.known_hosts_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return ssh_fleet
