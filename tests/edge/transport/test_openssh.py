"""OpenSSHTransport on the real sshd fleet: one ControlMaster per device, paramiko as fallback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fleet_fixtures import JUMP_DEVICE
from sshfleet import SshFleet

from edge.transport.hostkey_policy import HostKeyError
from edge.transport.openssh import HOLD, OpenSSHTransport, master_argv, stop_master
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import resolve_endpoint


def _transport(fleet: SshFleet, name: str, known_hosts: Path | None = None) -> OpenSSHTransport:
    return OpenSSHTransport(name, resolve_endpoint(name), known_hosts or fleet.known_hosts_path)


def _children_named_ssh() -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=,comm=", "--ppid", str(os.getpid())], capture_output=True, text=True
    ).stdout
    return [int(p) for p, c in (line.split(None, 1) for line in out.splitlines()) if c == "ssh"]


def test_run_matches_paramiko(ssh_env: SshFleet) -> None:
    argv = ["sh", "-c", "echo out; echo err >&2; exit 3"]
    t = _transport(ssh_env, "d1")
    try:
        got = t.run(argv)
        assert t.master() and t._master is not None  # really the OpenSSH path
    finally:
        t.close()
    with SSHTransport("d1", resolve_endpoint("d1"), ssh_env.known_hosts_path) as p:
        want = p.run(argv)
    assert (got.exit_code, got.stdout, got.stderr) == (want.exit_code, want.stdout, want.stderr)
    assert got.exit_code == 3 and got.stdout.strip() == "out" and got.stderr.strip() == "err"


def test_stream_20mib_and_one_master_then_close(ssh_env: SshFleet, tmp_path: Path) -> None:
    data = os.urandom(1 << 20) * 20
    target = tmp_path / "streamed.bin"
    t = _transport(ssh_env, "d2")
    try:
        for _ in range(3):
            assert t.run(["true"]).ok
        stream = t.open_stream(["sh", "-c", f"cat > {target}"])
        for i in range(0, len(data), 1 << 20):
            stream.write(data[i : i + (1 << 20)])
        assert stream.finish(120).ok
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert t._master is not None
        masters = [p for p in _children_named_ssh() if p == t._master.pid]
        assert len(masters) == 1 and len(_children_named_ssh()) == 1
        control_dir = t.control.parent
        assert control_dir.is_dir()
        master = t._master
    finally:
        t.close()
    assert not control_dir.exists()
    assert master.poll() is not None


def _holds(t: OpenSSHTransport) -> int:
    """How many masters' own sessions (HOLD: a `cat` under an sshd session) the device runs."""
    out = t.run(["ps", "-eo", "pid=,ppid=,args="]).stdout
    rows = [line.split(None, 2) for line in out.splitlines() if len(line.split(None, 2)) == 3]
    session = ("sshd:", "sshd-session:")  # "sshd: user@notty" before OpenSSH 9.8
    sessions = {p for p, _, args in rows if args.startswith(session) and "@" in args}
    return sum(1 for _, ppid, args in rows if args == "cat" and ppid in sessions)


def _holds_become(t: OpenSSHTransport, want: int | None = None) -> int:
    """_holds once it is `want` (or, without one, once it stays put for 0.2 s); a session
    starts and ends a moment after its master does. 5 s at most."""
    deadline, last = time.monotonic() + 5, -1
    while True:
        now = _holds(t)
        if (now == want if want is not None else now == last) or time.monotonic() > deadline:
            return now
        last = now
        time.sleep(0.2 if want is None else 0.05)


