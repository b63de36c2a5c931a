"""The real-sshd fleet and the delay/cut TCP proxy that transport tests build on."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from netlab.procs import children
from sshfleet import SshFleet, SshServer, find_sshd
from tcpproxy import TcpProxy

paramiko = pytest.importorskip("paramiko")
pytestmark = pytest.mark.skipif(find_sshd() is None, reason="OpenSSH server not installed")

PY = shlex.quote(sys.executable)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """d1 on loopback, a bastion, and d2 reachable only through the bastion."""
    with SshFleet(
        tmp_path_factory.mktemp("fleet"), ["d1"], bastion=True, behind_bastion=["d2"]
    ) as f:
        yield f


def run(client: paramiko.SSHClient, command: str, timeout: float = 10) -> tuple[int, str]:
    """Run `command` over SSH; (exit status, stdout)."""
    _, out, _ = client.exec_command(command, timeout=timeout)
    text = out.read().decode()
    return out.channel.recv_exit_status(), text


def test_layout(fleet: SshFleet) -> None:
    assert set(fleet.servers) == {"bastion", "d1", "d2"}
    assert set(fleet.devices) == {"d1", "d2"}
    hosts = {s.host for s in fleet.servers.values()}
    assert len(hosts) == 3 and all(h.startswith("127.") for h in hosts)
    known = fleet.known_hosts_path.read_text().splitlines()
    assert sorted(known) == sorted(s.known_hosts_line() for s in fleet.servers.values())
    config = paramiko.SSHConfig.from_path(str(fleet.ssh_config_path))
    d2 = config.lookup("d2")
    assert (d2["hostname"], d2["port"]) == (fleet["d2"].host, str(fleet["d2"].port))
    assert d2["proxyjump"] == "bastion" and "proxyjump" not in config.lookup("d1")
    assert Path(fleet["d1"].device_root).is_dir()


def test_exec_venv_python_on_every_server(fleet: SshFleet) -> None:
    for name, server in fleet.servers.items():
        with fleet.client(name) as client:
            status, out = run(client, f"{PY} -c 'import sys; print(sys.prefix, 6 * 7)'")
        assert status == 0, server.log_tail()
        assert out.split() == [sys.prefix, "42"]


def test_sftp_put_get(fleet: SshFleet, tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(300_000))
    remote = f"{fleet['d1'].device_root}/blob.bin"
    with fleet.client("d1") as client, client.open_sftp() as sftp:
        sftp.put(str(src), remote)
        sftp.get(remote, str(tmp_path / "back.bin"))
        assert sftp.stat(remote).st_size == 300_000
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_direct_tcpip_through_bastion(fleet: SshFleet) -> None:
    d2 = fleet["d2"]
    with fleet.client("bastion") as bastion:
        transport = bastion.get_transport()
        assert transport is not None
        channel = transport.open_channel("direct-tcpip", (d2.host, d2.port), ("127.0.0.1", 0))
        with fleet.client("d2", sock=channel) as client:
            assert run(client, f"{PY} -c 'print(1)'") == (0, "1\n")


def test_openssh_client_follows_proxyjump(fleet: SshFleet) -> None:
    argv = fleet.ssh_argv("d2", PY, "-c", shlex.quote("print('via bastion')"))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    assert (done.returncode, done.stdout) == (0, "via bastion\n"), done.stderr


def test_unknown_host_key_is_refused(fleet: SshFleet, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    d1 = fleet["d1"]
    client = paramiko.SSHClient()
    client.load_host_keys(str(empty))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(
            d1.host,
            port=d1.port,
            username=d1.user,
            key_filename=str(fleet.client_key_path),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def test_restart_keeps_address_and_host_key(fleet: SshFleet) -> None:
    d1 = fleet["d1"]
    before = (d1.pid, d1.known_hosts_line())
    client = fleet.client("d1")
    d1.restart()
    assert d1.pid != before[0] and d1.known_hosts_line() == before[1]
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        run(client, "true")  # restart drops live sessions by default
    client.close()
    with fleet.client("d1") as again:
        assert run(again, "echo ok") == (0, "ok\n")


def test_proxy_forwards_ssh_and_cut_drops_it(fleet: SshFleet) -> None:
    d1 = fleet["d1"]
    with TcpProxy(d1.host, d1.port) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port))
        client = fleet.client("d1", sock=sock)
        assert run(client, f"{PY} -c 'print(2)'") == (0, "2\n")
        assert proxy.bytes_up > 0 and proxy.bytes_down > 0 and proxy.live == 1
        assert proxy.cut() == 1
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            run(client, "true")
        client.close()
        with fleet.client("d1", sock=socket.create_connection(("127.0.0.1", proxy.port))) as c:
            assert run(c, "echo back") == (0, "back\n")
        assert proxy.connections == 2


def test_proxy_block_refuses_new_connections(fleet: SshFleet) -> None:
    d1 = fleet["d1"]
    with TcpProxy(d1.host, d1.port) as proxy:
        proxy.block()
        try:  # the RST may beat connect() itself
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
                assert s.recv(64) == b""
        except (ConnectionResetError, BrokenPipeError):
            pass
        proxy.unblock()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            assert s.recv(64).startswith(b"SSH-2.0-")
        assert proxy.connections == 1


def _echo_server() -> tuple[socket.socket, threading.Thread]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_proxy_delay_slows_round_trips(fleet: SshFleet) -> None:
    listener, thread = _echo_server()
    with listener, TcpProxy("127.0.0.1", listener.getsockname()[1], delay_ms=50) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
            for i in range(3):
                start = time.monotonic()
                s.sendall(b"ping%d" % i)
                assert s.recv(64) == b"ping%d" % i
                assert time.monotonic() - start >= 0.095
        thread.join(5)
        d1 = fleet["d1"]
        proxy.target_host, proxy.target_port = d1.host, d1.port
        with fleet.client("d1", sock=socket.create_connection(("127.0.0.1", proxy.port))) as c:
            start = time.monotonic()
            assert run(c, "true") == (0, "")
            assert time.monotonic() - start >= 0.1


def test_proxy_stop_ends_its_threads(fleet: SshFleet) -> None:
    before = threading.active_count()
    d1 = fleet["d1"]
    proxy = TcpProxy(d1.host, d1.port, delay_ms=5).start()
    clients = [
        fleet.client("d1", sock=socket.create_connection(("127.0.0.1", proxy.port)))
        for _ in range(3)
    ]
    proxy.stop()
    for client in clients:
        client.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert threading.active_count() == before


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_leaves_no_sshd(tmp_path: Path) -> None:
    with SshFleet(tmp_path, ["a", "b"], bastion=True) as fleet:
        client = fleet.client("a")
        assert run(client, "true")[0] == 0
        pids = [s.pid for s in fleet.servers.values()]
        sessions = children(fleet["a"].pid or 0)
        assert sessions and all(isinstance(p, int) for p in pids)
    client.close()
    assert all(s.pid is None and not s.running for s in fleet.servers.values())
    assert all(_dead(p) for p in [*pids, *sessions] if p is not None)


def test_failed_start_stops_the_rest(tmp_path: Path) -> None:
    fleet = SshFleet(tmp_path, ["ok", "clash"])
    with socket.create_server((fleet["clash"].host, 0)) as taken:
        fleet["clash"].port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="exited at start"):
            fleet.start()
    ok = fleet["ok"]
    assert not ok.running and ok.pid is None
    assert "Address already in use" in fleet["clash"].log_tail()


def test_server_alone_as_context_manager(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("")
    with SshServer("solo", tmp_path, keys, host="127.0.0.3") as server:
        assert server.running and server.port > 0
        pid = server.pid
    assert pid is not None and _dead(pid)


def test_ssh_env_points_at_session_fleet(request: pytest.FixtureRequest) -> None:
    try:
        fleet: SshFleet = request.getfixturevalue("ssh_env")
    except pytest.FixtureLookupError:
        pytest.skip("fleet_fixtures is not registered (pytest_plugins in conftest.py)")
    assert os.environ["EDGE_SSH_CONFIG"] == str(fleet.ssh_config_path)
    assert os.environ["EDGE_KNOWN_HOSTS"] == str(fleet.known_hosts_path)
    assert set(fleet.devices) == {"d1", "d2", "d3", "d4", "dj"}
    with fleet.client("d4") as client:
        assert run(client, f"{PY} -c 'print(4)'") == (0, "4\n")
