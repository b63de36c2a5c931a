"""SSH transport over paramiko: OpenSSH client config, ProxyJump, strict host keys.

It runs argument lists (quoted here, never pasted raw into a shell line), streams output,
and writes files or byte ranges over SFTP. It knows nothing of models or the agent.
"""

from __future__ import annotations

import os
import posixpath
import select
import shlex
import socket
import time
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import Any

import paramiko
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_FAILED_CONNECT_FAILED

from edge.core.settings import settings
from edge.core.trace import span
from edge.transport.banner import BANNER_TIMEOUT, connect_error, quiet_paramiko
from edge.transport.base import (
    CommandResult,
    RangeTask,
    SessionRefused,
    Stream,
    Transport,
    TransportError,
)
from edge.transport.deadlink import DeadLinkError
from edge.transport.hostkey_policy import (
    HostKeyError,
    RefuseUnknown,
    fingerprint,
    host_key_name,
    load_known_hosts,
    refuse_revoked,
)
from edge.transport.liveness import WatchedTransport
from edge.transport.sftp_writer import ACK_TIMEOUT, ParallelUpload
from edge.transport.ssh_config import FAST_CIPHERS, Endpoint, load_ssh_config, parse_hop

DOWNLOAD_TIMEOUT = 30.0  # per SFTP read of a download: a dead link fails within it
quiet_paramiko()  # its tracebacks of a failed connection are not for the user


def cipher_preference(available: Sequence[str]) -> tuple[str, ...]:
    """paramiko's ciphers, reordered: EDGE_SSH_CIPHERS (comma-separated) or the fast
    ones first. Unknown names are ignored; the server still picks from the full list."""
    wanted = settings().ssh_ciphers
    first = list(wanted) if wanted else list(FAST_CIPHERS)
    first = [c for c in first if c in available]
    return tuple(first + [c for c in available if c not in first])


def _transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = WatchedTransport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = cipher_preference(options.ciphers)
    return transport


# What sshd answers a session it will not open: 2 past MaxSessions
_REFUSED_CODES = (OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_FAILED_CONNECT_FAILED)


