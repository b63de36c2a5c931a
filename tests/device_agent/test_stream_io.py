"""device_agent.stream_io.wait_input over a real pipe read through a buffered reader, as
the agent reads sshd's stdin."""

from __future__ import annotations

import os
import threading
import time
from typing import BinaryIO, Iterator, List, Tuple

import pytest

from device_agent.stream_io import wait_input


@pytest.fixture
def pipe() -> Iterator[Tuple[BinaryIO, int]]:
    read, write = os.pipe()
    inp = os.fdopen(read, "rb")
    yield inp, write
    inp.close()
    try:
        os.close(write)
    except OSError:
        pass


def _wait(inp: BinaryIO, ready: List[bool]) -> List[bool]:
    """wait_input on a thread; its answer, or nothing if it had none within 5 s."""
    got: List[bool] = []
    thread = threading.Thread(target=lambda: got.append(wait_input(inp, lambda: ready[0])))
    thread.daemon = True
    thread.start()
    thread.join(5)
    return got


def test_bytes_already_in_the_readers_buffer_are_input(pipe: Tuple[BinaryIO, int]) -> None:
    """The pipe is empty (one read took it all into the buffer): waiting on the pipe
    alone would never end."""
    inp, write = pipe
    os.write(write, b"head" + b"rest")
    assert inp.read(4) == b"head"
    assert _wait(inp, [False]) == [False]
    assert inp.read(4) == b"rest"


def test_bytes_that_arrive_in_the_pipe_end_the_wait(pipe: Tuple[BinaryIO, int]) -> None:
    inp, write = pipe
    threading.Timer(0.1, lambda: os.write(write, b"x")).start()
    started = time.monotonic()
    assert _wait(inp, [False]) == [False]
    assert time.monotonic() - started >= 0.09 and inp.read(1) == b"x"


def test_the_end_of_input_ends_the_wait(pipe: Tuple[BinaryIO, int]) -> None:
    inp, write = pipe
    os.close(write)
    assert _wait(inp, [False]) == [False] and inp.read(1) == b""


def test_it_ends_when_ready_with_no_input_and_reads_none(pipe: Tuple[BinaryIO, int]) -> None:
    inp, write = pipe
    ready = [False]
    threading.Timer(0.1, lambda: ready.__setitem__(0, True)).start()
    assert _wait(inp, ready) == [True]
    os.write(write, b"later")
    assert inp.read(5) == b"later"  # the descriptor is blocking again, nothing was lost
