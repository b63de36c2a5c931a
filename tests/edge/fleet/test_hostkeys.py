"""`edge fleet trust` over real sshd: shown first, asked or pinned, replaced only on request,
written atomically, and ProxyJump hops checked against the fleet's known_hosts too."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet, SshServer

from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory, known_hosts_path
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import resolve_endpoint


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    """The `edge` CLI with no terminal on stdin (as in CI, cron or a pipe)."""
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run(
        [edge_bin(), *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def fp_of(server: SshServer) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(server.host_key_path) + ".pub"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]


def key_of(server: SshServer) -> str:
    return " ".join(server.host_key_pub.split()[:2])


@pytest.fixture
def raw(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> SshServer:
    """Device `raw` = d2 by address and port, with an empty fleet known_hosts and $HOME."""
    server = ssh_env["d2"]
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(tmp_path / "known_hosts"))
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inv = Inventory.load()
    inv.add(
        Device(
            name="raw",
            host=server.host,
            port=server.port,
            key=str(ssh_env.client_key_path),
            python=str(device_python),
            root=str(tmp_path / "root"),
        )
    )
    inv.save()
    return server


def test_no_tty_and_no_flag_is_refused_and_nothing_written(raw: SshServer) -> None:
    proc = edge("fleet", "trust", "--to", "raw")
    assert proc.returncode == 1
    assert fp_of(raw) in proc.stdout + proc.stderr  # shown, ...
    assert "--yes" in proc.stderr and "--fingerprint" in proc.stderr  # ... not taken
    assert not known_hosts_path().exists()


def test_fingerprint_pins_the_key(raw: SshServer) -> None:
    wrong = "SHA256:" + "A" * 43
    proc = edge("fleet", "trust", "--to", "raw", "--fingerprint", wrong)
    assert proc.returncode == 1 and wrong in proc.stderr and fp_of(raw) in proc.stderr
    assert not known_hosts_path().exists()
    proc = edge("fleet", "trust", "--to", "raw", "--fingerprint", fp_of(raw), "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["fingerprint"] == fp_of(raw) and row["status"] == "succeeded"
    assert known_hosts_path().read_text() == f"[{raw.host}]:{raw.port} {key_of(raw)}\n"
    assert known_hosts_path().stat().st_mode & 0o777 == 0o600
    again = json.loads(edge("fleet", "trust", "--to", "raw", "--json").stdout)
    assert again["already_trusted"] is True  # nothing to ask when nothing changes


def test_changed_key_needs_replace_then_is_replaced_atomically(
    ssh_env: SshFleet, raw: SshServer
) -> None:
    old = ssh_env["d1"]
    d3 = ssh_env["d3"]
    path = known_hosts_path()
    before = (
        f"# lab boards, keep this comment\n"
        f"[{d3.host}]:{d3.port} {key_of(d3)}\n"
        f"[{raw.host}]:{raw.port},spare-name {key_of(old)} old flash\n"
        f"|1|MDEyMzQ1Njc4OWFiY2RlZmdoaWo=|enp6enp6enp6enp6enp6enp6enp6eno= {key_of(d3)}\n"
    )
    path.write_text(before)
    path.chmod(0o600)
    proc = edge("fleet", "trust", "--to", "raw", "--yes")
    assert proc.returncode == 1
    assert fp_of(old) in proc.stderr and fp_of(raw) in proc.stderr
    assert "--replace" in proc.stderr
    assert path.read_text() == before
    inode = path.stat().st_ino
    proc = edge("fleet", "trust", "--to", "raw", "--yes", "--replace", "--json")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["replaced"] == [fp_of(old)] and row["fingerprint"] == fp_of(raw)
    lines = path.read_text().splitlines()
    assert lines == [
        before.splitlines()[0],
        before.splitlines()[1],
        f"spare-name {key_of(old)} old flash",
        before.splitlines()[3],
        f"[{raw.host}]:{raw.port} {key_of(raw)}",
    ]
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".known_hosts")]
    ep = resolve_endpoint(raw.host, raw.port, key=str(ssh_env.client_key_path))
    with SSHTransport("raw", ep, path) as transport:
        assert transport.run(["echo", "ok"]).stdout == "ok\n"


def test_trust_behind_a_bastion_known_only_to_the_fleet_file(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    bastion, dj = ssh_env["bastion"], ssh_env["dj"]
    user_known = tmp_path / "user_known_hosts"
    user_known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(
        ssh_env.ssh_config_path.read_text().replace(str(ssh_env.known_hosts_path), str(user_known))
    )
    fleet_known = tmp_path / "known_hosts"
    fleet_known.write_text(f"[{bastion.host}]:{bastion.port} {key_of(bastion)}\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(fleet_known))
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    inv = Inventory.load()
    inv.add(Device(name="dj", host="dj", python=str(device_python), root=str(tmp_path / "root")))
    inv.save()
    proc = edge("fleet", "trust", "--to", "dj", "--yes", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fingerprint"] == fp_of(dj)
    assert f"[{dj.host}]:{dj.port} {key_of(dj)}" in fleet_known.read_text().splitlines()
    with SSHTransport("dj", resolve_endpoint("dj"), fleet_known) as transport:
        assert transport.run(["echo", "ok"]).stdout == "ok\n"


def _on_a_terminal(answer: bytes, *args: str) -> tuple[int, str]:
    """Run `edge ARGS` with a pseudo-terminal on stdin, answering the prompt with `answer`."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [edge_bin(), *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    os.close(slave)
    try:
        os.write(master, answer)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
    return proc.returncode, out + err


def test_on_a_terminal_the_key_is_shown_and_asked_for(raw: SshServer) -> None:
    code, text = _on_a_terminal(b"n\n", "fleet", "trust", "--to", "raw")
    assert code == 1 and fp_of(raw) in text and "Trust this key?" in text
    assert not known_hosts_path().exists()
    code, text = _on_a_terminal(b"y\n", "fleet", "trust", "--to", "raw")
    assert code == 0, text
    assert known_hosts_path().read_text() == f"[{raw.host}]:{raw.port} {key_of(raw)}\n"
