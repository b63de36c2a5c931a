"""How many channels a push takes to a device, and what tells it: the window rule on the
link's round trip, read off the planning stream's wait (or guessed from the login, to open
streams beside the plan)."""

from __future__ import annotations

import math

from device_agent.protocol_core import Manifest, PushPlan
from edge.core.settings import settings
from edge.ops.push_stream import STREAM_MIN_BYTES
from edge.transport import LocalTransport, Transport

CHANNEL_BUDGET = 8  # SFTP channels across all devices pushed at once
# sshd lets 2 MiB be in flight per channel (CHAN_SES_WINDOW_DEFAULT), so one channel
# carries at most 2 MiB per round trip: a channel for each RTT_PER_CHANNEL of round trip
# keeps FILL_RATE going (one channel up to ~7 ms, eight at 50 ms).
SSHD_WINDOW = 2 << 20
# 2.4 Gbit/s: over twice a board's gigabit port, as a window is not kept full (measured
# here, 4 channels at 51 ms RTT carried 55% of 4 windows per round trip). With the
# streams opened beside the plan, 8 channels at 50 ms beat 7 (the push bench's case 2,
# 7 pushes each in one loop: median 1.72 s against 1.93 s).
FILL_RATE = 300e6  # bytes/s
RTT_PER_CHANNEL = SSHD_WINDOW / FILL_RATE
# A device's streams when the round trip asks for many: at 50 ms, 12 and 16 (all opened
# beside the plan) took 1.85 and 1.94 s against 1.67 s for 8, each agent's start taking
# the CPU the others need.
MAX_STREAMS = 8


# A round trip read off the plan's own wait is used from this long up; a shorter one may
# be mostly the device's exec and the host's ssh start, so a ping times it (it then costs
# less than this).
PLAN_RTT_MIN_S = 0.020


def plan_round_trip(transport: Transport, waited: float, plan: PushPlan) -> float | None:
    """The round trip read off the planning stream: `waited` (stream open to plan) less
    the agent's own time, over the transport's round trips to a first reply. None where
    that is unknown or too short to trust (see PLAN_RTT_MIN_S): a ping times it."""
    trips = transport.reply_round_trips
    agent = plan.agent_seconds
    if trips <= 0 or not (0.0 < agent < waited) or not math.isfinite(waited):
        return None
    rtt = (waited - agent) / trips
    return rtt if rtt >= PLAN_RTT_MIN_S else None


def channels_by_rtt(rtt: float, most: int) -> int:
    """Channels for a link with this round trip (seconds): the window rule, at most `most`."""
    return max(1, min(most, math.ceil(rtt / RTT_PER_CHANNEL - 0.05)))


def channels_for(transport: Transport, devices: int = 1, most: int = 4) -> int:
    """Channels for one device: EDGE_PUSH_CHANNELS when set; else `most`, shared out of a
    budget of 8 when several devices are pushed at once (the stream path then takes as
    many as the window rule asks, up to that). Parallel channels beat the window limit
    of a long link; across many devices the links are already kept busy, and more
    channels only cost client CPU (measured: 16 devices, 4 channels each, ran ~15%
    slower than 1 each)."""
    if isinstance(transport, LocalTransport):
        return 1
    fixed = settings().push_channels
    if fixed:
        return fixed
    return max(1, min(most, CHANNEL_BUDGET // max(1, devices)))


# Streams are opened beside the plan where the login says each round trip took this long
# (their agents then start while the device plans): a LAN's login, CPU and all, stays
# well under it.
SPARE_RTT_MIN_S = 0.020


def spare_streams(transport: Transport, manifest: Manifest, devices: int) -> int:
    """Streams to open beside the planning one, before its plan: on a link whose login
    took long, as many more as the window rule asks for that login's round trip (the plan
    may want fewer: those are closed unused); else none."""
    guess = transport.login_round_trip()
    if guess is None or not math.isfinite(guess) or guess < SPARE_RTT_MIN_S:
        return 0
    if manifest.total_bytes() <= 2 * STREAM_MIN_BYTES:
        return 0
    return channels_by_rtt(guess, channels_for(transport, devices, MAX_STREAMS)) - 1
