"""The multiplexer and long or broken requests (issue 10, items 5 and 10), over real sshd.

It never idles out while a request is in flight; when it dies or gets stuck, commands go
over a direct SSH connection; a stuck multiplexer or a client that stops reading is
noticed within a bounded time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import pytest
from sshfleet import SshFleet

from edge.agent.sessions import open_client
from edge.fleet.devices import Device
from edge.transport import TransportError, mux
from edge.transport.muxtransport import MuxTransport
from edge.transport.ssh_config import resolve_endpoint


def transport(name: str = "d1") -> MuxTransport:
    return MuxTransport(name, resolve_endpoint(name), Path(os.environ["EDGE_KNOWN_HOSTS"]))


def logins(fleet: SshFleet, name: str = "d1") -> int:
    return Path(fleet[name].log_path).read_text().count("Accepted publickey")


def wait_gone(pid: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # our child when started in this process: reap it
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs")


@pytest.mark.timeout(120)
def test_the_mux_stays_up_while_a_stream_outlives_idle(ssh_env: SshFleet, short_home: Path) -> None:
    mux.start(idle=2)
    with transport() as t:
        lines = [
            line.strip()
            for line in t.stream(["sh", "-c", "for i in 1 2 3 4 5 6 7; do echo $i; sleep 1; done"])
        ]
        assert lines == [str(i) for i in range(1, 8)]  # 7 s, more than 3 idle periods
        assert mux.running()  # still up right after the stream
        before = logins(ssh_env)
        assert t.run(["echo", "warm"]).stdout == "warm\n"
        assert logins(ssh_env) == before  # its warm connection served, not a direct one
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and mux.running():
        time.sleep(0.2)
    assert not mux.running()  # with nothing in flight it does idle out
    assert not mux.socket_path().exists()


@pytest.mark.timeout(180)
def test_commands_fall_back_to_direct_ssh_when_the_mux_is_killed(
    ssh_env: SshFleet, device_python: Path, short_home: Path, tmp_path: Path
) -> None:
    pid = mux.start(idle=60)
    dev = Device(
        name="d1", host="d1", python=str(device_python), root=str(tmp_path / "roots" / "d1")
    )
    with open_client(dev) as client:
        assert isinstance(client.transport, MuxTransport)
        assert client.call("jobs") == []  # installs the agent, through the multiplexer
        before = logins(ssh_env)
        assert client.call("jobs") == []
        assert logins(ssh_env) == before  # warm: the multiplexer served it
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        assert client.call("jobs") == []  # the next command: a direct connection
        assert client.info().python
        assert logins(ssh_env) == before + 1  # one direct login, not one per command
    with open_client(dev) as client:  # a later command does not pick the dead socket
        assert not isinstance(client.transport, MuxTransport)
        assert client.call("jobs") == []


@pytest.mark.timeout(120)
def test_a_stream_cut_by_the_mux_dying_fails_fast_then_goes_direct(
    ssh_env: SshFleet, short_home: Path
) -> None:
    pid = mux.start(idle=60)
    with transport() as t:
        lines = t.stream(["sh", "-c", "echo a; sleep 60; echo b"])
        assert next(lines).strip() == "a"
        os.kill(pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(TransportError, match="multiplexer"):
            next(lines)
        assert time.monotonic() - start < 10
        assert [line.strip() for line in t.stream(["echo", "direct"])] == ["direct"]


@pytest.mark.timeout(90)
def test_a_stuck_multiplexer_is_noticed_and_skipped(
    ssh_env: SshFleet, short_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the socket still accepts connections but nothing answers (item 10)."""
    monkeypatch.setattr(mux, "READ_TIMEOUT", 3.0, raising=False)  # 30 s in real use
    pid = mux.start(idle=60)
    try:
        with transport() as t:
            assert t.run(["echo", "warm"]).stdout == "warm\n"
            os.kill(pid, signal.SIGSTOP)
            start = time.monotonic()
            with pytest.raises(TransportError, match="multiplexer"):
                t.run(["echo", "stuck"])
            assert time.monotonic() - start < 15
            assert t.run(["echo", "direct"]).stdout == "direct\n"
        assert not mux.running()  # new commands do not pick the stuck one either
    finally:
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGTERM)


@pytest.mark.timeout(120)
def test_the_mux_drops_a_client_that_stops_reading(ssh_env: SshFleet, short_home: Path) -> None:
    """A client asks for an endless stream and never reads: after the server's client
    timeout the multiplexer gives up on it and ends the remote command (item 10)."""
    pid = mux.start(idle=60, client_timeout=3.0)
    marker = f"edge-flood-{uuid.uuid4().hex[:8]}"
    req = {
        "op": "stream",
        "argv": ["yes", marker],
        "idle_timeout": None,
        "device": "d1",
        "endpoint": asdict(resolve_endpoint("d1")),
        "known_hosts": os.environ["EDGE_KNOWN_HOSTS"],
    }

    def flooding() -> bool:
        return subprocess.run(["pgrep", "-f", f"yes {marker}"], capture_output=True).returncode == 0

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(mux.socket_path()))
        s.sendall((json.dumps(req) + "\n").encode())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not flooding():
            time.sleep(0.1)
        assert flooding(), "the stream did not start"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and flooding():
            time.sleep(0.2)
        assert not flooding()  # given up on while our end is still open
    with transport() as t:
        assert t.run(["echo", "fine"]).stdout == "fine\n"  # and the multiplexer still serves
    os.kill(pid, 0)
