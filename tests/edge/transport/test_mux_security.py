"""Another local user and the multiplexer socket (issue 10, item 3).

A socket that merely exists is never used; a socket directory or socket that is not the
user's own and private is refused; and both ends check the peer's uid (SO_PEERCRED).
The hostile ends are real processes that drop to uid 65534 (`nobody`), so these tests
need root, which the suite has here and in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.agent.client import AgentClient
from edge.agent.sessions import open_client
from edge.core.errors import EdgeError
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.transport import mux
from edge.transport.muxtransport import MuxTransport
from edge.transport.ssh_config import resolve_endpoint

NOBODY = 65534


@pytest.fixture(autouse=True)
def needs_root() -> None:
    assert os.geteuid() == 0, "these tests play another local user: run them as root"


def as_nobody(body: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child that drops to uid/gid 65534 and runs body(write_fd); returns
    (child pid, read end of the pipe the child reports on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so it needs no interpreter it can read
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            body(w)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


class Listener:
    """A Unix socket server of uid 65534 at `path`: it reports every connection and
    every byte it receives, and never answers."""

    def __init__(self, path: Path) -> None:
        def body(w: int) -> None:
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(str(path))
            srv.listen(64)
            os.write(w, b"ready\n")
            while True:
                conn, _ = srv.accept()
                os.write(w, b"conn\n")
                conn.settimeout(2.0)
                try:
                    while data := conn.recv(65536):
                        os.write(w, b"data %d\n" % len(data))
                except OSError:
                    pass
                conn.close()

        self.pid, self._fd = as_nobody(body)
        self._buf = b""
        deadline = time.monotonic() + 10
        while b"ready\n" not in self._buf and time.monotonic() < deadline:
            self._buf += os.read(self._fd, 4096)
        assert b"ready\n" in self._buf, "the listener did not start"
        os.set_blocking(self._fd, False)

    def heard(self) -> list[str]:
        """What it received so far: 'conn' per connection, 'data N' per read."""
        try:
            while chunk := os.read(self._fd, 65536):
                self._buf += chunk
        except BlockingIOError:
            pass
        return [e for e in self._buf.decode().split("\n") if e and e != "ready"]

    def stop(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self._fd)


def logins(fleet: SshFleet, name: str = "d1") -> int:
    return Path(fleet[name].log_path).read_text().count("Accepted publickey")


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_a_socket_another_user_planted_is_never_used(
    ssh_env: SshFleet,
    device_python: Path,
    short_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """uid 65534 owns the socket directory, listens on the socket and even left a start
    record naming itself: no `edge` command connects to it, and `mux start` refuses."""
    short_home.chmod(0o755)  # so that nobody can reach its own directory inside
    sock_dir = short_home / "mux"
    sock_dir.mkdir(mode=0o700)
    os.chown(sock_dir, NOBODY, NOBODY)
    listener = Listener(sock_dir / "mux.sock")
    try:
        record = sock_dir / "mux.json"
        record.write_text(json.dumps({"pid": listener.pid, "uid": os.getuid()}))
        os.chown(record, NOBODY, NOBODY)
        monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
        inv = Inventory.load()
        inv.add(
            Device(
                name="d1", host="d1", python=str(device_python), root=str(tmp_path / "roots" / "d1")
            )
        )
        inv.save()
        before = logins(ssh_env)
        probe = edge("fleet", "probe", "--to", "d1", "--json")
        assert probe.returncode == 0, probe.stderr
        assert [r["status"] for r in json.loads(probe.stdout)] == ["succeeded"]
        assert logins(ssh_env) > before  # a direct SSH connection did the work
        started = edge("mux", "start", "--idle", "5")
        assert started.returncode != 0
        assert "65534" in started.stderr and "hint" in started.stderr
        status = edge("mux", "status")
        assert status.returncode != 0 and "65534" in status.stderr
        assert listener.heard() == []  # not one connection, not one byte
    finally:
        listener.stop()


@pytest.mark.parametrize("kind", ["mode-0755", "symlink"])
def test_an_unsafe_socket_directory_is_refused(short_home: Path, kind: str) -> None:
    sock_dir = short_home / "mux"
    if kind == "mode-0755":
        sock_dir.mkdir()
        sock_dir.chmod(0o755)
    else:
        real = short_home / "elsewhere"
        real.mkdir(mode=0o700)
        sock_dir.symlink_to(real)
    with pytest.raises(EdgeError) as info:
        mux.start(idle=30)
    assert str(sock_dir) in info.value.message
    assert info.value.hint
    assert not mux.running()
    assert not os.path.lexists(sock_dir / "mux.sock")  # nothing was started there


def test_a_socket_others_can_reach_is_not_used(short_home: Path) -> None:
    mux.start(idle=30)
    assert mux.running()
    mux.socket_path().chmod(0o666)
    try:
        assert not mux.running()
        with pytest.raises(EdgeError) as info:
            mux.start(idle=30)
        assert str(mux.socket_path()) in info.value.message and info.value.hint
    finally:
        mux.socket_path().chmod(0o600)


def test_the_client_refuses_a_server_of_another_uid(
    ssh_env: SshFleet, device_python: Path, short_home: Path, tmp_path: Path
) -> None:
    """The user's own multiplexer runs (its start record is genuine), but the socket file
    in its private directory now leads to a server of uid 65534: nothing is sent to it."""
    pid = mux.start(idle=60)
    other = Path(tempfile.mkdtemp(prefix="eo", dir="/tmp"))
    os.chown(other, NOBODY, NOBODY)
    listener = Listener(other / "s")
    try:
        sock = mux.socket_path()
        os.rename(other / "s", sock)  # only root can do this; a stand-in for any swap
        os.chown(sock, os.getuid(), os.getgid())
        sock.chmod(0o600)
        assert not mux.running()
        dev = Device(
            name="d1", host="d1", python=str(device_python), root=str(tmp_path / "roots" / "d1")
        )
        t = MuxTransport("d1", resolve_endpoint("d1"), Path(os.environ["EDGE_KNOWN_HOSTS"]))
        with t:
            assert AgentClient(dev, t).call("jobs") == []  # over a direct connection
        with open_client(dev) as client:
            assert not isinstance(client.transport, MuxTransport)
        assert [e for e in listener.heard() if e.startswith("data")] == []
    finally:
        listener.stop()
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(other, ignore_errors=True)


def test_the_server_refuses_a_client_of_another_uid(short_home: Path) -> None:
    """A mistake lets others reach the socket; the server still serves only its own uid."""
    mux.start(idle=60)
    sock = mux.socket_path()

    def client(w: int) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(sock))
            try:
                s.sendall(b'{"op": "quit"}\n')
                os.write(w, b"reply %d\n" % len(s.recv(65536)))
            except (ConnectionResetError, BrokenPipeError):  # closed before or while
                os.write(w, b"reply 0\n")  # it sent the request: unanswered either way

    short_home.chmod(0o755)
    sock.parent.chmod(0o711)
    sock.chmod(0o777)
    try:
        pid, fd = as_nobody(client)
        _, code = os.waitpid(pid, 0)
        report = os.read(fd, 4096)
        os.close(fd)
    finally:
        sock.parent.chmod(0o700)
        sock.chmod(0o600)
    assert code == 0 and report == b"reply 0\n"  # connected, then closed unanswered
    time.sleep(1.0)
    assert mux.running()  # the stranger's `quit` was not obeyed
