"""`edge gc` over real OpenSSH: the device's own Python (which cannot import this project)
runs the installed agent's `gc`; a push afterwards re-sends only what gc removed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from device_agent.protocol import FAILED, TERMINAL, ConvertSpec, GcResult
from edge.agent.sessions import open_client
from edge.fleet.devices import Device, resolve_targets
from edge.fleet.inventory import Inventory

SHARED = b"a variables.index both models hold\n"


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="160")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def edge_json(*args: str) -> list[dict]:
    proc = edge(*args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    return rows


def model(path: Path, seed: int) -> Path:
    """A SavedModel-shaped tree: its own bytes and one file both models share."""
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(os.urandom(20_000 + seed))
    (path / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(70_000))
    (path / "variables" / "variables.index").write_bytes(SHARED)
    return path


def tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            if "/agent/" in p + "/" or name == "gc.lock":
                continue  # the agent installs and unpacks itself on first use
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_ino, st.st_size)
    return out


@pytest.fixture
def d1(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> Path:
    """Device d1 of the sshd fleet, run by a board-like Python; returns its root."""
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    root = tmp_path / "roots" / "d1"
    inv.add(Device(name="d1", host="d1", python=str(device_python), root=str(root)))
    inv.save()
    return root


def test_gc_over_ssh_then_push_resends_only_what_it_removed(d1: Path, tmp_path: Path) -> None:
    a, b = model(tmp_path / "a", 1), model(tmp_path / "b", 2)
    (pushed_a,) = edge_json("push", str(a), "--to", "d1")
    (pushed_b,) = edge_json("push", str(b), "--to", "d1")
    assert pushed_b["bytes_skipped"] == len(SHARED)  # the shared file is one blob
    (device,) = resolve_targets("d1")
    with open_client(device) as client:  # a job that uses b (it fails: b is no real model)
        job = client.submit(ConvertSpec(model=pushed_b["model_path"]))
        deadline = time.time() + 120
        while (state := client.status(job)).status not in TERMINAL:
            assert time.time() < deadline, "the job never finished"
            time.sleep(0.2)
    assert state.status == FAILED

    before = tree(d1)
    (dry,) = edge_json("gc", "--to", "d1", "--keep", "0", "--grace", "0", "--dry-run")
    assert tree(d1) == before, "a dry run removed something"
    result = GcResult.from_dict(dry)
    assert result.device == "d1" and result.ok and result.dry_run
    names = {i.name for i in result.removed}
    assert {f"jobs/{job}", f"models/{pushed_a['tree_digest']}"} <= names
    assert f"models/{pushed_b['tree_digest']}" in names

    (real,) = edge_json("gc", "--to", "d1", "--keep", "1", "--grace", "0")
    result = GcResult.from_dict(real)
    assert not result.dry_run and result.kept_jobs == [job]
    removed = {i.name for i in result.removed}
    assert f"models/{pushed_a['tree_digest']}" in removed
    assert not (d1 / "models" / pushed_a["tree_digest"]).exists()
    assert (d1 / "models" / pushed_b["tree_digest"]).is_dir()
    assert (d1 / "jobs" / job / "job.json").is_file()
    blobs = {n for n in removed if n.startswith("store/")}
    assert len(blobs) == 2  # a's own two files; the shared one is b's too

    (again_a,) = edge_json("push", str(a), "--to", "d1")
    assert again_a["files_sent"] == len(blobs)
    own = (a / "saved_model.pb", a / "variables" / "variables.data-00000-of-00001")
    assert again_a["bytes_sent"] == sum(p.stat().st_size for p in own)
    assert again_a["bytes_skipped"] == len(SHARED)
    (again_b,) = edge_json("push", str(b), "--to", "d1")
    assert again_b["bytes_sent"] == 0 and again_b["files_sent"] == 0


def test_gc_table_and_a_failing_device(d1: Path, tmp_path: Path) -> None:
    """The table names each device's categories; a device that cannot be reached fails
    the command (exit 1) and does not hide the other device's answer."""
    inv = Inventory.load()
    inv.add(Device(name="gone", host="127.0.0.1", port=1, root=str(tmp_path / "gone")))
    inv.save()
    edge_json("push", str(model(tmp_path / "m", 3)), "--to", "d1")
    proc = edge("gc", "--to", "d1,gone", "--keep", "0", "--grace", "0")
    assert proc.returncode == 1
    assert "gone: failed" in proc.stderr
    rows = [line.split("│") for line in proc.stdout.splitlines() if "│" in line]
    cells = [[c.strip() for c in row if c.strip()] for row in rows]
    assert cells[0][:3] == ["d1", "models", "1"] and cells[0][3].endswith("KiB")
    assert not (d1 / "models").exists() or not os.listdir(d1 / "models")
    assert "freed" in proc.stdout
