"""Byte ranges over one SFTP channel: a bounded window of write requests in flight.

paramiko's pipelined `SFTPFile.write` sends 32 KiB requests, each of which needs two SSH
packets (the channel carries at most 32 KiB per packet, headers included), and once 100
are outstanding it stops to collect every acknowledgement, which idles the link for a
round trip each time. Here each request fits one packet, acknowledgements are read as
they arrive (the oldest first when the window is full), and a file stays open across the
ranges a channel writes to it.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import paramiko
from paramiko.sftp import CMD_STATUS, CMD_WRITE, int64

from edge.transport.base import RangeTask

# OpenSSH channels take 32 KiB packets; paramiko keeps 64 bytes of that for the channel
# header; an SFTP write adds 29 bytes plus the handle (OpenSSH: 4) around the data.
WRITE_BYTES = 32768 - 64 - 64
WINDOW = 128  # requests in flight per channel (sshd's 2 MiB window also bounds them)
READ_BYTES = 1 << 20
CHANNEL_MIN_BYTES = 4 << 20  # another channel costs round trips to open: one per 4 MiB
# Seconds without a byte on a busy SFTP channel: the device's SFTP server is stuck. A dead
# link is noticed sooner, by the connection's watchdog (liveness.py), which closes it.
ACK_TIMEOUT = 300.0


class _Pipelining(Protocol):
    """The private SFTPClient calls a window of writes needs (types-paramiko omits them)."""

    def _async_request(self, fileobj: object, t: int, *args: Any) -> int: ...
    def _read_response(self, waitfor: int | None = None) -> Any: ...
    def _convert_status(self, msg: paramiko.Message) -> None: ...


def _pipelining(sftp: paramiko.SFTPClient) -> _Pipelining:
    return cast(_Pipelining, sftp)


class _Sink:
    """Takes the acknowledgements paramiko reads while it waits for another reply (such as
    opening the next file); remembers them and keeps any error."""

    def __init__(self, sftp: paramiko.SFTPClient) -> None:
        self.sftp = sftp
        self.error: BaseException | None = None
        self.acked: set[int] = set()

    def _async_response(self, t: int, msg: paramiko.Message, num: int) -> None:
        self.acked.add(num)
        if t != CMD_STATUS:
            self.error = paramiko.SFTPError(f"unexpected reply {t} to a write")
            return
        try:
            _pipelining(self.sftp)._convert_status(msg)
        except Exception as exc:  # the server refused the write (disk full, permissions)
            self.error = exc


class RangeWriter:
    """Writes RangeTasks through one SFTP channel; `close()` waits for every ack."""

    def __init__(
        self,
        sftp: paramiko.SFTPClient,
        progress: Callable[[int], None] | None = None,
        on_done: Callable[[RangeTask], None] | None = None,
        owns_channel: bool = False,
    ) -> None:
        self.sftp = sftp
        self.owns_channel = owns_channel  # closed after us: it closes the files itself
        self.progress = progress
        self.on_done = on_done
        self.sink = _Sink(sftp)
        self.files: dict[str, paramiko.SFTPFile] = {}
        # (request number, bytes, the task whose last write it is, or None)
        self.inflight: deque[tuple[int, int, RangeTask | None]] = deque()
        self.sent = 0

    def _handle(self, remote: str) -> bytes:
        f = self.files.get(remote)
        if f is None:
            f = self.files[remote] = self.sftp.open(remote, "r+b")
        return f.handle  # type: ignore[return-value]  # the server's bytes (stub: SFTPHandle)

    def _ack_oldest(self) -> None:
        num, nbytes, task = self.inflight.popleft()
        if num in self.sink.acked:
            self.sink.acked.discard(num)
        else:
            _pipelining(self.sftp)._read_response(num)  # raises on an error status
        if self.sink.error is not None:
            raise self.sink.error
        self.sent += nbytes
        if self.progress:
            self.progress(nbytes)
        if task is not None and self.on_done:
            self.on_done(task)

    def _drain_ready(self) -> None:
        while len(self.inflight) > WINDOW or (self.inflight and self.sftp.sock.recv_ready()):
            self._ack_oldest()

    def write(self, task: RangeTask) -> None:
        """Queue every byte of the task's range; its `on_done` runs once they are acked."""
        handle = self._handle(task.remote)
        pos = task.start
        with open(task.local, "rb") as src:
            src.seek(pos)
            while pos < task.end:
                block = src.read(min(READ_BYTES, task.end - pos))
                if not block:
                    raise OSError(f"{task.local} is shorter than expected ({pos} bytes)")
                view = memoryview(block)
                for i in range(0, len(block), WRITE_BYTES):
                    piece = view[i : i + WRITE_BYTES]
                    last = pos + len(piece) >= task.end
                    num = _pipelining(self.sftp)._async_request(
                        self.sink, CMD_WRITE, handle, int64(pos), piece
                    )
                    self.inflight.append((num, len(piece), task if last else None))
                    pos += len(piece)
                    self._drain_ready()
        if task.end == task.start and self.on_done:
            self.on_done(task)

    def close(self) -> None:
        """Wait for every outstanding acknowledgement, then close the files."""
        try:
            while self.inflight:
                self._ack_oldest()
        finally:
            files, self.files = list(self.files.values()), {}
            for f in files:
                f.close()

    def abandon(self) -> None:
        """After an error: close what is open without waiting for acks. On a channel of
        our own, nothing waits at all: closing the channel closes its files, and a close
        per file could each wait the whole ACK_TIMEOUT on a stuck server."""
        self.inflight.clear()
        # on our own channel, closing it closes the files (before they go: each would
        # send its own close on it)
        closers = [self.sftp.close] if self.owns_channel else [f.close for f in self.files.values()]
        for close in closers:
            try:
                close()
            except Exception:  # the channel may be gone; the error that got us here matters
                pass
        self.files = {}

    def __enter__(self) -> RangeWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()


