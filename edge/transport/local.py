"""The built-in `local` device: the agent runs as a subprocess on this machine."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

from edge.transport.base import (
    CommandResult,
    ProcessStream,
    RangeTask,
    Stream,
    Transport,
    TransportError,
    copy_range,
    not_regular,
    receive,
)


class LocalTransport(Transport):
    """Runs argv with subprocess (no shell); `put` is a copy."""

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
        except FileNotFoundError as exc:
            raise TransportError(f"{self.device_name}: cannot run {argv[0]!r}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(
                f"{self.device_name}: {' '.join(argv[:3])} ... timed out after {timeout}s"
            ) from exc
        return CommandResult(
            list(argv),
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        proc = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        try:
            yield from proc.stdout
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return ProcessStream(argv, self.device_name)

    def write_range(self, task: RangeTask, progress: Callable[[int], None] | None = None) -> int:
        with open(Path(task.remote).expanduser(), "r+b") as dst:
            return copy_range(task, dst, progress)

    def write_bytes(self, remote: str, data: bytes) -> None:
        path = Path(remote).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.urandom(6).hex()}.tmp")  # never shared
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)

    def download(self, remote: str, local: Path, max_bytes: int | None = None) -> int:
        what = f"{self.device_name}: {remote}"
        try:  # O_NOFOLLOW: a symlink fails to open (ELOOP); O_NONBLOCK: a FIFO opens
            fd = os.open(
                Path(remote).expanduser(),
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise not_regular(what, stat.S_IFLNK) from exc
            raise TransportError(f"{what}: download failed: {exc.strerror}") from exc
        with os.fdopen(fd, "rb") as src:
            mode = os.fstat(src.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise not_regular(what, mode)
            try:
                return receive(src.read, local, max_bytes, what)
            except OSError as exc:
                raise TransportError(f"{what}: download failed: {exc}") from exc

    def put(self, local: Path, remote: str) -> None:
        dest = Path(remote).expanduser()
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{dest.name}.{os.urandom(6).hex()}.partial")  # never shared
        shutil.copyfile(local, partial)
        os.replace(partial, dest)
