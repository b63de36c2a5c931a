"""`edge push` to two sshd devices over each data path (EDGE_PUSH_VIA): same trees."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.transport.base import SessionRefused, Stream

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


def test_a_broken_pth_on_the_device_does_not_stop_a_push(
    tmp_path: Path, device_python: Path
) -> None:
    """The push's agent commands need only the stdlib and skip site-packages (`-S`): once
    the agent is installed, a device Python whose site-packages hold a .pth that kills
    every start still takes a push (and, to show the .pth bites, fails any other agent
    command)."""
    import sys

    from edge.agent.sessions import open_client
    from edge.core.errors import DeviceError
    from edge.ops.push import push

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    (site / "broken.pth").write_text("import sys; sys.exit('a broken .pth')\n")
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(3000))
    root = str(tmp_path / "root")
    (installed,) = push(src, [Device(name="b", python=str(device_python), root=root)]).results
    assert installed.status == "succeeded", installed.error
    (src / "variables.bin").write_bytes(os.urandom(5000))  # a new tree, a new blob
    device = Device(name="b", python=str(venv / "bin" / "python"), root=root)
    (result,) = push(src, [device]).results
    assert result.status == "succeeded", result.error
    model = Path(str(result.model_path))
    assert _tree_hashes(model) == _tree_hashes(src)
    with open_client(device) as client, pytest.raises(DeviceError, match="broken .pth"):
        client.call("jobs")


def test_a_push_of_several_streams_commits_on_its_planning_stream(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    """Over real sshd, three streams: the first plans and, once the other two have
    written the rest, commits, before the host has closed its input (no word from the
    host needed); no other agent command runs, and the tree is whole."""

    from edge.agent.client import AgentClient
    from edge.ops.push import push
    from edge.transport.openssh import OpenSSHTransport

    monkeypatch.setenv("EDGE_PUSH_CHANNELS", "3")
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(1000))
    (src / "big.bin").write_bytes(os.urandom(40 << 20))  # ranged: > PARALLEL_MIN
    commands: list[str] = []
    streams: list[str] = []
    real_call, real_open = AgentClient.call, OpenSSHTransport.open_stream

    def call(self: AgentClient, *args: str, **kw: Any) -> Any:
        commands.append(args[0])
        return real_call(self, *args, **kw)

    ended_first: list[bool] = []  # whether the planning stream ended before its input

    def open_stream(self: OpenSSHTransport, argv: Sequence[str]) -> Stream:
        streams.append(argv[-1])
        stream = real_open(self, argv)
        if len(streams) == 1:
            real_finish = stream.finish

            def finish(timeout: float | None = None) -> Any:
                proc = stream.proc  # type: ignore[attr-defined]
                deadline = time.monotonic() + 10
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                ended_first.append(proc.poll() is not None)
                return real_finish(timeout)

            stream.finish = finish  # type: ignore[method-assign]
        return stream

    monkeypatch.setattr(AgentClient, "call", call)
    monkeypatch.setattr(OpenSSHTransport, "open_stream", open_stream)
    root = str(tmp_path / "root")
    device = Device(name="d1", host="d1", python=str(device_python), root=root)
    (installed,) = push(src, [device]).results  # installs the agent (other commands)
    assert installed.status == "succeeded", installed.error
    (src / "big.bin").write_bytes(os.urandom(40 << 20))
    commands.clear()
    streams.clear()
    ended_first.clear()
    (result,) = push(src, [device]).results
    assert result.status == "succeeded", result.error
    assert commands == [] and streams == ["push-receive"] * 3
    assert ended_first == [True]
    assert _tree_hashes(Path(str(result.model_path))) == _tree_hashes(src)


@pytest.mark.parametrize(("via", "delay_ms"), [("openssh", 0), ("paramiko", 0), ("openssh", 25)])
def test_a_push_wider_than_sshds_max_sessions_sends_all_on_the_sessions_it_gets(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    device_python: Path,
    via: str,
    delay_ms: int,
) -> None:
    """A board's sshd allows 10 sessions per connection (some fewer): streams it refuses
    leave their pieces to the others, and the push is whole. Over a 50 ms link, the
    streams opened beside the plan are the ones refused."""
    import sshfleet
    from tcpproxy import TcpProxy

    from edge.ops.push import push

    monkeypatch.setitem(sshfleet.SSHD_SETTINGS, "MaxSessions", "3")
    server = sshfleet.SshServer("limited", tmp_path / "srv", ssh_env.authorized_keys_path)
    server.start()
    proxy = TcpProxy(server.host, server.port).start()
    host, port = ("127.0.0.1", proxy.port) if delay_ms else (server.host, server.port)
    try:
        known = tmp_path / "known_hosts"
        line = server.known_hosts_line(host, port)
        known.write_text(ssh_env.known_hosts_path.read_text() + line + "\n")
        monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
        monkeypatch.setenv("EDGE_PUSH_VIA", via)
        monkeypatch.setenv("EDGE_PUSH_CHANNELS", "6")
        src = tmp_path / "model"
        src.mkdir()
        (src / "saved_model.pb").write_bytes(os.urandom(1000))
        device = Device(
            name="limited", host=host, port=port, user=server.user,
            key=str(ssh_env.client_key_path), python=str(device_python),
            root=str(tmp_path / "root"),
        )  # fmt: skip
        (installed,) = push(src, [device]).results  # installs the agent
        assert installed.status == "succeeded", installed.error
        proxy.delay_ms = delay_ms
        (src / "big.bin").write_bytes(os.urandom(48 << 20))  # 6 ranged pieces
        refused: list[str] = []
        real = SessionRefused.__init__

        def counted(self: SessionRefused, device: str) -> None:
            refused.append(device)
            real(self, device)

        monkeypatch.setattr(SessionRefused, "__init__", counted)
        (result,) = push(src, [device]).results
        assert result.status == "succeeded", result.error
        assert _tree_hashes(Path(str(result.model_path))) == _tree_hashes(src)
        assert refused and set(refused) == {"limited"}  # some streams were refused
    finally:
        proxy.stop()
        server.stop()


def _devices(root: Path, device_python: Path) -> list[Device]:
    return [Device(name=n, host=n, python=str(device_python), root=str(root / n)) for n in NAMES]


def test_the_connections_come_up_while_the_payload_is_hashed(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    import threading

    from edge.ops import push as push_mod
    from edge.transport.openssh import OpenSSHTransport

    devices = _devices(tmp_path / "roots", device_python)
    connected = threading.Event()
    real_prepare, real_payload = OpenSSHTransport.prepare, push_mod.make_payload

    def prepare(self: OpenSSHTransport) -> None:
        real_prepare(self)
        connected.set()

    def make_payload(source: Path, kind: str = "model") -> Any:
        assert connected.wait(20), "no device connected while the payload was hashed"
        return real_payload(source, kind)

    monkeypatch.setattr(OpenSSHTransport, "prepare", prepare)
    monkeypatch.setattr(push_mod, "make_payload", make_payload)
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(3000))
    run = push_mod.push(src, devices)
    assert [r.status for r in run.results] == ["succeeded"] * len(NAMES)


def test_a_payload_that_cannot_be_hashed_fails_the_push_once(
    ssh_env: SshFleet, tmp_path: Path, device_python: Path
) -> None:
    from edge.core.errors import EdgeError
    from edge.ops.push import push

    with pytest.raises(EdgeError, match="does not exist"):
        push(tmp_path / "nosuch", _devices(tmp_path / "roots", device_python))


def test_the_plan_request_carries_the_largest_files_first_bytes(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    """Over real sshd: a first push's plan request carries EDGE_PUSH_EAGER bytes of its
    largest file, which the device keeps; a re-push sends them and the device drops them
    (nothing written); EDGE_PUSH_EAGER=0 sends none, nor does a push to several."""
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(2000))
    (src / "variables.data").write_bytes(os.urandom(3 << 20))
    total = 2000 + (3 << 20)
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    for name in NAMES:
        inv.add(Device(name=name, host=name, python=str(device_python), root=str(tmp_path / name)))
    inv.save()

    def push(eager: str, to: str = "d1") -> tuple[list[Any], str]:
        env = dict(os.environ, EDGE_TRACE="1", EDGE_PUSH_EAGER=eager, EDGE_PUSH_VIA="openssh")
        proc = subprocess.run(
            [edge_bin(), "push", str(src), "--to", to, "--json"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout), proc.stderr

    push("0")  # installs the agent (its check and upload are other commands)
    (src / "variables.data").write_bytes(os.urandom(3 << 20))
    rows, trace = push("300000")
    assert rows[0]["bytes_sent"] == total - 2000
    assert "300000 bytes sent with the plan request were kept" in trace
    assert _tree_hashes(Path(rows[0]["model_path"])) == _tree_hashes(src)
    rows, trace = push("300000")
    assert rows[0]["bytes_sent"] == 0 and "were kept" not in trace
    (src / "variables.data").write_bytes(os.urandom(3 << 20))
    rows, trace = push("0")
    assert rows[0]["bytes_sent"] == 3 << 20 and "were kept" not in trace
    # to several devices at once, none: their pushes keep the links busy
    (src / "variables.data").write_bytes(os.urandom(3 << 20))
    rows, trace = push("300000", "all")
    assert [r["bytes_sent"] for r in rows] == [3 << 20, total] and "were kept" not in trace
