"""SSH transport over paramiko: OpenSSH client config, ProxyJump, strict host keys.

It runs argument lists (quoted here, never pasted raw into a shell line), streams output,
and writes files or byte ranges over SFTP. It knows nothing of models or the agent.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import posixpath
import select
import shlex
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from ..trace import span
from .base import CommandResult, RangeTask, Transport, TransportError
from .sftp_writer import ParallelUpload

CONNECT_TIMEOUT = 15.0
# AES-GCM needs no separate MAC: measured here it costs ~35% less client CPU per byte
# than paramiko's default aes128-ctr + hmac-sha2-256 (benchmarks/RESULTS.md).
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def cipher_preference(available: Sequence[str]) -> tuple[str, ...]:
    """paramiko's ciphers, reordered: EDGE_SSH_CIPHERS (comma-separated) or the fast
    ones first. Unknown names are ignored; the server still picks from the full list."""
    wanted = os.environ.get("EDGE_SSH_CIPHERS")
    first = [c.strip() for c in wanted.split(",")] if wanted else list(FAST_CIPHERS)
    first = [c for c in first if c in available]
    return tuple(first + [c for c in available if c not in first])


def _transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = cipher_preference(options.ciphers)
    return transport


class HostKeyError(TransportError):
    """The device's host key is unknown or has changed."""


@dataclass
class Endpoint:
    """Where and how to connect, after applying the OpenSSH client config."""

    alias: str
    hostname: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key_files: list[str] = field(default_factory=list)
    proxy_jump: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    known_hosts_files: list[str] = field(default_factory=list)
    connect_timeout: float = CONNECT_TIMEOUT

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def ssh_config_path() -> Path:
    value = os.environ.get("EDGE_SSH_CONFIG")
    return Path(value).expanduser() if value else Path.home() / ".ssh" / "config"


def load_ssh_config() -> paramiko.SSHConfig:
    path = ssh_config_path()
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def resolve_endpoint(alias: str, port: int | None = None, user: str | None = None,
                     key: str | None = None, config: paramiko.SSHConfig | None = None
                     ) -> Endpoint:
    """Apply `Host` blocks of the client config to an alias; explicit values win."""
    cfg = (config or load_ssh_config()).lookup(alias)
    jump = cfg.get("proxyjump")
    known = cfg.get("userknownhostsfile")
    return Endpoint(
        alias=alias,
        hostname=cfg.get("hostname", alias),
        port=int(port or cfg.get("port", 22)),
        user=user or cfg.get("user") or getpass.getuser(),
        key_files=[os.path.expanduser(key)] if key else
        [os.path.expanduser(k) for k in cfg.get("identityfile", [])],
        proxy_jump=[] if not jump or jump == "none" else [j.strip() for j in jump.split(",")],
        proxy_command=cfg.get("proxycommand") if cfg.get("proxycommand") != "none" else None,
        known_hosts_files=[os.path.expanduser(p) for p in (known.split() if known else [])],
        connect_timeout=float(cfg.get("connecttimeout", CONNECT_TIMEOUT)),
    )


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_key_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class _Refuse(paramiko.MissingHostKeyPolicy):
    """Never trust silently: an unknown key stops the connection and is reported."""

    def __init__(self, device: str, trust_file: Path | None) -> None:
        self.device = device
        self.trust_file = trust_file
        self.seen: paramiko.PKey | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        self.seen = key
        raise HostKeyError(
            f"{self.device}: unknown host key for {hostname} "
            f"({key.get_name()} {fingerprint(key)}); refusing to connect.",
            f"If that fingerprint is the device's, trust it with: edge fleet trust {self.device}",
        )


def _known_hosts_files(ep: Endpoint, fleet_known_hosts: Path | None) -> list[str]:
    files = list(ep.known_hosts_files) or [str(Path.home() / ".ssh" / "known_hosts")]
    if fleet_known_hosts:
        files.append(str(fleet_known_hosts))
    return [f for f in files if os.path.isfile(f)]