class SSHTransport(Transport):
    """One paramiko connection to one device, reused for every channel of a command."""

    def __init__(
        self, device_name: str, endpoint: Endpoint, fleet_known_hosts: Path | None = None
    ) -> None:
        super().__init__(device_name)
        self.endpoint = endpoint
        self.fleet_known_hosts = fleet_known_hosts
        self._client: paramiko.SSHClient | None = None
        self._jumps: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        self._dead: str | None = None  # why the watchdog closed the last connection

    # ------------------------------------------------------------------ connection

    def _connect_one(self, ep: Endpoint, sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        known = load_known_hosts(ep, self.fleet_known_hosts)
        known.install(client, host_key_name(ep.hostname, ep.port))
        hop = None if ep is self.endpoint else ep.alias
        client.set_missing_host_key_policy(RefuseUnknown(self.device_name, known, hop))
        keys = [k for k in ep.key_files if os.path.isfile(k)]
        try:
            client.connect(
                ep.hostname,
                port=ep.port,
                username=ep.user,
                key_filename=keys or None,  # type: ignore[arg-type]  # a list works (stub: str)
                timeout=ep.connect_timeout,
                banner_timeout=min(BANNER_TIMEOUT, ep.connect_timeout),
                auth_timeout=ep.connect_timeout,
                sock=sock,
                allow_agent=True,
                look_for_keys=not keys,
                transport_factory=_transport,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            name = host_key_name(ep.hostname, ep.port)
            refuse_revoked(self.device_name, known, name, exc.key)
            where = [e.where for e in known.trusted(name) if e.key == exc.expected_key][:1]
            raise HostKeyError(
                f"{self.device_name}: HOST KEY CHANGED for {ep.label}: it offered "
                f"{fingerprint(exc.key)}, known_hosts has {fingerprint(exc.expected_key)}"
                f"{' (' + where[0] + ')' if where else ''}. "
                "This can be an attack; refusing to connect.",
                "If the board was reflashed, check the new key on the board, then run "
                f"edge fleet trust --to {self.device_name} --replace",
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise TransportError(
                f"{self.device_name}: authentication failed for {ep.label}: {exc}",
                "Give the device a key the board accepts: edge fleet add NAME --key FILE "
                "--replace (or ssh-copy-id), or load it into ssh-agent.",
            ) from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            answered = client.get_transport()  # None: the TCP connection itself failed
            client.close()
            raise connect_error(self.device_name, ep, hop, answered, exc) from exc
        transport = client.get_transport()
        assert isinstance(transport, WatchedTransport)
        transport.watch(f"{self.device_name} {ep.label}")  # a silent peer is noticed
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
        hops = [parse_hop(h, config) for h in ep.proxy_jump]
        targets = [(h.hostname, h.port) for h in hops[1:]] + [(ep.hostname, ep.port)]
        sock: Any = None
        for hop, target in zip(hops, targets):
            client = self._connect_one(hop, sock)
            self._jumps.append(client)
            transport = client.get_transport()
            assert transport is not None
            try:
                sock = transport.open_channel(
                    "direct-tcpip", target, ("127.0.0.1", 0), timeout=ep.connect_timeout
                )
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
            self._dead = None
        return self._client

    def close(self) -> None:
        for obj in (self._sftp, self._client, *reversed(self._jumps)):
            if obj is not None:
                try:
                    obj.close()
                except Exception:  # closing a dead link must not mask the real error
                    pass
        self._sftp, self._client, self._jumps = None, None, []

    def _lost(self, what: str, exc: BaseException | None = None) -> TransportError:
        """The error for a connection that failed while in use (closed here). When the
        watchdog declared the link dead, that is what the error says."""
        dead = [
            t.dead_reason
            for c in (self._client, *self._jumps)
            if c is not None
            and isinstance(t := c.get_transport(), WatchedTransport)
            and t.dead_reason
        ]
        self._dead = self._dead or (dead[0] if dead else None)  # for the other threads
        self.close()
        if self._dead:
            return DeadLinkError(
                f"{self.device_name}: {what}: {self._dead}",
                "Check the device's network and power, then run the command again (a push "
                "resumes where it stopped). EDGE_DEAD_LINK_SECONDS sets the silence allowed.",
            )
        detail = (str(exc) or type(exc).__name__) if exc is not None else ""
        return TransportError(f"{self.device_name}: {what}{': ' + detail if detail else ''}")

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
        except paramiko.SSHException as exc:
            if self._refused(transport, exc):
                raise SessionRefused(self.device_name) from exc
            raise self._lost("lost the connection", exc) from exc
        except (OSError, EOFError) as exc:
            raise self._lost("lost the connection", exc) from exc
        try:
            chan.exec_command(shlex.join(argv))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost("lost the connection", exc) from exc
        return chan

    @staticmethod
    def _refused(transport: paramiko.Transport, exc: paramiko.SSHException) -> bool:
        """Whether a session that did not open was refused by sshd (MaxSessions: it says
        2, "connect failed"), on a connection still up. paramiko keeps one failure per
        connection, so a thread whose open failed beside another's gets a bare message."""
        if isinstance(exc, paramiko.ChannelException):
            return exc.code in _REFUSED_CODES
        return transport.is_active() and str(exc) == "Unable to open channel."

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        chan = self._open_exec(argv)
        try:  # a dead link wakes a sendall waiting for window: the watchdog closes it
            if input:
                chan.sendall(input)
            chan.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(f"sending input to {argv[0]} failed", exc) from exc
        return self._collect(chan, argv, timeout)

    def _collect(
        self, chan: paramiko.Channel, argv: Sequence[str], timeout: float | None
    ) -> CommandResult:
        """Read a started command's output until it exits."""
        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and time.monotonic() > deadline:
                chan.close()
                raise TransportError(
                    f"{self.device_name}: {' '.join(argv[:4])} ... timed out after {timeout}s"
                )
            select.select([chan], [], [], 0.5)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                if _dropped(chan):
                    raise self._lost(f"the connection dropped while running {argv[0]}")
                break
        code = chan.recv_exit_status()
        chan.close()
        return CommandResult(
            list(argv), code, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return _ChannelStream(self, argv, self._open_exec(argv))

    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
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
                    if _dropped(chan):
                        raise self._lost("the connection dropped")
                    return
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    self.close()
                    raise TransportError(
                        f"{self.device_name}: no data for {idle_timeout:.0f}s; link presumed dead"
                    )
        finally:
            chan.close()

    # ------------------------------------------------------------------ files

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            client = self.connect()
            self._sftp = client.open_sftp()
            self._sftp.sock.settimeout(ACK_TIMEOUT)  # a device that stops answering
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

    def write_range(self, task: RangeTask, progress: Callable[[int], None] | None = None) -> int:
        return self.upload_ranges([task], 1, progress)

    def upload_ranges(
        self,
        tasks: Sequence[RangeTask],
        channels: int = 1,
        progress: Callable[[int], None] | None = None,
        on_done: Callable[[RangeTask], None] | None = None,
    ) -> int:
        """Several SFTP channels on this one connection, each taking the next task: a large
        file's byte ranges go out in parallel, which lifts the per-channel window limit
        (sshd's 2 MiB window caps one channel at about 2 MiB / RTT)."""
        client = self.connect()
        try:  # the calling thread borrows the transport's own SFTP channel unless
            # `on_done` (which may write through that one) is given
            shared = self.sftp() if on_done is None else None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost("cannot open SFTP", exc) from exc
        upload = ParallelUpload(client.open_sftp, shared, progress, on_done)
        error = upload.run(tasks, channels)
        if error is None:
            return upload.sent
        if isinstance(error, (OSError, paramiko.SSHException, EOFError)):
            raise self._lost(f"upload failed after {upload.sent} bytes", error) from error
        raise error

    def write_bytes(self, remote: str, data: bytes) -> None:
        try:
            sftp = self.sftp()
            self._makedirs(sftp, remote)
            tmp = f"{remote}.{os.urandom(6).hex()}.tmp"  # never shared by concurrent writers
            with sftp.open(tmp, "wbx") as f:
                f.write(data)
            sftp.posix_rename(tmp, remote)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise self._lost(f"cannot write {remote}", exc) from exc

    def put(self, local: Path, remote: str) -> None:
        partial = f"{remote}.{os.urandom(6).hex()}.partial"  # never shared
        self.write_bytes(partial, b"")  # created empty, with its parents
        self.write_range(RangeTask(local, partial, 0, local.stat().st_size))
        try:
            self.sftp().posix_rename(partial, remote)
        except (OSError, paramiko.SSHException) as exc:
            raise TransportError(f"{self.device_name}: cannot place {remote}: {exc}") from exc

    def download(self, remote: str, local: Path, max_bytes: int | None = None) -> int:
        """See Transport.download. The remote path is lstat'ed (a symlink is refused) and
        the open handle fstat'ed; every SFTP read waits at most DOWNLOAD_TIMEOUT s."""
        import stat  # imported here, not at the top: keeps this edit inside download

        from edge.transport.base import not_regular, receive

        what = f"{self.device_name}: {remote}"
        try:
            sftp = self.sftp()
            chan = sftp.get_channel()
            assert chan is not None
            before = chan.gettimeout()
            chan.settimeout(DOWNLOAD_TIMEOUT)
            try:
                mode = sftp.lstat(remote).st_mode or 0
                if not stat.S_ISREG(mode):
                    raise not_regular(what, mode)
                with sftp.open(remote, "rb") as f:
                    st = f.stat()
                    if not stat.S_ISREG(st.st_mode or 0):  # swapped after the lstat
                        raise not_regular(what, st.st_mode or 0)
                    if max_bytes is not None:  # pipelined reads, never past max + 1
                        f.prefetch(min(st.st_size or 0, max_bytes + 1))
                    return receive(f.read, local, max_bytes, what)
            finally:
                chan.settimeout(before)
        except (TimeoutError, paramiko.SSHException, EOFError) as exc:
            self.close()  # the SFTP session is in an unknown state
            raise TransportError(
                f"{what}: download failed: {exc or type(exc).__name__}",
                "Check the link to the device and run the command again.",
            ) from exc
        except OSError as exc:
            raise TransportError(f"{what}: download failed: {exc}") from exc


class _ChannelStream(Stream):
    """A Stream over one exec channel of the transport's connection."""

    def __init__(self, transport: SSHTransport, argv: Sequence[str], chan: paramiko.Channel):
        self.transport, self.argv, self.chan = transport, list(argv), chan
        self.early = b""  # stdout read by read_line past its line

    def read_line(self, limit: int, timeout: float) -> bytes:
        what = f"{self.transport.device_name}: {self.argv[0]}"
        deadline = time.monotonic() + timeout
        while b"\n" not in self.early:
            if len(self.early) > limit:
                raise TransportError(f"{what}: a reply line over {limit} bytes")
            if time.monotonic() > deadline:
                raise TransportError(f"{what}: no reply in {timeout}s")
            select.select([self.chan], [], [], 0.5)
            if self.chan.recv_ready():
                self.early += self.chan.recv(65536)
            elif self.chan.exit_status_ready() or self.chan.closed:
                if self.chan.recv_ready():
                    continue
                line, self.early = self.early, b""
                return line
        line, _, self.early = self.early.partition(b"\n")
        return line + b"\n"

    def write(self, data: bytes | memoryview) -> None:
        try:  # a dead link wakes a sendall waiting for window: the watchdog closes it
            self.chan.sendall(data if isinstance(data, bytes) else bytes(data))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if self.chan.exit_status_ready():  # the command ended: finish() says why
                raise BrokenPipeError(str(exc)) from exc
            raise self.transport._lost(f"sending to {self.argv[0]} failed", exc) from exc

    def finish(self, timeout: float | None = None) -> CommandResult:
        try:
            self.chan.shutdown_write()
        except (OSError, paramiko.SSHException, EOFError):
            pass
        result = self.transport._collect(self.chan, self.argv, timeout)
        if self.early:
            result.stdout = self.early.decode(errors="replace") + result.stdout
        return result

    def abort(self) -> None:
        self.chan.close()


def _dropped(chan: paramiko.Channel) -> bool:
    """Whether a channel ended because its connection did (paramiko's exit_status_ready()
    is true for both): no exit status, and the transport is gone."""
    transport = chan.get_transport()
    return chan.exit_status == -1 and (transport is None or not transport.is_active())


def scan_host_key(
    endpoint: Endpoint,
    device_name: str,
    fleet_known_hosts: Path | None = None,
    prefer: Sequence[str] = (),
) -> paramiko.PKey:
    """Fetch the key a device offers, without trusting it. Its ProxyJump hops are checked
    like any connection's (the user's known_hosts and `fleet_known_hosts`); key types in
    `prefer` (those already known for it) are asked for first, as a connection does."""
    probe = SSHTransport(device_name, endpoint, fleet_known_hosts)
    transport: WatchedTransport | None = None
    try:
        sock = probe._jump_socket()
        if sock is None:
            sock = socket.create_connection(
                (endpoint.hostname, endpoint.port), timeout=endpoint.connect_timeout
            )
        transport = WatchedTransport(sock)  # its watchdog never starts: only the banner log
        transport.banner_timeout = min(BANNER_TIMEOUT, endpoint.connect_timeout)
        try:
            options = transport.get_security_options()
            wanted = [
                n
                for t in prefer
                for n in (("rsa-sha2-512", "rsa-sha2-256") if t == "ssh-rsa" else (t,))
            ]
            plain = [t for t in options.key_types if "-cert-v01@" not in t]  # paramiko adds them
            wanted = [t for t in dict.fromkeys(wanted) if t in plain]
            if wanted:
                options.key_types = [*wanted, *(t for t in plain if t not in wanted)]
            transport.start_client(timeout=endpoint.connect_timeout)
            return transport.get_remote_server_key()
        finally:
            transport.close()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        if transport is not None and transport.banner.not_ssh():
            raise connect_error(device_name, endpoint, None, transport, exc) from exc
        raise TransportError(
            f"{device_name}: cannot reach {endpoint.label} to read its host key: {exc}"
        ) from exc
    finally:
        probe.close()
