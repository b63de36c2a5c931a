"""The fleet over real OpenSSH: push, convert, bench, dropped links, host keys, ProxyJump.

Every device is a real sshd on a loopback address (tests/sshfleet.py); the agent runs as
a real process under it, with this environment's Python (TensorFlow on CPU).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin
from sshfleet import SshFleet
from tcpproxy import TcpProxy

from device_agent.protocol import BenchOptions, ConvertOptions, Event
from edge.agent.sessions import open_client
from edge.core.errors import EdgeError
from edge.fleet.devices import Device, resolve_targets
from edge.fleet.inventory import Inventory
from edge.ops import convert as conversion
from edge.ops import measure
from edge.ops.convert import ConvertRequest
from edge.ops.push import make_payload, push, push_to

NAMES = ["d1", "d2", "d3", "d4"]


BOARD_PYTHON: list[str] = []  # the device_python fixture's interpreter, set per test


@pytest.fixture(autouse=True)
def _board_python(device_python: Path) -> Iterator[None]:
    """Every device here runs the agent as a board does: under a Python that has numpy
    and TensorFlow but not this project (tests/helpers.py: make_device_python)."""
    BOARD_PYTHON[:] = [str(device_python)]
    yield
    BOARD_PYTHON.clear()


def board_python() -> str:
    return BOARD_PYTHON[0]


def register(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str], **extra: Device
) -> Inventory:
    """A fresh inventory: each fleet device by its ssh_config alias, its own root here."""
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    for name in names:
        inv.add(
            Device(
                name=name,
                host=name,
                python=board_python(),
                root=str(tmp_path / "roots" / name),
                tags=["lab"],
            )
        )
    for device in extra.values():
        inv.add(device)
    inv.save()
    return inv


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def big_model(tmp_path: Path, tiny_model: Path) -> Path:
    """The tiny SavedModel plus a 24 MiB random asset, so transfers take a while."""
    import shutil

    model = tmp_path / "big model"
    shutil.copytree(tiny_model, model)
    (model / "assets").mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    (model / "assets" / "blob.bin").write_bytes(rng.bytes(24 << 20))
    return model


def test_push_integrity_and_unchanged_repush(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big_model: Path
) -> None:
    register(tmp_path, monkeypatch, NAMES)
    proc = edge_cli("push", str(big_model), "--to", "tag:lab", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["device"] for r in rows] == NAMES
    total = sum(p.stat().st_size for p in big_model.rglob("*") if p.is_file())
    expected = tree_hashes(big_model)
    for row in rows:
        assert row["status"] == "succeeded"
        assert row["files_total"] == len(expected) == row["files_sent"]
        assert row["bytes_sent"] == total and row["bytes_skipped"] == 0
        models = tmp_path / "roots" / row["device"] / "models"
        (tree,) = [p for p in models.iterdir() if not p.name.startswith(".")]
        assert tree_hashes(tree) == expected
    again = json.loads(edge_cli("push", str(big_model), "--to", "all", "--json").stdout)
    assert [(r["status"], r["bytes_sent"], r["files_sent"]) for r in again] == [
        ("succeeded", 0, 0)
    ] * 4
    assert all(r["bytes_skipped"] == total for r in again)


class Interrupt(Exception):
    pass


def test_interrupted_push_resumes(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big_model: Path
) -> None:
    register(tmp_path, monkeypatch, ["d1"])
    import edge.ops.push_stream

    # small ranges, each recorded at once, so the cut lands between recorded ranges
    monkeypatch.setattr(edge.ops.push_stream, "RANGE_BYTES", 2 << 20)
    monkeypatch.setattr(edge.ops.push_stream, "RECORD_EVERY_S", 0.0)
    (device,) = resolve_targets("d1")
    payload = make_payload(big_model)
    total = payload.manifest.total_bytes()

    class CutAfter:
        sent = 0

        def start(self, device: str, total_bytes: int) -> None: ...

        def advance(self, device: str, nbytes: int) -> None:
            self.sent += nbytes
            if self.sent > 20 << 20:
                raise Interrupt()  # the push dies mid-file, like a killed process

        def finish(self, device: str, ok: bool) -> None: ...

    with open_client(device) as client, pytest.raises(Interrupt):
        client.ensure_agent()
        push_to(client, payload, CutAfter())
    store = tmp_path / "roots" / "d1" / "store"
    assert list(store.glob("*.partial"))
    # the big blob went out in ranges on parallel channels; the finished ones are recorded
    (sidecar,) = store.glob("*.partial.ranges")
    done = json.loads(sidecar.read_text())["done"]
    assert 0 < sum(b - a for a, b in done) < 24 << 20
    with open_client(device) as client:
        result = push_to(client, payload)
    assert 0 < result.bytes_sent < total
    assert result.bytes_skipped + result.bytes_sent == total
    assert tree_hashes(Path(result.model_path)) == tree_hashes(big_model)


def test_convert_and_bench_on_four_devices_one_down(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    register(tmp_path, monkeypatch, NAMES)
    proc = edge_cli("convert", str(tiny_model), "--to", "all", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["device"], r["status"], r["backend"]) for r in rows] == [
        (n, "succeeded", "native") for n in NAMES
    ]
    for row in rows:  # the converted model is on that device, under its own root
        assert row["output_model"].startswith(str(tmp_path / "roots" / row["device"]))
    ssh_env["d3"].stop()
    proc = edge_cli("bench", str(tiny_model), "--to", "all", "--iterations", "20", "--json")
    assert proc.returncode == 1
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert rows["d3"]["status"] == "failed" and "unreachable" in rows["d3"]["error"]
    for name in ("d1", "d2", "d4"):
        assert rows[name]["status"] == "succeeded" and rows[name]["runs"][0]["iterations"] == 20


def test_link_cut_during_a_job_then_result_collected(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    server = ssh_env["d1"]
    with TcpProxy(server.host, server.port) as proxy:
        known = tmp_path / "known_hosts"
        known.write_text(server.known_hosts_line("127.0.0.1", proxy.port) + "\n")
        monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
        monkeypatch.setenv("EDGE_RECONNECT_TRIES", "10")
        wifi = Device(
            name="wifi",
            host="127.0.0.1",
            port=proxy.port,
            key=str(ssh_env.client_key_path),
            python=board_python(),
            root=str(tmp_path / "roots" / "wifi"),
        )
        events: list[Event] = []
        options = BenchOptions(batch_sizes=[1], duration_seconds=6.0)
        box: dict = {}
        worker = threading.Thread(
            target=lambda: box.update(
                run=measure.bench(
                    tiny_model, [wifi], options, on_event=lambda d, e: events.append(e)
                )
            )
        )
        worker.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any(e.status == "running" for e in events):
            time.sleep(0.1)
        time.sleep(1.0)
        proxy.block()
        assert proxy.cut() >= 1  # the Wi-Fi drops mid-job ...
        time.sleep(2.0)
        proxy.unblock()  # ... and comes back
        worker.join(timeout=180)
    (result,) = box["run"].results
    assert result.status == "succeeded", result.error
    assert result.runs and result.runs[0].iterations >= 10
    assert any("link lost" in e.message for e in events)
    assert [e.seq for e in events if e.seq >= 0] == sorted({e.seq for e in events if e.seq >= 0})


def test_host_keys_unknown_refused_trust_then_changed_refused(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ssh_env["d2"]
    known = tmp_path / "known_hosts"
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
    register(
        tmp_path,
        monkeypatch,
        [],
        raw=Device(
            name="raw",
            host=server.host,
            port=server.port,
            key=str(ssh_env.client_key_path),
            python=board_python(),
            root=str(tmp_path / "roots" / "raw"),
        ),
    )
    proc = edge_cli("info", "--to", "raw", "--json")
    (row,) = json.loads(proc.stdout)  # --json: the failure is the device's row
    assert proc.returncode == 1 and "unknown host key" in row["error"]
    assert "edge fleet trust --to raw" in row["hint"] and "SHA256:" in row["error"] + row["hint"]
    trusted = edge_cli("fleet", "trust", "--to", "raw", "--yes", "--json")
    assert trusted.returncode == 0, trusted.stderr
    fp = json.loads(trusted.stdout)["fingerprint"]
    offered = subprocess.run(
        ["ssh-keygen", "-lf", str(server.host_key_path) + ".pub"], capture_output=True, text=True
    ).stdout.split()[1]
    assert fp == offered
    assert json.loads(edge_cli("info", "--to", "raw", "--json").stdout)[0]["facts"]["agent_version"]
    # the board is "reflashed": the recorded key no longer matches
    other = ssh_env["d1"].host_key_pub.split()[:2]
    known.write_text(f"[{server.host}]:{server.port} {' '.join(other)}\n")
    proc = edge_cli("info", "--to", "raw")
    assert proc.returncode == 1 and "HOST KEY CHANGED" in proc.stderr


def test_proxyjump_through_the_bastion(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(tmp_path, monkeypatch, ["dj"])
    proc = edge_cli("info", "--to", "dj", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["device"] == "dj"
    # dj's sshd saw the connection come from the bastion's tunnel, not from us directly
    assert "Accepted publickey" in Path(ssh_env["dj"].log_path).read_text()


def test_hostile_names_are_data(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    import shutil

    hostile = "we ird 'q\" ;$(touch PWNED) `touch PWNED2`"
    root = tmp_path / f"root {hostile}"
    model = tmp_path / f"model {hostile}"
    shutil.copytree(tiny_model, model)
    (model / "assets").mkdir(exist_ok=True)
    (model / "assets" / f"label {hostile}.txt").write_text("a\nb\n")
    register(
        tmp_path,
        monkeypatch,
        [],
        h=Device(name="h", host="d4", python=board_python(), root=str(root)),
    )
    proc = edge_cli("convert", str(model), "--to", "h", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "succeeded" and row["output_model"].startswith(str(root))
    assert (Path(row["output_model"]) / "saved_model.pb").is_file()
    pushed = [p for p in (root / "models").iterdir() if not p.name.startswith(".")]
    assert (pushed[0] / "assets" / f"label {hostile}.txt").read_text() == "a\nb\n"
    for where in (Path.home(), Path.cwd(), tmp_path, root):
        assert not list(where.glob("PWNED*"))


def test_full_device_disk_fails_cleanly(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big_model: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small-disk"
    small.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        register(
            tmp_path,
            monkeypatch,
            [],
            tiny=Device(name="tiny", host="d1", python=board_python(), root=str(small / "edge")),
        )
        proc = edge_cli("push", str(big_model), "--to", "tiny", "--json")
        assert proc.returncode == 1
        (row,) = json.loads(proc.stdout)
        assert row["status"] == "failed" and "Not enough disk" in row["error"]
        assert "MB" in row["error"] and "--root" in row["hint"]
        models = small / "edge" / "models"
        assert not models.exists() or not any(models.iterdir())
        assert not list((small / "edge" / "store").glob("*"))  # not a byte was sent
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_jobs_ls_attach_logs_and_pull(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model: Path
) -> None:
    register(tmp_path, monkeypatch, ["d2"])
    run = conversion.convert(
        ConvertRequest(tiny_model, lambda facts: ConvertOptions()), resolve_targets("d2")
    )
    (result,) = run.results
    assert result.status == "succeeded"
    listing = json.loads(edge_cli("jobs", "ls", "--to", "d2", "--json").stdout)
    assert [j["job_id"] for j in listing] == [result.job_id]
    attached = edge_cli("jobs", "attach", result.job_id, "--to", "d2", "--json")
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout)[0]["summary"] == result.summary.to_dict()
    logs = edge_cli("jobs", "logs", result.job_id, "--to", "d2")
    assert "native backend: saved" in logs.stdout
    out = tmp_path / "pulled"
    pulled = edge_cli("pull", result.job_id, "--to", "d2", "--out", str(out), "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert tree_hashes(out) == tree_hashes(Path(result.output_model))
    again = edge_cli("pull", result.job_id, "--to", "d2", "--out", str(out))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_probe_caches_facts_and_reports_down_devices(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.ops.info import cached_facts

    register(tmp_path, monkeypatch, NAMES)
    ssh_env["d4"].stop()
    proc = edge_cli("fleet", "probe", "--to", "all", "--json")
    assert proc.returncode == 1
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert rows["d4"]["status"] == "failed"
    for name in ("d1", "d2", "d3"):
        assert rows[name]["status"] == "succeeded"
        assert cached_facts(name).python == rows[name]["facts"]["python"]
    with pytest.raises(EdgeError):
        push(tmp_path / "nope", resolve_targets("d1"))