class SSHTransport(Transport):
    """One paramiko connection to one device, reused for every channel of a command."""

    def __init__(self, device_name: str, endpoint: Endpoint,
                 fleet_known_hosts: Path | None = None) -> None:
        super().__init__(device_name)
        self.endpoint = endpoint
        self.fleet_known_hosts = fleet_known_hosts
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None

    # ------------------------------------------------------------------ connection

    def _connect_one(self, ep: Endpoint, sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for path in _known_hosts_files(ep, self.fleet_known_hosts):
            client.load_system_host_keys(path)
        client.set_missing_host_key_policy(_Refuse(self.device_name, self.fleet_known_hosts))
        keys = [k for k in ep.key_files if os.path.isfile(k)]
        try:
            client.connect(
                ep.hostname, port=ep.port, username=ep.user, key_filename=keys or None,
                timeout=ep.connect_timeout, banner_timeout=ep.connect_timeout,
                auth_timeout=ep.connect_timeout, sock=sock, allow_agent=True,
                look_for_keys=not keys, transport_factory=_transport,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{self.device_name}: HOST KEY CHANGED for {ep.label}: the device offered "
                f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}. "
                "This can be an attack; refusing to connect.",
                "If the board was reflashed, remove its old line from known_hosts, then run "
                f"edge fleet trust {self.device_name}",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise TransportError(
                f"{self.device_name}: authentication failed for {ep.label}: {exc}",
                "Give the device a key the board accepts: edge fleet add NAME --key FILE "
                "--replace (or ssh-copy-id), or load it into ssh-agent.",
            ) from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            raise TransportError(
                f"{self.device_name}: unreachable ({ep.label}): {exc or type(exc).__name__}",
                f"Check that the board is on and reachable: ssh -p {ep.port} "
                f"{ep.user}@{ep.hostname}",
            ) from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        sock_obj = transport.sock
        if isinstance(sock_obj, socket.socket):
            sock_obj.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return client

    def _jump_socket(self) -> Any:
        """A socket-like object to the endpoint: a direct-tcpip channel through the
        ProxyJump chain (each hop through the previous one), a ProxyCommand, or None."""
        ep = self.endpoint
        if not ep.proxy_jump:
            return paramiko.ProxyCommand(ep.proxy_command) if ep.proxy_command else None
        config = load_ssh_config()
        hops = [_parse_hop(h, config) for h in ep.proxy_jump]
        targets = [(h.hostname, h.port) for h in hops[1:]] + [(ep.hostname, ep.port)]
        sock: Any = None
        for hop, target in zip(hops, targets):
            client = self._connect_one(hop, sock)
            self._jumps.append(client)
            transport = client.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel("direct-tcpip", target, ("127.0.0.1", 0),
                                              timeout=ep.connect_timeout)
            except (paramiko.SSHException, OSError) as exc:
                self.close()
                raise TransportError(
                    f"{self.device_name}: jump host {hop.alias} could not reach "
                    f"{target[0]}:{target[1]}: {exc}",
                    "Check the ProxyJump chain in your SSH config.",
                ) from exc
        return sock

    def connect(self) -> paramiko.SSHClient:
        """Open the connection (through ProxyJump hosts or ProxyCommand) if not open."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()
        with span("ssh connect", self.device_name):
            self._client = self._connect_one(self.endpoint, self._jump_socket())
        return self._client

    def close(self) -> None:
        for obj in (self._sftp, self._client, *reversed(self._jumps)):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing a dead link must not mask the real error
                    pass
        self._sftp, self._client, self._jumps = None, None, []

    # ------------------------------------------------------------------ commands

    def open_channel(self, argv: Sequence[str]) -> paramiko.Channel:
        """Start argv and return its channel, for a caller that talks to it directly."""
        return self._open_exec(argv)

    def _open_exec(self, argv: Sequence[str]) -> paramiko.Channel:
        client = self.connect()
        transport = client.get_transport()
        assert transport is not None
        try:
            chan = transport.open_session(timeout=self.endpoint.connect_timeout)
            chan.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(f"{self.device_name}: lost the connection: {exc}") from exc
        return chan

    def run(self, argv: Sequence[str], input: bytes | None = None,
            timeout: float | None = None) -> CommandResult:
        chan = self._open_exec(argv)
        if input:
            chan.sendall(input)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline:
                chan.close()
                raise TransportError(
                    f"{self.device_name}: {' '.join(argv[:4])} ... timed out after {timeout}s")
            select.select([chan], [], [], 0.5)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() \
                    and not chan.recv_stderr_ready():
                break
            if chan.closed and not chan.exit_status_ready():
                self.close()
                raise TransportError(f"{self.device_name}: the connection dropped while "
                                     f"running {argv[0]}")
        code = chan.recv_exit_status()
        chan.close()
        return CommandResult(list(argv), code, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    def stream(self, argv: Sequence[str], idle_timeout: float | None = None) -> Iterator[str]:
        chan = self._open_exec(argv)
        chan.shutdown_write()
        buf = b""
        last = time.monotonic()
        try:
            while True:
                ready, _, _ = select.select([chan], [], [], 0.5)
                if chan.recv_ready():
                    data = chan.recv(65536)
                    last = time.monotonic()
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        yield line.decode(errors="replace") + "\n"
                    continue
                while chan.recv_stderr_ready():
                    chan.recv_stderr(65536)
                if chan.exit_status_ready() or chan.closed or chan.eof_received:
                    if buf:
                        yield buf.decode(errors="replace")
                    transport = chan.get_transport()
                    if not chan.exit_status_ready() and (transport is None
                                                         or not transport.is_active()):
                        self.close()
                        raise TransportError(f"{self.device_name}: the connection dropped")
                    return
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    self.close()
                    raise TransportError(
                        f"{self.device_name}: no data for {idle_timeout:.0f}s; link presumed dead")
        finally:
            chan.close()

    # ------------------------------------------------------------------ files

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = self.connect()
            self._sftp = client.open_sftp()
        return self._sftp

    def _makedirs(self, sftp: paramiko.SFTPClient, path: str) -> None:
        parts = []
        head = posixpath.dirname(path)
        while head and head not in ("/", "."):
            try:
                sftp.stat(head)
                break
            except FileNotFoundError:
                parts.append(head)
                head = posixpath.dirname(head)
        for d in reversed(parts):
            try:
                sftp.mkdir(d)
            except OSError:
                sftp.stat(d)  # raced with another writer: fine if it now exists

    def write_range(self, task: RangeTask, progress: Callable[[int], None] | None = None
                    ) -> int:
        return self.upload_ranges([task], 1, progress)

    def upload_ranges(self, tasks: Sequence[RangeTask], channels: int = 1,
                      progress: Callable[[int], None] | None = None,
                      on_done: Callable[[RangeTask], None] | None = None) -> int:
        """Several SFTP channels on this one connection, each taking the next task: a large
        file's byte ranges go out in parallel, which lifts the per-channel window limit
        (sshd's 2 MiB window caps one channel at about 2 MiB / RTT)."""
        client = self.connect()
        try:  # the calling thread borrows the transport's own SFTP channel unless
            # `on_done` (which may write through that one) is given
            shared = self.sftp() if on_done is None else None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise TransportError(f"{self.device_name}: cannot open SFTP: {exc}") from exc
        upload = ParallelUpload(client.open_sftp, shared, progress, on_done)
        exc = upload.run(tasks, channels)
        if exc is None:
            return upload.sent
        if isinstance(exc, (OSError, paramiko.SSHException, EOFError)):
            self.close()
            raise TransportError(f"{self.device_name}: upload failed after {upload.sent} "
                                 f"bytes: {exc}") from exc
        raise exc

    def write_bytes(self, remote: str, data: bytes) -> None:
        try:
            sftp = self.sftp()
            self._makedirs(sftp, remote)
            tmp = remote + ".tmp"
            with sftp.open(tmp, "wb") as f:
                f.write(data)
            sftp.posix_rename(tmp, remote)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.close()
            raise TransportError(f"{self.device_name}: cannot write {remote}: {exc}") from exc

    def put(self, local: Path, remote: str) -> None:
        partial = remote + ".partial"
        self.write_bytes(partial, b"")  # created empty, with its parents
        self.write_range(RangeTask(local, partial, 0, local.stat().st_size))
        try:
            self.sftp().posix_rename(partial, remote)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.device_name}: cannot place {remote}: {exc}") from exc

    def download(self, remote: str, local: Path) -> None:
        try:
            self.sftp().get(remote, str(local))
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.device_name}: download of {remote} failed: {exc}"
                                 ) from exc


def _parse_hop(hop: str, config: paramiko.SSHConfig) -> Endpoint:
    """`[user@]host[:port]` of a ProxyJump list, resolved through the client config."""
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    return resolve_endpoint(host, int(port) if port else None, user or None, config=config)


def scan_host_key(endpoint: Endpoint, device_name: str) -> paramiko.PKey:
    """Fetch the key a device offers (through its ProxyJump chain), without trusting it."""
    probe = SSHTransport(device_name, endpoint, None)
    try:
        sock = probe._jump_socket()
        if sock is None:
            sock = socket.create_connection((endpoint.hostname, endpoint.port),
                                            timeout=endpoint.connect_timeout)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=endpoint.connect_timeout)
            return transport.get_remote_server_key()
        finally:
            transport.close()
    except (OSError, paramiko.SSHException) as exc:
        raise TransportError(f"{device_name}: cannot reach {endpoint.label} to read its host "
                             f"key: {exc}") from exc
    finally:
        probe.close()
