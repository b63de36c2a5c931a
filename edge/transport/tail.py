"""A Stream whose first bytes go out on a thread of their own, so that its reply can be
read while they are still being written (a push's eager bytes: on a slow link their
write blocks until the link has taken them, and a device that does not need them
answers sooner than that)."""

from __future__ import annotations

import threading

from edge.transport.base import CommandResult, Stream, TransportError


class TailWriter(Stream):
    """`stream`, with `data` being written to it; any other write waits for those."""

    def __init__(self, stream: Stream, data: bytes) -> None:
        self.stream = stream
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, args=(data,), daemon=True)
        self.thread.start()

    def _write(self, data: bytes) -> None:
        try:
            self.stream.write(data)
        except BrokenPipeError:  # the command ended without reading them: its reply says why
            pass
        except BaseException as exc:  # raised by the next write
            self.error = exc

    def _written(self) -> None:
        self.thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def write(self, data: bytes | memoryview) -> None:
        self._written()
        self.stream.write(data)

    def read_line(self, limit: int, timeout: float) -> bytes:
        return self.stream.read_line(limit, timeout)

    def finish(self, timeout: float | None = None) -> CommandResult:
        self.thread.join(timeout)  # ends with the command at the latest (stdin closes)
        if self.thread.is_alive():
            self.abort()
            raise TransportError(f"the command took no input for {timeout}s")
        return self.stream.finish(timeout)

    def abort(self) -> None:
        self.stream.abort()
        self.thread.join()
