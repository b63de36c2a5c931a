"""The connection multiplexer: a second fleet command reuses the warm SSH connections."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory

NAMES = ["d1", "d2", "d3", "d4"]


def accepted(fleet: SshFleet) -> dict[str, int]:
    return {n: Path(fleet[n].log_path).read_text().count("Accepted publickey") for n in NAMES}


def test_probe_reuses_the_multiplexers_connections(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    home = Path(tempfile.mkdtemp(prefix="em", dir="/tmp"))  # a short Unix socket path
    monkeypatch.setenv("EDGE_HOME", str(home))
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    for name in NAMES:
        inv.add(
            Device(
                name=name, host=name, python=str(device_python), root=str(tmp_path / "roots" / name)
            )
        )
    inv.save()
    env = dict(os.environ)

    def edge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [edge_bin(), *args], capture_output=True, text=True, env=env, timeout=120
        )

    assert edge("mux", "start", "--idle", "60").returncode == 0
    try:
        status = json.loads(edge("mux", "status", "--json").stdout)
        assert status["running"] and Path(status["socket"]).exists()
        assert Path(status["socket"]).stat().st_mode & 0o077 == 0  # owner only
        assert Path(status["socket"]).parent.stat().st_mode & 0o077 == 0
        cold = edge("fleet", "probe", "--to", "all", "--json")  # connects, installs the agent
        assert cold.returncode == 0, cold.stderr
        before = accepted(ssh_env)
        start = time.monotonic()
        warm = edge("fleet", "probe", "--to", "all", "--json")
        warm_s = time.monotonic() - start
        assert warm.returncode == 0, warm.stderr
        assert [r["status"] for r in json.loads(warm.stdout)] == ["succeeded"] * 4
        assert accepted(ssh_env) == before  # no new SSH login: the warm connections served
        print(f"warm probe of 4 devices through the multiplexer: {warm_s:.2f}s")
    finally:
        edge("mux", "stop")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(status["socket"]).exists():
        time.sleep(0.1)
    assert not Path(status["socket"]).exists()
    after = edge("fleet", "probe", "--to", "d1", "--json")  # without it: a direct connection again
    assert after.returncode == 0
    assert accepted(ssh_env)["d1"] == before["d1"] + 1
