"""A push's bytes as framed streams into the agent's `push-receive` (device_agent/receive.py):
one stream per channel, each a command on the device's one connection. No request waits
for an acknowledgement and no file costs a round trip; the device hashes what arrives in
order, so the commit need not read it again.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from device_agent.protocol_core import (
    PUSH_COMMIT_INDEX,
    PUSH_FRAME,
    PUSH_WHOLE_OFFSET,
    Manifest,
    PushPlan,
    PushReceived,
)
from edge.agent.client import AgentClient
from edge.agent.replies import decode, malformed
from edge.core.errors import UserError
from edge.transport.base import SessionRefused, Stream

FRAME_BYTES = 1 << 20
FRAME_BUF = PUSH_FRAME.size + FRAME_BYTES
RANGE_BYTES = 8 << 20  # a ranged blob's pieces, taken by whichever stream is free
STREAM_MIN_BYTES = 4 << 20  # another stream costs a command start: one per 4 MiB
PING_TIMEOUT_S = 30.0
RECORD_EVERY_S = 1.0  # how often the device records a ranged upload's finished ranges


@dataclass
class Piece:
    """Bytes [start, end) of blob `index` (its position in the header's list)."""

    index: int
    local: Path
    start: int
    end: int


def pieces(plan: PushPlan, local_for: Callable[[str], Path]) -> list[Piece]:
    """What to send: each missing blob from its resume offset, or its missing ranges cut
    into RANGE_BYTES pieces (those may go on different streams)."""
    out = []
    for i, need in enumerate(plan.missing):
        local = local_for(need.sha256)
        if not need.ranges:
            out.append(Piece(i, local, need.offset, need.size))
            continue
        out += [Piece(i, local, a, b) for start, end in need.ranges for a, b in split(start, end)]
    return out


def split(start: int, end: int) -> list[list[int]]:
    """[start, end) in RANGE_BYTES pieces (one empty piece for an empty range)."""
    return [[a, min(a + RANGE_BYTES, end)] for a in range(start, end, RANGE_BYTES)] or [
        [start, end]
    ]


def _send(
    stream: Stream,
    piece: Piece,
    progress: Callable[[int], None] | None,
    buf: memoryview | None = None,
) -> int:
    """Send `piece` as frames; `buf` (FRAME_BUF bytes, reused across the stream's pieces)
    holds each frame, its header first: no new 1 MiB object and no copy per frame."""
    sent = 0
    head = PUSH_FRAME.size
    view = buf if buf is not None else memoryview(bytearray(FRAME_BUF))
    with open(piece.local, "rb", buffering=0) as f:
        pos = f.seek(piece.start)
        while pos < piece.end:
            n = f.readinto(view[head : head + min(FRAME_BYTES, piece.end - pos)])
            if not n:
                raise OSError(f"{piece.local} is shorter than expected ({pos} bytes)")
            PUSH_FRAME.pack_into(view, 0, piece.index, pos, n)
            stream.write(view[: head + n])
            pos += n
            sent += n
            if progress:
                progress(n)
    return sent


class _Refused(Exception):
    """An extra stream the device's sshd refused: none of its pieces reached the device."""

    def __init__(self, taken: list[Piece], counted: int = 0) -> None:
        super().__init__(f"session refused; {len(taken)} pieces to send again")
        self.taken, self.counted = taken, counted  # counted: bytes shown as sent


class Spares:
    """Streams into `push-receive` opened beside the planning one, before its plan: on a
    long link their agents start while the device plans. Each waits for its header, and
    `send_streams` takes them before it opens any; what the plan does not need is closed
    unused."""

    def __init__(self, client: AgentClient, count: int) -> None:
        self.client, self.count = client, count
        self.streams: list[Stream] = []
        self.lock = threading.Lock()

    def open(self) -> None:
        """Open `count` streams, closing any opened before (whose agent may have been
        missing: see AgentClient.start_call)."""
        self.close()
        for _ in range(self.count):
            try:
                stream = self.client.transport.open_stream(self.client.argv("push-receive"))
            except SessionRefused:  # the streams opened later get refused the same way
                break
            with self.lock:
                self.streams.append(stream)

    def take(self) -> Stream | None:
        with self.lock:
            return self.streams.pop() if self.streams else None

    def close(self, keep: int = 0) -> None:
        """Close all but `keep` of the streams not taken."""
        with self.lock:
            self.streams, gone = self.streams[:keep], self.streams[keep:]
        for stream in gone:
            stream.abort()


def plan_header(
    manifest: Manifest, ranged_min: int | None, eager: tuple[str, bytes] | None = None
) -> bytes:
    """The header line of a push's first stream: the device plans, then receives. With
    `eager` (sha256, the blob's first bytes), it names them: they must follow it."""
    header: dict[str, object] = {"manifest": manifest.to_dict(), "plan": {"ranged_min": ranged_min}}
    if eager and eager[1]:
        header["eager"] = {"sha256": eager[0], "bytes": len(eager[1])}
    return _line(header)


def eager_bytes(
    manifest: Manifest, local_for: Callable[[str], Path], most: int
) -> tuple[str, bytes] | None:
    """The first `most` bytes of the manifest's largest blob, to send with the plan
    request: on a device that lacks it, the link carries them while the agent starts and
    plans (~50 ms on a LAN) instead of idling. None for `most` 0 or an empty payload."""
    blobs = {e.sha256: e.size for e in manifest.entries if e.size}
    if most <= 0 or not blobs:
        return None
    sha = max(sorted(blobs), key=lambda s: blobs[s])
    with open(local_for(sha), "rb") as f:
        data = f.read(min(most, blobs[sha]))
    return (sha, data) if data else None


def round_trip(client: AgentClient, first: Stream, pings: int = 1) -> float:
    """The link's round trip in seconds, timed on the planning stream (the agent answers
    each ping line at once): the quickest of `pings`."""
    best = float("inf")
    first.write(b"")  # what is still being written (a TailWriter's bytes) goes before the pings
    for _ in range(pings):
        sent = time.monotonic()
        first.write(_line({"ping": True}))
        line = first.read_line(1024, PING_TIMEOUT_S)
        best = min(best, time.monotonic() - sent)
        if not line.startswith(b'{"pong"'):
            raise malformed(client.device.name, "push-receive", f"no pong: {line[:80]!r}")
    return best


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def send_streams(
    client: AgentClient,
    manifest: Manifest,
    plan: PushPlan,
    local_for: Callable[[str], Path],
    channels: int,
    progress: Callable[[int], None] | None = None,
    first: Stream | None = None,
    spares: Spares | None = None,
) -> PushReceived:
    """Send every missing byte of `plan` over up to `channels` streams; what the device
    wrote and verified, summed over the streams. `first`: the stream that made the plan
    (`plan_header`), waiting for its go line; it carries bytes too. `spares`: streams
    opened beside it, taken before any is opened (the caller closes what is left)."""
    todo = pieces(plan, local_for)
    nbytes = sum(p.end - p.start for p in todo)
    n = max(1, min(channels, len(todo), -(-nbytes // STREAM_MIN_BYTES)))
    if spares is not None:
        spares.close(keep=n - 1)
    options = {"record_every": RECORD_EVERY_S, "commit": n == 1}
    header = _line(
        {"manifest": manifest.to_dict(), "blobs": [need.sha256 for need in plan.missing], **options}
    )
    pending: queue.SimpleQueue[Piece] = queue.SimpleQueue()
    for p in todo:
        pending.put(p)
    lock = threading.Lock()
    replies: list[PushReceived] = []
    errors: list[BaseException] = []

    def locked(nbytes: int) -> None:
        assert progress is not None
        with lock:
            progress(nbytes)

    threads: list[threading.Thread] = []

    def last_of_all(stream: Stream) -> None:
        """On the planning stream of a push of several, once its own pieces are sent: the
        commit-when-whole frame, so that this command commits (no command of its own for
        that) as soon as the device has every byte, without waiting for the host to see
        the others end (two round trips less). Once they have ended, what a refused one
        left, then the commit frame; else the end of input, which commits what is
        whole."""
        stream.write(PUSH_FRAME.pack(PUSH_COMMIT_INDEX, PUSH_WHOLE_OFFSET, 0))
        for t in threads:
            t.join()
        more = False
        for piece in _left(pending, errors):
            _send(stream, piece, progress and locked)
            more = True
        if more and not errors:
            stream.write(PUSH_FRAME.pack(PUSH_COMMIT_INDEX, 0, 0))

    def worker(stream: Stream | None = None) -> None:
        extra = stream is None
        try:
            then: Callable[[Stream], None] | None = None
            if stream is None:
                stream = spares.take() if spares is not None else None
                try:
                    if stream is None:
                        stream = client.transport.open_stream(client.argv("push-receive"))
                except SessionRefused:
                    return  # it took nothing: the others send it all
                start = header
            else:
                start = _line(options)
                then = last_of_all if n > 1 else None
            got = _one_stream(
                client, stream, start, pending, errors, progress and locked, then, extra
            )
            replies.append(got)
        except _Refused as refused:  # the others (the planning stream last) send its share
            for piece in refused.taken:
                pending.put(piece)
            if progress and refused.counted:
                locked(-refused.counted)
        except BaseException as exc:  # reported once every stream stopped
            errors.append(exc)

    threads += [threading.Thread(target=worker, daemon=True) for _ in range(n - 1)]
    for t in threads:
        t.start()
    worker(first)
    for t in threads:
        t.join()
    if errors:
        user = [e for e in errors if isinstance(e, UserError)]
        raise user[0] if user else errors[0]
    total = PushReceived()
    for r in replies:
        total.bytes_written += r.bytes_written
        total.bytes_verified += r.bytes_verified
        total.verified += r.verified
        total.problems += r.problems
        total.commit = r.commit
    return total


def _left(pending: queue.SimpleQueue[Piece], errors: list[BaseException]) -> Iterator[Piece]:
    """The pieces no stream has taken yet, one at a time, until a stream fails."""
    while not errors:
        try:
            yield pending.get_nowait()
        except queue.Empty:
            return


def _one_stream(
    client: AgentClient,
    stream: Stream,
    start: bytes,
    pending: queue.SimpleQueue[Piece],
    errors: list[BaseException],
    progress: Callable[[int], None] | None,
    then: Callable[[Stream], None] | None = None,
    extra: bool = False,
) -> PushReceived:
    """Send pieces from `pending` on `stream` until none are left; its reply. An `extra`
    stream (not the planning one) that sshd refused raises _Refused with what it took."""
    taken: list[Piece] = []
    counted = 0

    def counting(nbytes: int) -> None:
        nonlocal counted
        counted += nbytes
        assert progress is not None
        progress(nbytes)

    buf = memoryview(bytearray(FRAME_BUF))
    try:
        stream.write(start)
        for piece in _left(pending, errors):
            taken.append(piece)
            _send(stream, piece, progress and counting, buf)
        if then is not None:
            then(stream)
    except BrokenPipeError:  # the agent stopped reading: its reply says why
        pass
    except BaseException:
        stream.abort()
        raise
    try:
        result = stream.finish(timeout=600)
    except SessionRefused:
        if not extra:
            raise
        raise _Refused(taken, counted) from None
    data = client.decode_result(result, "push-receive")
    reply: PushReceived = decode(client.device.name, "push-receive", PushReceived, data)
    return reply
