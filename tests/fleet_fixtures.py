"""Pytest fixtures for the real-sshd test fleet (registered through `pytest_plugins`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from helpers import PYTHON38_INSTALL, find_python38, make_device_python, make_python38_numpy
from sshfleet import SshFleet, find_sshd

DEVICE_NAMES = ["d1", "d2", "d3", "d4"]
JUMP_DEVICE = "dj"


@pytest.fixture(scope="session")
def ssh_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """Devices d1..d4 on 127.0.0.10-13, a bastion, and `dj` reachable only through it."""
    if find_sshd() is None:
        pytest.fail(
            "OpenSSH server not installed: the SSH fleet tests need a real sshd; "
            "install it: apt-get install openssh-server",
            pytrace=False,
        )
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


@pytest.fixture(scope="session")
def device_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `python` a test device runs the agent with: like a board's own python3, it has
    numpy and TensorFlow but cannot import device_agent (tests/helpers.py)."""
    return make_device_python(tmp_path_factory.mktemp("device-python") / "venv")


@pytest.fixture(scope="session")
def python38() -> str:
    """A Python 3.8 interpreter; fails (never skips) with the command that installs one."""
    found = find_python38()
    if found is None:
        pytest.fail(
            f"no Python 3.8 interpreter on this machine: install one: {PYTHON38_INSTALL}",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def python38_numpy(python38: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment in which `python38` has numpy, in its user site-packages, and no
    TensorFlow or device_agent (tests/helpers.py)."""
    return make_python38_numpy(tmp_path_factory.mktemp("python38") / "userbase")


@pytest.fixture
def short_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An EDGE_HOME short enough for a Unix socket path; any multiplexer is stopped after."""
    from edge.core.errors import EdgeError
    from edge.transport import mux

    home = Path(tempfile.mkdtemp(prefix="em", dir="/tmp"))
    monkeypatch.setenv("EDGE_HOME", str(home))
    try:
        yield home
    finally:
        try:
            mux.stop()
        except EdgeError:
            pass
        shutil.rmtree(home, ignore_errors=True)
