"""edge.transport.tail.TailWriter over real processes: the reply is read while the tail
is still being written, later writes come after it, and a command that never reads it
ends the write instead of hanging it."""

from __future__ import annotations

import sys
import time

import pytest

from edge.transport.base import ProcessStream, TransportError
from edge.transport.tail import TailWriter

# answers a line at once, then sleeps before it reads (the tail waits in the pipe),
# then reads everything and reports what it got
READER = (
    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(%s);"
    "data = sys.stdin.buffer.read(); sys.stdout.write('%%d %%s' %% (len(data), data[-5:]))"
)
TAIL = b"x" * (4 << 20)  # far more than a pipe holds: its write blocks until read


def test_the_reply_comes_while_the_tail_is_still_written() -> None:
    stream = TailWriter(ProcessStream([sys.executable, "-c", READER % 1.0], "t"), TAIL)
    started = time.monotonic()
    assert stream.read_line(100, 10) == b"ready\n"
    assert time.monotonic() - started < 0.9  # not after the sleep that holds the tail
    assert stream.thread.is_alive()
    stream.write(b"END!!")  # waits for the tail: the bytes keep their order
    result = stream.finish(30)
    assert result.exit_code == 0 and result.stdout == f"{len(TAIL) + 5} b'END!!'"


def test_a_command_that_ends_unread_ends_the_tails_write() -> None:
    quits = "import sys; sys.stdout.write('bye\\n')"
    stream = TailWriter(ProcessStream([sys.executable, "-c", quits], "t"), TAIL)
    assert stream.read_line(100, 10) == b"bye\n"
    result = stream.finish(30)
    assert result.exit_code == 0 and not stream.thread.is_alive()


def test_a_command_that_never_reads_times_out_and_is_stopped() -> None:
    stream = TailWriter(ProcessStream([sys.executable, "-c", READER % 60], "t"), TAIL)
    assert stream.read_line(100, 10) == b"ready\n"
    with pytest.raises(TransportError, match="took no input"):
        stream.finish(0.5)
    assert stream.stream.proc.poll() is not None  # type: ignore[attr-defined]
