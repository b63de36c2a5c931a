"""`edge push` to two sshd devices over each data path (EDGE_PUSH_VIA): same trees."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory

NAMES = ["d1", "d2"]


def _tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _push(model: Path, via: str) -> list[dict[str, object]]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", EDGE_PUSH_VIA=via)
    proc = subprocess.run(
        [edge_bin(), "push", str(model), "--to", "all", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, object]] = json.loads(proc.stdout)
    return rows


def test_push_over_each_path_gives_identical_trees(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    device_python: Path,
    tiny_model: Path,
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "assets").mkdir(exist_ok=True)
    rng = np.random.default_rng(14)
    (model / "assets" / "big.bin").write_bytes(rng.bytes(6 << 20))
    (model / "small.txt").write_text("small\n")
    (model / "empty").write_bytes(b"")
    expected = _tree_hashes(model)
    total = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    for via in ("openssh", "paramiko", "sftp"):
        roots = tmp_path / via
        monkeypatch.setenv("EDGE_FLEET", str(tmp_path / f"fleet-{via}.yaml"))
        inv = Inventory.load()
        for name in NAMES:
            inv.add(Device(name=name, host=name, python=str(device_python), root=str(roots / name)))
        inv.save()
        rows = _push(model, via)
        assert sorted(str(r["device"]) for r in rows) == NAMES
        for row in rows:
            assert row["status"] == "succeeded", row
            assert row["bytes_sent"] == total
            models = roots / str(row["device"]) / "models"
            (tree,) = [p for p in models.iterdir() if not p.name.startswith(".")]
            assert _tree_hashes(tree) == expected, via
        again = _push(model, via)
        assert [(r["status"], r["bytes_sent"]) for r in again] == [("succeeded", 0)] * 2, via
