"""The transport pieces that make pushes fast, over a real sshd: the SFTP range writer,
the cipher order, the agent run without a check first, and the multiplexer's resident
agent."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from sshfleet import SshFleet

import edge.transport.sftp_writer as sftp_writer
from edge.agent.client import AgentClient
from edge.fleet.devices import Device
from edge.transport import RangeTask, TransportError
from edge.transport.muxtransport import MuxTransport
from edge.transport.ssh import SSHTransport, cipher_preference
from edge.transport.ssh_config import resolve_endpoint


def transport(name: str = "d1") -> SSHTransport:
    return SSHTransport(name, resolve_endpoint(name), Path(os.environ["EDGE_KNOWN_HOSTS"]))


def test_cipher_preference_order(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = ("aes128-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    monkeypatch.delenv("EDGE_SSH_CIPHERS", raising=False)
    assert cipher_preference(offered)[:2] == ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
    monkeypatch.setenv("EDGE_SSH_CIPHERS", "aes256-ctr, no-such-cipher")
    assert cipher_preference(offered) == (
        "aes256-ctr",
        "aes128-ctr",
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
    )


def test_gcm_is_negotiated_unless_overridden(
    ssh_env: SshFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with transport() as t:
        assert t.connect().get_transport().local_cipher == "aes128-gcm@openssh.com"
    monkeypatch.setenv("EDGE_SSH_CIPHERS", "aes256-ctr")
    with transport() as t:
        assert t.connect().get_transport().local_cipher == "aes256-ctr"


@pytest.mark.timeout(120)
def test_range_writer_switches_files_mid_stream(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the next file while writes are in flight: paramiko reads their acks while
    it waits for the open; the writer must count them, not wait for them again."""
    monkeypatch.setattr(sftp_writer, "WINDOW", 100000)  # everything stays in flight
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(3 << 20))
    b.write_bytes(os.urandom(100000))
    remote = tmp_path / "remote"
    remote.mkdir()
    ra, rb = str(remote / "a"), str(remote / "b")
    for r in (ra, rb):
        Path(r).touch()
    tasks = [
        RangeTask(a, ra, 0, 1 << 20),
        RangeTask(b, rb, 0, 100000),
        RangeTask(a, ra, 1 << 20, 3 << 20),
    ]
    done: list[RangeTask] = []
    acked: list[int] = []
    with transport() as t:
        sent = t.upload_ranges(tasks, 1, acked.append, done.append)
    assert sent == sum(acked) == (3 << 20) + 100000
    assert done == tasks  # each once its last byte was acknowledged, in order
    for local, r in ((a, ra), (b, rb)):
        assert (
            hashlib.sha256(Path(r).read_bytes()).digest()
            == hashlib.sha256(local.read_bytes()).digest()
        )


def test_range_writer_reports_a_refused_write(ssh_env: SshFleet, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(200000))
    missing = str(tmp_path / "nope" / "x")  # its directory does not exist
    with transport() as t, pytest.raises(TransportError, match="upload failed"):
        t.upload_ranges([RangeTask(src, missing, 0, 200000)], 2)


def device(tmp_path: Path, python: Path, name: str = "d1") -> Device:
    """A fleet device whose agent runs under `python` (the device_python fixture)."""
    return Device(name=name, host=name, python=str(python), root=str(tmp_path / "roots" / name))


class CountingTransport(SSHTransport):
    runs: list[list[str]]

    def run(self, argv, input=None, timeout=None):  # type: ignore[override]
        self.runs.append(list(argv))
        return super().run(argv, input=input, timeout=timeout)


def test_first_command_installs_a_missing_agent_then_runs_alone(
    ssh_env: SshFleet, tmp_path: Path, device_python: Path
) -> None:
    dev = device(tmp_path, device_python)
    t = CountingTransport("d1", resolve_endpoint("d1"), Path(os.environ["EDGE_KNOWN_HOSTS"]))
    t.runs = []
    with t:
        client = AgentClient(dev, t)
        assert client.call("jobs") == []
        assert client.agent_installed
        # the command; the check, carrying the agent (one exec, no upload); the command
        assert [r[-1] for r in t.runs] == ["jobs", "install", "jobs"]
        t.runs.clear()
        again = AgentClient(dev, t)  # a later command: the agent is there, one exec
        assert again.call("jobs") == [] and not again.agent_installed
        assert len(t.runs) == 1


def test_mux_resident_agent_serves_commands(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    from edge.agent.sessions import open_client
    from edge.transport import mux

    home = Path(tempfile.mkdtemp(prefix="em", dir="/tmp"))  # a short Unix socket path
    monkeypatch.setenv("EDGE_HOME", str(home))
    dev = device(tmp_path, device_python)
    mux.start(idle=60)
    try:
        with open_client(dev) as client:  # no agent yet: runs, installs, runs again
            assert isinstance(client.transport, MuxTransport)
            first = client.info()
        with open_client(dev) as client:
            runs: list[list[str]] = []
            real_run = client.transport.run
            client.transport.run = lambda argv, **kw: runs.append(argv) or real_run(argv, **kw)
            for _ in range(3):
                assert client.info().hostname == first.hostname
            assert client.call("jobs") == []
            assert runs == []  # every command went to the resident `serve`
        out = subprocess.run(["pgrep", "-f", f"{dev.root} serve"], capture_output=True, text=True)
        assert out.stdout.split(), "the resident agent runs on the device"
    finally:
        mux.stop()


def test_a_device_without_that_python_is_a_clear_error(ssh_env: SshFleet, tmp_path: Path) -> None:
    from edge.core.errors import DeviceError

    dev = Device(
        name="d1", host="d1", python="/no/such/python3", root=str(tmp_path / "roots" / "d1")
    )
    with transport() as t, pytest.raises(DeviceError) as info:
        AgentClient(dev, t).call("jobs")
    assert "cannot run '/no/such/python3'" in info.value.message
    assert "--python" in (info.value.hint or "")
    assert not (tmp_path / "roots" / "d1").exists()  # nothing was installed


def test_connecting_leaves_the_endpoint_as_it_was(ssh_env: SshFleet) -> None:
    """The multiplexer keys its warm connections and resident agents by the endpoint."""
    from dataclasses import asdict

    ep = resolve_endpoint("d1")
    ep.known_hosts_files = [os.environ["EDGE_KNOWN_HOSTS"]]
    before = asdict(ep)
    for _ in range(2):
        with SSHTransport("d1", ep, Path(os.environ["EDGE_KNOWN_HOSTS"])) as t:
            t.connect()
        assert asdict(ep) == before
