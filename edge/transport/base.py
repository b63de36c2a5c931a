"""The transport contract shared by `local` and SSH."""

from __future__ import annotations

import abc
import os
import stat
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from edge.core.errors import DeviceError

if TYPE_CHECKING:
    from edge.transport.ssh import SSHTransport
    from edge.transport.ssh_config import Endpoint


class TransportError(DeviceError):
    """The device could not be reached or a transfer failed."""


class HostKeyError(TransportError):
    """The device's host key is unknown or has changed."""


class SessionRefused(TransportError):
    """The device's sshd refused another session on the connection (its MaxSessions)."""

    def __init__(self, device: str) -> None:
        super().__init__(
            f"{device}: the device's sshd refused another session on the connection",
            "Use fewer channels (EDGE_PUSH_CHANNELS), or raise MaxSessions (10 by default) "
            "in the device's sshd_config.",
        )


@dataclass
class CommandResult:
    """What a remote command did: its argv, exit code and output."""

    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = 10) -> str:
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class RangeTask:
    """Bytes [start, end) of a local file, to the same range of a remote file."""

    local: Path
    remote: str
    start: int
    end: int


def copy_range(task: RangeTask, dst: Any, progress: Callable[[int], None] | None) -> int:
    """Copy the task's byte range from its local file into an open, seekable `dst`."""
    sent = 0
    with open(task.local, "rb") as src:
        src.seek(task.start)
        dst.seek(task.start)
        while sent < task.end - task.start:
            chunk = src.read(min(1 << 20, task.end - task.start - sent))
            if not chunk:
                break
            dst.write(chunk)
            sent += len(chunk)
            if progress:
                progress(len(chunk))
    return sent


DOWNLOAD_READ = 1 << 20


def receive(read: Callable[[int], bytes], local: Path, max_bytes: int | None, what: str) -> int:
    """Write what `read(n)` returns, until it returns b"", into `local`: created here with
    O_EXCL (never replacing a file, never through a symlink), mode 0600. With `max_bytes`,
    at most max_bytes + 1 bytes are read and a longer source is refused. On any failure
    the file is removed. `what` names the source in errors."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(local, flags, 0o600)
    except OSError as exc:
        raise TransportError(
            f"cannot create {local} for {what}: {exc.strerror}", "Pass a new, empty destination."
        ) from exc
    written = 0
    try:
        with os.fdopen(fd, "wb") as f:
            while True:
                want = (
                    DOWNLOAD_READ
                    if max_bytes is None
                    else min(DOWNLOAD_READ, max_bytes + 1 - written)
                )
                chunk = read(want)
                if not chunk:
                    return written
                if max_bytes is not None and written + len(chunk) > max_bytes:
                    raise TransportError(
                        f"{what} holds more than the {max_bytes} bytes expected; refused.",
                        "The device's files do not match what it reported: check the device.",
                    )
                f.write(chunk)
                written += len(chunk)
    except BaseException:
        try:
            os.unlink(local)
        except FileNotFoundError:
            pass
        raise


def not_regular(what: str, mode: int) -> TransportError:
    """The error for a remote path that is a symlink, directory or special file."""
    kind = (
        "a symlink"
        if stat.S_ISLNK(mode)
        else "a directory"
        if stat.S_ISDIR(mode)
        else "a special file"
    )
    return TransportError(
        f"{what} is {kind}, not a regular file; refused.",
        "The device's files do not match what it reported: check the device.",
    )


class Stream(abc.ABC):
    """A command whose stdin the caller writes as it goes (a push's byte stream)."""

    @abc.abstractmethod
    def write(self, data: bytes | memoryview) -> None:
        """Send every byte of `data` to the command's stdin."""

    @abc.abstractmethod
    def read_line(self, limit: int, timeout: float) -> bytes:
        """The command's next stdout line while it runs (b"" once its stdout ended); what
        follows the line stays for `finish`. A line longer than `limit` bytes, or none
        within `timeout` seconds, is a TransportError."""

    @abc.abstractmethod
    def finish(self, timeout: float | None = None) -> CommandResult:
        """End the input and wait for the command: its exit code and output."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Stop the command without waiting for it."""


class ProcessStream(Stream):
    """A Stream over a local process (the `local` device, or an `ssh` client)."""

    def __init__(self, argv: Sequence[str], what: str) -> None:
        import subprocess

        self.argv, self.what = list(argv), what
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise TransportError(f"{what}: cannot run {self.argv[0]!r}: {exc}") from exc
        assert self.proc.stdin is not None
        self.fd = self.proc.stdin.fileno()
        self.early = b""  # stdout read by read_line past its line

    def read_line(self, limit: int, timeout: float) -> bytes:
        import select

        assert self.proc.stdout is not None
        out = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.early:
            if len(self.early) > limit:
                raise TransportError(f"{self.what}: a reply line over {limit} bytes")
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                raise TransportError(f"{self.what}: no reply from {self.argv[0]} in {timeout}s")
            chunk = os.read(out, 65536)  # raw reads: communicate() reads the fd, not a buffer
            if not chunk:
                line, self.early = self.early, b""
                return line
            self.early += chunk
        line, _, self.early = self.early.partition(b"\n")
        return line + b"\n"

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]  # BrokenPipeError: see finish()

    def finish(self, timeout: float | None = None) -> CommandResult:
        import subprocess

        stdin, self.proc.stdin = self.proc.stdin, None  # communicate() must not flush it
        try:
            if stdin is not None:
                stdin.close()
        except OSError:  # the command already ended: its output says why
            pass
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.abort()
            raise TransportError(f"{self.what}: {self.argv[0]} timed out after {timeout}s") from exc
        return CommandResult(
            self.argv,
            self.proc.returncode,
            (self.early + out).decode(errors="replace"),
            err.decode(errors="replace"),
        )

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass


