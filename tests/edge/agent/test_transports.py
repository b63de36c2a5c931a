"""Connections begun early: `edge push` starts its first devices' SSH logins before it
imports the push's own modules, hands each to that device's push, and ends any left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.agent.transports import EarlyTransports
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.transport.openssh import OpenSSHTransport

# Run inside `edge` (PYTHONPATH): as its first ssh master starts, was edge.ops.push loaded?
SITECUSTOMIZE = """
import json, os, subprocess, sys
_init = subprocess.Popen.__init__
def _watch(self, args, *a, **k):
    master = "ControlMaster=yes" in [str(a) for a in args]
    if master and not os.path.exists(os.environ["SEEN"]):
        with open(os.environ["SEEN"], "w") as f:
            json.dump({"push_loaded": "edge.ops.push" in sys.modules, "argv": list(args)}, f)
    return _init(self, args, *a, **k)
subprocess.Popen.__init__ = _watch
"""


def _device(name: str, tmp_path: Path, device_python: Path) -> Device:
    return Device(name=name, host=name, python=str(device_python), root=str(tmp_path / name))


def test_the_first_ssh_of_a_push_starts_before_the_push_modules_load(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    inv.add(_device("d1", tmp_path, device_python))
    inv.save()
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(os.urandom(2000))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    seen = tmp_path / "seen.json"
    env = dict(os.environ, PYTHONPATH=str(hook), SEEN=str(seen), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [edge_bin(), "push", str(model), "--to", "d1", "--json"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["status"] == "succeeded"
    assert json.loads(seen.read_text())["push_loaded"] is False


def test_a_push_uses_the_early_master_and_no_other(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    from edge.ops.push import push

    launches: list[str] = []
    real = OpenSSHTransport._launch

    def launch(self: OpenSSHTransport) -> bool:
        launches.append(self.device_name)
        return real(self)

    monkeypatch.setattr(OpenSSHTransport, "_launch", launch)
    devices = [_device(n, tmp_path, device_python) for n in ("d1", "d2")]
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(2000))
    with closing(EarlyTransports(devices, 1)) as early:  # d1 early, d2 as usual
        assert launches == ["d1"]
        run = push(src, devices, early=early)
        assert early.take(devices[0]) is None  # handed over, once
    assert [r.status for r in run.results] == ["succeeded"] * 2
    assert sorted(launches) == ["d1", "d2"]


def test_a_master_nobody_took_is_ended(
    ssh_env: SshFleet, tmp_path: Path, device_python: Path
) -> None:
    device = _device("d1", tmp_path, device_python)
    with closing(EarlyTransports([device], 4)) as early:
        transport: Any = early._taken["d1"]
        master = transport._master
        assert master is not None and master.poll() is None  # logging in, not waited for
        control_dir = Path(transport._dir)
    assert master.poll() is not None and not control_dir.exists()


def test_local_devices_and_other_transports_begin_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ssh_env: SshFleet, device_python: Path
) -> None:
    monkeypatch.setenv("EDGE_PUSH_VIA", "paramiko")
    local = Device(name="local", host="localhost", python=sys.executable, root=str(tmp_path))
    with closing(EarlyTransports([local, _device("d1", tmp_path, device_python)], 8)) as early:
        assert early._taken == {}


def test_a_device_whose_endpoint_fails_is_left_to_its_own_push(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    """One bad device must not stop the others' early logins (nor the push: its own
    open reports the error in its row)."""
    from edge.core.errors import UserError

    real = Device.endpoint

    def endpoint(self: Device) -> Any:
        if self.name == "bad":
            raise UserError("bad: no such host", "fix it")
        return real(self)

    monkeypatch.setattr(Device, "endpoint", endpoint)
    devices = [_device("bad", tmp_path, device_python), _device("d1", tmp_path, device_python)]
    with closing(EarlyTransports(devices, 8)) as early:
        assert list(early._taken) == ["d1"]
