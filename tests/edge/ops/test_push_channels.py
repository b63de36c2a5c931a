"""How many streams a push opens to one device: the window rule on the measured RTT."""

from __future__ import annotations

import math

from edge.ops.push import RTT_PER_CHANNEL, SSHD_WINDOW, channels_by_rtt


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
