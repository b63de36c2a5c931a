"""OpenSSH's own client as the data path: one master connection per device
(ControlMaster), every command and stream a channel on it through `ssh -S`.

The system `ssh` does its crypto in C, in its own process: a fan-out to many devices runs
on every core, where paramiko's threads share one GIL. It checks host keys against the
same known_hosts files as paramiko (the fleet's first), strictly, with BatchMode (no
prompt). When the master cannot start (no `ssh`, an option it refuses, a key it lacks,
an unknown host key), this transport is the paramiko one, and paramiko's error is the
one a user sees. paramiko is imported only then, or for SFTP: its import alone costs
~0.5 s of CPU, which a push to many devices would otherwise spend before connecting.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path

from edge.core.settings import settings
from edge.core.trace import span
from edge.transport.base import (
    CommandResult,
    ParamikoFiles,
    ProcessStream,
    SessionRefused,
    Stream,
    TransportError,
)
from edge.transport.deadlink import DeadLinkError
from edge.transport.ssh_config import FAST_CIPHERS, Endpoint, ssh_config_path

_log = logging.getLogger(__name__)
# paramiko's key exchange: the master offers it first, so both paths cost the same
FAST_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org")


# How long a master told to stop may take before it is killed (see stop_master), and how
# often it is told again meanwhile.
MASTER_EXIT_GRACE_S = 0.3
MASTER_RESIGNAL_S = 0.02
# What the mux client says when sshd refuses a session (MaxSessions) on the connection.
SESSION_REFUSED = "Session open refused"
# The master holds a session of its own, open on the device until its stdin (a pipe of
# ours) closes. Without it, the first channel on a master that logged in a moment ago
# waits ~40 ms: sshd's host-keys message is held (Nagle) behind its unacknowledged
# USERAUTH_SUCCESS, and the channel's confirmation behind that, each until the client's
# delayed ACK, because a master that opens nothing has nothing to say after the login.
# Opening a session at once, as scp's own connection does, keeps the exchange going.
# Measured on OpenSSH 9.2: the first command on a new master 50 ms -> 8 ms. It takes one
# of sshd's MaxSessions (10 by default); a push opens at most 8, those opened beside its
# plan included (push_links.MAX_STREAMS).
HOLD = "exec cat >/dev/null"
# The round trips of a master's login: TCP's handshake, the version lines, KEXINIT, the
# key exchange, NEWKEYS with the service request, then userauth "none", the public key's
# query and its signature. Measured: 0.40 s at 50 ms RTT, 0.06 s on loopback.
LOGIN_ROUND_TRIPS = 8


def _quoted(path: str) -> str:
    return f'"{path}"' if " " in path else path


def master_argv(endpoint: Endpoint, control: Path, known_hosts: Sequence[str]) -> list[str]:
    """The `ssh` command line of the master connection to `endpoint`."""
    s = settings()
    argv = ["ssh"]
    if s.ssh_config:
        argv += ["-F", str(ssh_config_path())]
    ciphers = ",".join(s.ssh_ciphers or FAST_CIPHERS)
    argv += [
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=" + " ".join(_quoted(k) for k in known_hosts),
        "-o", "ControlMaster=yes",
        "-o", f"ControlPath={control}",
        "-o", "ControlPersist=no",
        "-o", f"ConnectTimeout={max(1, int(endpoint.connect_timeout))}",
        "-o", f"ServerAliveInterval={max(1, round(s.dead_link_seconds / 3))}",
        "-o", "ServerAliveCountMax=3",
        "-o", f"Ciphers=^{ciphers}",
        "-o", f"KexAlgorithms=^{','.join(FAST_KEX)}",
        "-o", f"HostName={endpoint.hostname}",
        "-p", str(endpoint.port),
        "-l", endpoint.user,
    ]  # fmt: skip
    if endpoint.proxy_jump:
        argv += ["-J", ",".join(endpoint.proxy_jump)]
    elif endpoint.proxy_command:
        argv += ["-o", f"ProxyCommand={endpoint.proxy_command}"]
    for key in endpoint.key_files:
        if os.path.isfile(key):
            argv += ["-i", key]
    # The master's own session (see HOLD) and no command of the user's ssh_config
    return [*argv, "-T", "-o", "RemoteCommand=none", endpoint.alias, HOLD]


def stop_master(master: subprocess.Popen[bytes]) -> None:
    """End a master whose sessions have all ended (nothing is lost if it must be killed).

    SIGTERM, again every MASTER_RESIGNAL_S: an OpenSSH client before 9.5 sleeps in a plain
    poll(2), so a signal handled while it was busy (closing the last channel, as it is
    right after a push) is only acted on at its next wakeup, which may be the keepalive's,
    seconds away; a second signal finds it in poll(2) and ends it. Measured on 9.2, 16
    masters stopped at once: 1 to 3 of them hung each time for the whole grace."""
    deadline = time.monotonic() + MASTER_EXIT_GRACE_S
    while master.poll() is None:
        left = deadline - time.monotonic()
        if left <= 0:
            master.kill()
            master.wait()
            return
        master.terminate()
        try:
            master.wait(min(left, MASTER_RESIGNAL_S))
        except subprocess.TimeoutExpired:
            pass


class OpenSSHTransport(ParamikoFiles):
    """A transport whose commands and streams ride an OpenSSH master connection; SFTP
    (downloads, small files) and line streams are a paramiko SSHTransport's, connected
    only if they are used (and everything is, once the master cannot start)."""

    # the master opens the channel (one round trip), then sends the command and its input
    # without waiting for the exec's reply; the answer comes back: two in all
    reply_round_trips = 2

    def __init__(
        self, device_name: str, endpoint: Endpoint, fleet_known_hosts: Path | None = None
    ) -> None:
        super().__init__(device_name, endpoint, fleet_known_hosts)
        self._dir: str | None = None
        self._master: subprocess.Popen[bytes] | None = None
        self._ready = False  # the master has logged in (its control socket is there)
        self._launched = 0.0
        self._launched_ns = 0  # wall clock: the control socket's mtime says when it came
        self._login_s: float | None = None
        self._failed = shutil.which("ssh") is None

    @property
    def control(self) -> Path:
        assert self._dir is not None
        return Path(self._dir) / "c"

    def _known_hosts(self) -> list[str]:
        files = [str(self.fleet_known_hosts)] if self.fleet_known_hosts else []
        return files + [f for f in self.endpoint.known_hosts_files if f not in files]

    def master(self) -> bool:
        """Start the master connection once (or wait for the one `launch` began); False
        (paramiko from now on) if it fails."""
        if self._failed:
            return False
        if self._ready:
            assert self._master is not None
            if self._master.poll() is None:
                return True
            raise TransportError(f"{self.device_name}: the SSH connection closed")
        with span("openssh master", self.device_name):
            return (self._master is not None or self._launch()) and self._wait_master()

    def prepare(self) -> None:
        self.master()

    def launch(self) -> None:
        """Begin the master's login without waiting for it: the next command waits."""
        if not self._failed and self._master is None:
            self._launch()

    def _launch(self) -> bool:
        self._dir = tempfile.mkdtemp(prefix="edge-ssh-")  # private (0700), short for a socket
        argv = master_argv(self.endpoint, self.control, self._known_hosts())
        log = open(Path(self._dir) / "log", "wb")
        try:
            self._master = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log
            )
        except OSError as exc:
            return self._give_up(f"cannot run ssh: {exc}")
        finally:
            log.close()
        self._launched = time.monotonic()
        self._launched_ns = time.time_ns()
        return True

    def _wait_master(self) -> bool:
        assert self._master is not None and self._dir is not None
        deadline = self._launched + self.endpoint.connect_timeout + 5
        while not self.control.exists():
            if self._master.poll() is not None or time.monotonic() > deadline:
                why = (Path(self._dir) / "log").read_text(errors="replace").strip()
                return self._give_up(why or "the master connection did not start")
            time.sleep(0.002)  # ssh makes the socket once it has logged in
        self._ready = True
        try:  # when the socket was made, not when this looked (that may be much later)
            login = (self.control.stat().st_mtime_ns - self._launched_ns) / 1e9
            self._login_s = login if 0 < login < self.endpoint.connect_timeout + 5 else None
        except OSError:
            self._login_s = None
        return True

    def login_round_trip(self) -> float | None:
        return None if self._login_s is None else self._login_s / LOGIN_ROUND_TRIPS

    def _give_up(self, why: str) -> bool:
        _log.debug("%s: OpenSSH master failed, using paramiko: %s", self.device_name, why)
        self._stop_master()
        self._failed = True
        return False

    def _client_argv(self, argv: Sequence[str]) -> list[str]:
        # ProxyCommand=false: a client whose session the master could not open would
        # otherwise log in again by itself, on a connection of its own
        return [
            "ssh", "-S", str(self.control), "-o", "ControlMaster=no", "-o", "BatchMode=yes",
            "-o", "ProxyCommand=false", "-T", self.endpoint.alias, "--", shlex.join(argv),
        ]  # fmt: skip

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        if not self.master():
            return self.paramiko().run(argv, input, timeout)
        stream = self.open_stream(argv)
        if input:
            try:
                stream.write(input)
            except BrokenPipeError:  # the command ended early: its output says why
                pass
        return self._checked(stream.finish(timeout))

    def open_stream(self, argv: Sequence[str]) -> Stream:
        if not self.master():
            return self.paramiko().open_stream(argv)
        return _MuxStream(self, self._client_argv(argv), argv)

    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        return self.paramiko().stream(argv, idle_timeout)

    def _checked(self, result: CommandResult) -> CommandResult:
        """ssh's own failure (255, the master gone) is a transport error; a master that
        heard nothing for the dead-link bound says so, as paramiko's watchdog does."""
        if result.exit_code != 255 or self._master is None:
            return result
        if SESSION_REFUSED in result.stderr:  # the connection is fine: sshd said no
            raise SessionRefused(self.device_name)
        try:  # a client that lost its master ends a moment before the master itself
            self._master.wait(2)
        except subprocess.TimeoutExpired:
            return result
        log = Path(self._dir) / "log" if self._dir else None
        why = log.read_text(errors="replace").strip() if log and log.is_file() else ""
        if "Timeout" in why or "not responding" in why:
            raise DeadLinkError(
                f"{self.device_name}: {result.argv[0]}: no reply for "
                f"{settings().dead_link_seconds:g} s; the link is dead",
                "Check the device's network and power, then run the command again (a push "
                "resumes where it stopped). EDGE_DEAD_LINK_SECONDS sets the silence allowed.",
            )
        raise TransportError(
            f"{self.device_name}: the SSH connection dropped: {why or result.tail(2)}",
            "Check the link to the device and run the command again (a push resumes).",
        )

    def _stop_master(self) -> None:
        if self._master is not None:
            if self._master.stdin is not None:
                self._master.stdin.close()  # ends its own session (HOLD) on the device
            if self._master.poll() is None:
                stop_master(self._master)
        self._master = None
        self._ready = False
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def close(self) -> None:
        self._stop_master()
        super().close()


class _MuxStream(ProcessStream):
    """An `ssh -S` client: a channel on the master; its result checked for ssh's own 255."""

    def __init__(self, transport: OpenSSHTransport, ssh_argv: list[str], argv: Sequence[str]):
        super().__init__(ssh_argv, transport.device_name)
        self.transport = transport
        self.argv = list(argv)

    def finish(self, timeout: float | None = None) -> CommandResult:
        return self.transport._checked(super().finish(timeout))
