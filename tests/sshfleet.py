"""A fleet of real OpenSSH `sshd` servers on loopback addresses, for transport tests.

Every server runs the system sshd in the foreground with its own host key, config and
log (started the way the push benchmark's lab starts its devices: benchmarks/netlab/sshd.py),
logs in as the current user with one client key shared by the fleet, and can be
reached through a bastion (ProxyJump) via the generated OpenSSH client config.
"""

from __future__ import annotations

import getpass
import socket
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from netlab import sshd
from netlab.procs import children, terminate
from netlab.sshd import find_sshd, keygen

if TYPE_CHECKING:
    import paramiko

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
SSHD_SETTINGS = {  # on top of netlab.sshd.BASE_SETTINGS
    "MaxStartups": "100:30:200",
    "AllowTcpForwarding": "yes",
    "LogLevel": "VERBOSE",
    "ClientAliveInterval": "5",
}


def free_port(host: str) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.create_server((host, 0)) as s:
        return int(s.getsockname()[1])


class SshServer:
    """One real sshd on `host`:`port`, logging in as the current user."""

    def __init__(
        self,
        name: str,
        base_dir: Path,
        authorized_keys: Path,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        binary = find_sshd()
        if binary is None:
            raise RuntimeError("OpenSSH server (sshd) is not installed")
        self.sshd, self.name, self.host, self.port = binary, name, host, port
        self.user = getpass.getuser()
        self.dir = Path(base_dir).resolve() / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.authorized_keys = Path(authorized_keys).resolve()
        self.host_key_path = self.dir / "ssh_host_ed25519_key"
        if not self.host_key_path.exists():
            keygen(self.host_key_path, f"{name}-host")
        self.host_key_pub = self.host_key_path.with_suffix(".pub").read_text().strip()
        self.config_path, self.pid_path = self.dir / "sshd_config", self.dir / "sshd.pid"
        self.log_path = self.dir / "sshd.log"
        (self.dir / "device-root").mkdir(exist_ok=True)
        self.device_root = str(self.dir / "device-root")
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"SshServer({self.name!r}, {self.host}:{self.port}, pid={self.pid})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def known_hosts_line(self, host: str | None = None, port: int | None = None) -> str:
        """`[host]:port ssh-ed25519 AAAA...` for a known_hosts file; `host` and `port`
        name it at another address (a proxy in front of it)."""
        keytype, blob = self.host_key_pub.split()[:2]
        return f"[{host or self.host}]:{port or self.port} {keytype} {blob}"

    def log_tail(self, lines: int = 30) -> str:
        return sshd.log_tail(self.log_path, lines)

    def _write_config(self) -> None:
        sshd.write_config(
            self.config_path,
            f"{self.host}:{self.port}",
            self.host_key_path,
            self.pid_path,
            self.authorized_keys,
            AllowUsers=self.user,
            **SSHD_SETTINGS,
        )

    def start(self) -> None:
        """Start sshd and wait until it greets on its port (picks a free port if 0)."""
        if self.running:
            return
        auto_port = self.port == 0
        for _ in range(3):
            if auto_port:
                self.port = free_port(self.host)
            self._write_config()
            try:
                self._spawn_and_wait()
                return
            except RuntimeError:
                if not auto_port or "Address already in use" not in self.log_tail(5):
                    raise
        raise RuntimeError(f"sshd {self.name}: no free port after 3 tries\n{self.log_tail()}")

    def _spawn_and_wait(self) -> None:
        self._proc = sshd.spawn(self.config_path, self.log_path, self.sshd)
        self.pid = self._proc.pid
        try:
            sshd.wait_greets(
                self._proc, self.name, self.host, self.port, self.log_path, START_TIMEOUT_S
            )
        except RuntimeError:
            if self._proc.poll() is None:
                self.stop()
            self._proc, self.pid = None, None
            raise

    def stop(self, drop_sessions: bool = True) -> None:
        """SIGTERM the listener (then SIGKILL); with `drop_sessions`, end live connections too."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if drop_sessions and proc.poll() is None:
            # End connections first, so the listener (their parent) reaps them.
            terminate(children(proc.pid), STOP_TIMEOUT_S)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.pid = None

    def restart(self, drop_sessions: bool = True) -> None:
        """Stop and start again on the same address, port and host key."""
        self.stop(drop_sessions=drop_sessions)
        self.start()

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SshFleet:
    """Named sshd servers (127.0.0.10, .11, ...), an optional bastion, and client files.

    `servers` holds every server by name, the bastion included as "bastion"; `devices`
    leaves the bastion out. Names in `behind_bastion` (added to `names` if missing) listen
    on 127.0.1.x and are reached through `ProxyJump bastion` in `ssh_config_path`.
    """

    BASTION = "bastion"

    def __init__(
        self,
        base_dir: Path,
        names: Sequence[str],
        bastion: bool = False,
        behind_bastion: Sequence[str] = (),
    ) -> None:
        if behind_bastion and not bastion:
            raise ValueError("behind_bastion needs bastion=True")
        all_names = list(names) + [n for n in behind_bastion if n not in names]
        if len(set(all_names)) != len(all_names) or self.BASTION in all_names:
            raise ValueError(f"server names must be unique and not {self.BASTION!r}")
        self.base_dir = Path(base_dir).resolve()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.client_key_path = self.base_dir / "client_ed25519"
        if not self.client_key_path.exists():
            keygen(self.client_key_path, "edge-test-client")
        self.authorized_keys_path = self.base_dir / "authorized_keys"
        self.authorized_keys_path.write_text(self.client_key_path.with_suffix(".pub").read_text())
        self.known_hosts_path = self.base_dir / "known_hosts"
        self.ssh_config_path = self.base_dir / "ssh_config"
        self.behind_bastion = list(behind_bastion)
        self.servers: dict[str, SshServer] = {}
        self.bastion: SshServer | None = None
        if bastion:
            self.bastion = self._server(self.BASTION, "127.0.0.2")
        front = [n for n in all_names if n not in self.behind_bastion]
        for i, name in enumerate(front):
            self._server(name, f"127.0.0.{10 + i}")
        for i, name in enumerate(self.behind_bastion):
            self._server(name, f"127.0.1.{10 + i}")

    def _server(self, name: str, host: str) -> SshServer:
        server = SshServer(name, self.base_dir, self.authorized_keys_path, host=host)
        self.servers[name] = server
        return server

    @property
    def devices(self) -> dict[str, SshServer]:
        """Every server but the bastion."""
        return {n: s for n, s in self.servers.items() if n != self.BASTION}

    def __getitem__(self, name: str) -> SshServer:
        return self.servers[name]

    def start(self) -> None:
        """Start every server, then write known_hosts and ssh_config; all-or-nothing."""
        try:
            for server in self.servers.values():
                server.start()
        except BaseException:
            self.stop()
            raise
        self.write_client_files()

    def ensure_running(self) -> None:
        """Start again any server a test stopped (same port and host key)."""
        for server in self.servers.values():
            if not server.running:
                server.start()

    def stop(self) -> None:
        """Stop every server, even when one of them fails to stop."""
        errors: list[BaseException] = []
        for server in self.servers.values():
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def write_client_files(self) -> None:
        """(Re)write known_hosts and the OpenSSH client config for the current ports."""
        lines = [s.known_hosts_line() for s in self.servers.values()]
        self.known_hosts_path.write_text("\n".join(lines) + "\n")
        blocks = []
        for name, s in self.servers.items():
            jump = f"    ProxyJump {self.BASTION}\n" if name in self.behind_bastion else ""
            blocks.append(
                f"Host {name}\n    HostName {s.host}\n    Port {s.port}\n    User {s.user}\n"
                f"    IdentityFile {self.client_key_path}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts_path}\n"
                f"    StrictHostKeyChecking yes\n{jump}"
            )
        self.ssh_config_path.write_text("\n".join(blocks))

    def ssh_argv(self, name: str, *command: str) -> list[str]:
        """An OpenSSH client command line that runs `command` on server `name`."""
        return ["ssh", "-F", str(self.ssh_config_path), "-o", "BatchMode=yes", name, *command]

    def client(self, name: str, sock: Any = None, timeout: float = 10.0) -> paramiko.SSHClient:
        """A connected paramiko client for `name` (RejectPolicy, fleet known_hosts and key).

        Pass `sock` (a socket or a channel) to connect through a proxy or a bastion.
        """
        import paramiko

        server = self.servers[name]
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        key, t = str(self.client_key_path), timeout
        client.connect(server.host, server.port, server.user, key_filename=key, sock=sock,
                       look_for_keys=False, allow_agent=False,
                       timeout=t, banner_timeout=t, auth_timeout=t)  # fmt: skip
        return client

    def __enter__(self) -> SshFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
