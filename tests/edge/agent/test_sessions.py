"""One session per device per command: sshd counts exactly one login per device for a
fleet convert that shares a build between identical boards, a bench and a validate."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, edge_bin
from sshfleet import SshFleet

from device_agent.protocol import ConvertResult
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory

BOARDS = ("d1", "d2")


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=600)


class Logins:
    """sshd's "Accepted publickey" lines per device since the last `take`."""

    def __init__(self, fleet: SshFleet) -> None:
        self.fleet = fleet
        self.offsets = {n: fleet[n].log_path.stat().st_size for n in BOARDS}

    def take(self) -> dict[str, int]:
        counts = {}
        for name in BOARDS:
            with open(self.fleet[name].log_path, "rb") as f:
                f.seek(self.offsets[name])
                text = f.read().decode(errors="replace")
                self.offsets[name] = f.tell()
            counts[name] = len(re.findall(r"Accepted publickey for ", text))
        return counts


def _boards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path) -> Path:
    """Two identical simulated Orin Nanos (one builds, one receives); the calibration data."""
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    for name in BOARDS:
        root = tmp_path / "roots" / name
        root.mkdir(parents=True)
        (root / "agent.json").write_text(
            json.dumps({"sysroot": str(DATA / "sysroots" / "orin-nano-jp6")})
        )
        inv.add(Device(name=name, host=name, python=str(device_python), root=str(root)))
    inv.save()
    calib = tmp_path / "x.npz"
    np.savez(calib, flatten_input=np.random.default_rng(3).random((40, 28, 28), dtype=np.float32))
    return calib


def _commands(model: Path, calib: Path) -> Iterator[tuple[str, subprocess.CompletedProcess[str]]]:
    """convert (sharing), convert --dry-run, bench, validate on both boards, in turn."""
    to = ",".join(BOARDS)
    convert = (
        "convert",
        str(model),
        "--to",
        to,
        "--precision",
        "INT8",
        "--calib",
        str(calib),
        "--json",
    )
    proc = edge(*convert)
    yield "convert", proc
    rows = [ConvertResult.from_dict(r) for r in json.loads(proc.stdout)]
    assert sorted(r.cache for r in rows) == ["built", "shared"]  # the build was shared
    yield "dry run", edge(*convert, "--dry-run")
    yield "bench", edge("bench", str(model), "--to", to, "--iterations", "5", "--json")
    converted = rows[0].output_model or ""  # on this machine: the devices are on loopback
    yield "validate", edge("validate", str(model), converted, "--to", to, "--json")


def test_one_login_per_device_per_command(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mnist_model: Path,
    device_python: Path,
) -> None:
    calib = _boards(tmp_path, monkeypatch, device_python)
    logins = Logins(ssh_env)
    for what, proc in _commands(mnist_model, calib):
        assert proc.returncode == 0, (what, proc.stderr)
        assert logins.take() == {n: 1 for n in BOARDS}, what


def test_with_the_multiplexer_at_most_one_direct_login(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mnist_model: Path,
    device_python: Path,
    short_home: Path,
) -> None:
    calib = _boards(tmp_path, monkeypatch, device_python)
    assert edge("mux", "start").returncode == 0
    logins = Logins(ssh_env)
    for name in BOARDS:  # the multiplexer's own connection: one login, kept
        assert edge("info", "--to", name, "--json").returncode == 0
    assert logins.take() == {n: 1 for n in BOARDS}
    for what, proc in _commands(mnist_model, calib):
        assert proc.returncode == 0, (what, proc.stderr)
        counts = logins.take()  # commands ride the multiplexer; transfers, one connection
        assert all(counts[n] <= 1 for n in BOARDS), (what, counts)
