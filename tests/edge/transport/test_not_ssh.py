"""A host that answers TCP but not with SSH: one user error naming the device, within a
bound, and none of paramiko's tracebacks (they come from its transport thread's log)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import edge_bin

from edge.transport.banner import BANNER_TIMEOUT, banner_timeout
from edge.transport.base import TransportError
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import Endpoint

HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\n\r\n"
SILENT_WAIT = 1.5  # EDGE_SSH_BANNER_TIMEOUT here: a silent port costs this, not the default


@pytest.fixture(autouse=True)
def short_banner_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_SSH_BANNER_TIMEOUT", str(SILENT_WAIT))


class Listener:
    """A real TCP server on 127.0.0.1 in a thread: it sends `reply` to each connection,
    then closes it (or, with `hold`, keeps it open and says nothing more)."""

    def __init__(self, reply: bytes, hold: bool = False) -> None:
        self.reply, self.hold = reply, hold
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.reply:
                conn.sendall(self.reply)
            if self.hold:
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture(params=["http", "silent", "binary"])
def listener(request: pytest.FixtureRequest) -> Iterator[tuple[str, Listener]]:
    reply = {"http": HTTP_REPLY, "silent": b"", "binary": b"\xff\xfe\x00\x81garbage\n"}
    server = Listener(reply[request.param], hold=request.param == "silent")
    try:
        yield request.param, server
    finally:
        server.close()


EXPECTED = {
    "http": 'it sent "HTTP/1.1 400 Bad Request" instead of an SSH banner',
    "silent": f"it sent no SSH banner within {SILENT_WAIT:g} s",
    "binary": "it sent binary data instead of an SSH banner",
}


@pytest.fixture
def no_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ssh-agent, an empty known_hosts and ssh config: nothing of ~/.ssh is used."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text("")
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    return tmp_path


def test_transport_names_what_answered(
    listener: tuple[str, Listener], no_keys: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    kind, server = listener
    ep = Endpoint(alias="dev1", hostname="127.0.0.1", port=server.port, user="edge")
    transport = SSHTransport("dev1", ep)
    start = time.monotonic()
    with pytest.raises(TransportError) as info:
        transport.connect()
    took = time.monotonic() - start
    assert server.accepted == 1
    assert info.value.message == (
        f"dev1 (127.0.0.1:{server.port}) answered, but not with SSH: {EXPECTED[kind]}"
    )
    hint = info.value.hint or ""
    assert f"ssh -v -p {server.port} edge@127.0.0.1" in hint and "sshd" in hint
    assert took < SILENT_WAIT + 3, took
    if kind == "silent":
        assert took >= SILENT_WAIT - 0.05, took  # it did wait the setting's seconds
    else:
        assert took < 3, took
    time.sleep(0.3)  # paramiko's transport thread logs its failure after ours returned
    err = capfd.readouterr().err
    assert "Traceback" not in err and "paramiko" not in err, err


def test_a_closed_port_is_still_unreachable(no_keys: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now
    ep = Endpoint(alias="dev1", hostname="127.0.0.1", port=port, user="edge")
    with pytest.raises(TransportError) as info:
        SSHTransport("dev1", ep).connect()
    assert info.value.message.startswith(f"dev1: unreachable (edge@127.0.0.1:{port})")
    assert "not with SSH" not in info.value.message


def _edge(
    *args: str, home: Path, timeout: float, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, EDGE_HOME=str(home), COLUMNS="250", TF_CPP_MIN_LOG_LEVEL="2")
    if debug:
        env["EDGE_DEBUG"] = "1"
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _probe(
    name: str, home: Path, timeout: float, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    """`edge fleet probe` on one device, as `--to NAME` or (older CLI) positionally."""
    probe = ("fleet", "probe", "--quick")
    proc = _edge(*probe, "--to", name, home=home, timeout=timeout, debug=debug)
    if proc.returncode == 2 and "--to" in proc.stderr:  # no such option (yet)
        proc = _edge(*probe, name, home=home, timeout=timeout, debug=debug)
    return proc


def test_cli_prints_one_error_per_device(
    listener: tuple[str, Listener], no_keys: Path, edge_home: Path
) -> None:
    kind, server = listener
    add = _edge(
        "fleet", "add", "dev1", "--host", "127.0.0.1", "--port", str(server.port),
        "--user", "edge", home=edge_home, timeout=60,
    )  # fmt: skip
    assert add.returncode == 0, add.stderr
    start = time.monotonic()
    proc = _probe("dev1", edge_home, timeout=BANNER_TIMEOUT + 60)
    took = time.monotonic() - start
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "paramiko" not in out, out
    reason = f"dev1 (127.0.0.1:{server.port}) answered, but not with SSH: {EXPECTED[kind]}"
    lines = [line for line in out.splitlines() if "answered, but not with SSH" in line]
    assert len(lines) == 1 and reason in lines[0], out
    assert f"ssh -v -p {server.port} edge@127.0.0.1" in out
    assert took < SILENT_WAIT + 15, took  # the interpreter's start-up included


def test_banner_wait_defaults_to_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_SSH_BANNER_TIMEOUT")
    assert banner_timeout() == BANNER_TIMEOUT == 10.0
    monkeypatch.setenv("EDGE_SSH_BANNER_TIMEOUT", "4")
    assert banner_timeout() == 4.0


def test_reading_the_host_key_of_a_non_ssh_host(no_keys: Path) -> None:
    from edge.transport.ssh import scan_host_key

    server = Listener(HTTP_REPLY)
    try:
        ep = Endpoint(alias="dev1", hostname="127.0.0.1", port=server.port, user="edge")
        with pytest.raises(TransportError) as info:
            scan_host_key(ep, "dev1")
    finally:
        server.close()
    assert info.value.message == (
        f"dev1 (127.0.0.1:{server.port}) answered, but not with SSH: {EXPECTED['http']}"
    )


def test_an_ssh_server_that_fails_later_is_not_called_not_ssh(no_keys: Path) -> None:
    server = Listener(b"SSH-1.5-OpenSSH_2.1\r\n")
    try:
        ep = Endpoint(alias="dev1", hostname="127.0.0.1", port=server.port, user="edge")
        with pytest.raises(TransportError) as info:
            SSHTransport("dev1", ep).connect()
    finally:
        server.close()
    message = info.value.message
    assert message.startswith(f"dev1: SSH with edge@127.0.0.1:{server.port} failed: "), message
    assert "1.5" in message and "not with SSH" not in message


def test_edge_debug_shows_paramikos_own_log(no_keys: Path, edge_home: Path) -> None:
    server = Listener(HTTP_REPLY)
    try:
        add = _edge(
            "fleet", "add", "dev1", "--host", "127.0.0.1", "--port", str(server.port),
            home=edge_home, timeout=60,
        )  # fmt: skip
        assert add.returncode == 0, add.stderr
        proc = _probe("dev1", edge_home, timeout=60, debug=True)
    finally:
        server.close()
    assert proc.returncode == 1
    assert "paramiko.transport" in proc.stderr and "SSH protocol banner" in proc.stderr