class ParallelUpload:
    """RangeTasks over several SFTP channels of one connection, each channel taking the
    next task; the calling thread drives one of them."""

    def __init__(
        self,
        open_sftp: Callable[[], paramiko.SFTPClient],
        shared: paramiko.SFTPClient | None = None,
        progress: Callable[[int], None] | None = None,
        on_done: Callable[[RangeTask], None] | None = None,
    ) -> None:
        self.open_sftp = open_sftp
        self.shared = shared  # an open channel the calling thread uses (and leaves open)
        self.lock = threading.Lock()
        self.progress = self._locked(progress)
        self.on_done = self._locked(on_done)
        self.pending: queue.SimpleQueue[RangeTask] = queue.SimpleQueue()
        self.errors: list[BaseException] = []
        self.sent = 0

    def _locked(self, fn: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
        if fn is None:
            return None

        def call(arg: Any) -> None:
            with self.lock:
                fn(arg)

        return call

    def run(self, tasks: Sequence[RangeTask], channels: int) -> BaseException | None:
        """Send every task; returns the first error (once every channel stopped) or None."""
        for task in tasks:
            self.pending.put(task)
        nbytes = sum(t.end - t.start for t in tasks)
        n = max(1, min(channels, len(tasks), -(-nbytes // CHANNEL_MIN_BYTES)))
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(n - 1)]
        for t in threads:
            t.start()
        self._worker(self.shared)
        for t in threads:
            t.join()
        return self.errors[0] if self.errors else None

    def _worker(self, shared: paramiko.SFTPClient | None = None) -> None:
        try:
            sftp = shared or self.open_sftp()
            sftp.sock.settimeout(ACK_TIMEOUT)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self.errors.append(exc)
            return
        writer = RangeWriter(sftp, self.progress, self.on_done, owns_channel=shared is None)
        try:
            with writer:
                while not self.errors:
                    try:
                        task = self.pending.get_nowait()
                    except queue.Empty:
                        break
                    writer.write(task)
        except BaseException as exc:  # reported once all channels stopped
            self.errors.append(exc)
        finally:
            with self.lock:
                self.sent += writer.sent
            if shared is None:
                sftp.close()