def test_the_master_holds_a_session_of_its_own_until_it_closes(ssh_env: SshFleet) -> None:
    """A master that opened nothing after its login made its first channel wait ~40 ms for
    a delayed ACK; its own session keeps the exchange going, and ends with the master."""
    assert master_argv(_transport(ssh_env, "d1").endpoint, Path("/tmp/x"), [])[-1] == HOLD
    watcher, t = _transport(ssh_env, "d1"), _transport(ssh_env, "d1")
    try:
        before = _holds_become(watcher)  # the watcher's own master holds one
        assert t.run(["true"]).ok
        assert _holds_become(watcher, before + 1) == before + 1
        master = t._master
        t.close()
        assert master is not None and master.poll() is not None
        assert _holds_become(watcher, before) == before  # nothing left on the device
    finally:
        t.close()
        watcher.close()


def test_a_remote_command_in_the_users_ssh_config_does_not_stop_the_master(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = tmp_path / "ssh_config"  # the fleet's config, with a command for every host
    fleet = Path(os.environ["EDGE_SSH_CONFIG"]).read_text()
    mine.write_text("Host *\n    RemoteCommand echo hijacked\n\n" + fleet)
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(mine))
    t = _transport(ssh_env, "d1")
    try:
        got = t.run(["echo", "mine"])
        assert t._master is not None and not t._failed  # the OpenSSH path, not paramiko's
        assert got.stdout.strip() == "mine"
    finally:
        t.close()


def test_unknown_host_key_falls_back_to_paramikos_error(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(empty))
    server = ssh_env["d3"]
    endpoint = resolve_endpoint(server.host, server.port, server.user, str(ssh_env.client_key_path))
    t = OpenSSHTransport("raw", endpoint, empty)
    try:
        with pytest.raises(HostKeyError, match="unknown host key"):
            t.run(["true"])
        assert t._failed and t._master is None and t._dir is None
    finally:
        t.close()


def test_master_argv_keeps_strict_checking_and_fleet_known_hosts_first(
    ssh_env: SshFleet, tmp_path: Path
) -> None:
    t = _transport(ssh_env, "d1")
    argv = master_argv(t.endpoint, tmp_path / "c", t._known_hosts())
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=yes" in argv
    (known,) = [a for a in argv if a.startswith("UserKnownHostsFile=")]
    first = known.split("=", 1)[1].split(" ")[0].strip("\"'")
    assert first == str(ssh_env.known_hosts_path)


def test_proxyjump_device_through_the_bastion(ssh_env: SshFleet) -> None:
    t = _transport(ssh_env, JUMP_DEVICE)
    try:
        assert "-J" in master_argv(t.endpoint, Path("/tmp/x"), t._known_hosts())
        got = t.run(["echo", "behind"])
        assert t._master is not None and got.stdout.strip() == "behind"
    finally:
        t.close()


def test_the_openssh_path_never_imports_paramiko(ssh_env: SshFleet) -> None:
    """paramiko's import costs ~0.5 s of CPU: a push over the system ssh does without it."""
    known = str(ssh_env.known_hosts_path)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from edge.transport import mux\n"
        "from edge.transport.openssh import OpenSSHTransport\n"
        "from edge.transport.ssh_config import resolve_endpoint\n"
        "assert not mux.running()\n"
        f"t = OpenSSHTransport('d1', resolve_endpoint('d1'), Path({known!r}))\n"
        "out = t.run(['echo', 'via-openssh']).stdout.strip()\n"
        "t.close()\n"
        "print(out, 'paramiko' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["via-openssh", "False"]


# A process that handles SIGTERM as an OpenSSH client before 9.5 may: the first one only
# sets a flag that nothing looks at until the next wakeup; a later one ends it.
SECOND_TERM_ENDS = """
import signal, sys, time
seen = []
def on_term(*_):
    seen.append(1)
    if len(seen) >= 2:
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(60)
"""


def _child(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_a_master_that_missed_the_first_sigterm_ends_on_the_next() -> None:
    proc = _child(SECOND_TERM_ENDS)
    stop_master(proc)
    assert proc.returncode == 0  # ended by its own handler, not killed


def test_a_master_that_ignores_sigterm_is_killed() -> None:
    proc = _child(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    stop_master(proc)
    assert proc.returncode == -9