class Transport(abc.ABC):
    """Run argument lists (never shell strings) and copy files to one device."""

    # The round trips from open_stream to the first line of a command that answers at
    # once, where they are known (0: not known, and a push times a ping instead).
    reply_round_trips = 0

    def __init__(self, device_name: str) -> None:
        self.device_name = device_name

    def login_round_trip(self) -> float | None:
        """A round trip guessed from how long the login took, before any command ran;
        None where the transport cannot tell (a push then opens no stream early)."""
        return None

    @abc.abstractmethod
    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run argv on the device and wait for it."""

    @abc.abstractmethod
    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        """Run argv and yield its stdout line by line as it comes."""

    @abc.abstractmethod
    def put(self, local: Path, remote: str) -> None:
        """Copy one local file to a path on the device (parents created), atomically."""

    @abc.abstractmethod
    def download(self, remote: str, local: Path, max_bytes: int | None = None) -> int:
        """Copy one remote regular file to `local`, which this creates exclusively (see
        `receive`). A remote symlink or special file is refused; with `max_bytes`, so is a
        file longer than that, after reading at most max_bytes + 1 of its bytes.
        Returns the bytes written."""

    @abc.abstractmethod
    def write_range(self, task: RangeTask, progress: Callable[[int], None] | None = None) -> int:
        """Write one byte range into an existing remote file. Returns the bytes sent."""

    @abc.abstractmethod
    def write_bytes(self, remote: str, data: bytes) -> None:
        """Replace a small remote file atomically."""

    def upload_ranges(
        self,
        tasks: Sequence[RangeTask],
        channels: int = 1,
        progress: Callable[[int], None] | None = None,
        on_done: Callable[[RangeTask], None] | None = None,
    ) -> int:
        """Send every task; transports that can run several channels at once override
        this. `on_done` runs after a task's bytes are acknowledged."""
        sent = 0
        for task in tasks:
            sent += self.write_range(task, progress)
            if on_done:
                on_done(task)
        return sent

    def open_stream(self, argv: Sequence[str]) -> Stream:
        """Start argv with a stdin the caller writes as it goes."""
        raise NotImplementedError(f"{type(self).__name__} has no streams")

    def prepare(self) -> None:
        """Start connecting now, where a transport connects on first use and that can
        overlap other work (no-op elsewhere). A failure is left to the first command."""

    def close(self) -> None:
        """Release the connection (no-op where there is none)."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ParamikoFiles(Transport):
    """A transport to an SSH endpoint whose file transfers (and whatever else it cannot
    carry itself) go over a paramiko SSHTransport to the same device, made on first use:
    the OpenSSH master's and the multiplexer's transports. paramiko is imported only then.
    """

    def __init__(
        self, device_name: str, endpoint: Endpoint, fleet_known_hosts: Path | None = None
    ) -> None:
        super().__init__(device_name)
        self.endpoint = endpoint
        self.fleet_known_hosts = fleet_known_hosts
        self._ssh: SSHTransport | None = None

    def paramiko(self) -> SSHTransport:
        """The paramiko transport to the same device (made on first use)."""
        if self._ssh is None:
            from edge.transport.ssh import SSHTransport

            self._ssh = SSHTransport(self.device_name, self.endpoint, self.fleet_known_hosts)
        return self._ssh

    def put(self, local: Path, remote: str) -> None:
        self.paramiko().put(local, remote)

    def download(self, remote: str, local: Path, max_bytes: int | None = None) -> int:
        return self.paramiko().download(remote, local, max_bytes)

    def write_range(self, task: RangeTask, progress: Callable[[int], None] | None = None) -> int:
        return self.paramiko().write_range(task, progress)

    def write_bytes(self, remote: str, data: bytes) -> None:
        self.paramiko().write_bytes(remote, data)

    def upload_ranges(
        self,
        tasks: Sequence[RangeTask],
        channels: int = 1,
        progress: Callable[[int], None] | None = None,
        on_done: Callable[[RangeTask], None] | None = None,
    ) -> int:
        return self.paramiko().upload_ranges(tasks, channels, progress, on_done)

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
