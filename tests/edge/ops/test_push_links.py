"""How many streams a push opens to one device: the window rule on the measured RTT, and
the streams opened beside the plan where the login says the link is long."""

from __future__ import annotations

import math

import pytest

from device_agent.protocol_core import Manifest, ManifestEntry
from edge.ops.push_links import (
    MAX_STREAMS,
    RTT_PER_CHANNEL,
    SPARE_RTT_MIN_S,
    SSHD_WINDOW,
    channels_by_rtt,
    spare_streams,
)
from edge.ops.push_stream import STREAM_MIN_BYTES


def test_one_channel_on_a_lan_more_as_the_round_trip_grows() -> None:
    assert channels_by_rtt(0.0, 8) == 1
    assert channels_by_rtt(0.002, 8) == 1  # a LAN: one channel fills a gigabit link twice
    for rtt in (0.03, 0.05, 0.1, 0.25):
        n = channels_by_rtt(rtt, 64)
        assert n > 1
        assert n * SSHD_WINDOW / rtt >= 0.95 * SSHD_WINDOW / RTT_PER_CHANNEL  # FILL_RATE
        assert (n - 1) * SSHD_WINDOW / rtt < SSHD_WINDOW / RTT_PER_CHANNEL  # no more
    assert channels_by_rtt(0.25, 4) == 4  # never past what the fan-out allows
    assert channels_by_rtt(0.05, 64) == math.ceil(0.05 / RTT_PER_CHANNEL)


class _Guess:
    """A transport whose login says this round trip."""

    def __init__(self, rtt: float | None) -> None:
        self.rtt = rtt

    def login_round_trip(self) -> float | None:
        return self.rtt


def _manifest(nbytes: int) -> Manifest:
    entry = ManifestEntry(path="big.bin", size=nbytes, sha256="0" * 64)
    return Manifest(name="m", kind="model", entries=[entry])


BIG = _manifest(64 << 20)


def test_spares_only_where_the_login_says_the_link_is_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EDGE_PUSH_CHANNELS", raising=False)
    for rtt in (None, 0.0, 0.004, SPARE_RTT_MIN_S * 0.9, float("nan")):
        assert spare_streams(_Guess(rtt), BIG, 1) == 0, rtt  # type: ignore[arg-type]
    for rtt in (SPARE_RTT_MIN_S, 0.05, 0.3):
        want = channels_by_rtt(rtt, MAX_STREAMS) - 1
        assert spare_streams(_Guess(rtt), BIG, 1) == want > 0, rtt  # type: ignore[arg-type]
    assert spare_streams(_Guess(0.05), _manifest(2 * STREAM_MIN_BYTES), 1) == 0  # type: ignore[arg-type]
    assert spare_streams(_Guess(0.05), BIG, 16) == 0  # type: ignore[arg-type]  # a fan-out
    assert spare_streams(_Guess(0.05), BIG, 4) == 1  # type: ignore[arg-type]  # 8 // 4 each
    monkeypatch.setenv("EDGE_PUSH_CHANNELS", "3")
    assert spare_streams(_Guess(0.05), BIG, 1) == 2  # type: ignore[arg-type]
