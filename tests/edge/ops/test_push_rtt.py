"""How a push learns its link's round trip: off the planning stream's own wait, with the
agent's start taken out; a ping only where that is not known or too short to trust."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshfleet import SshFleet
from tcpproxy import TcpProxy

import edge.ops.push
from device_agent.protocol_core import PushPlan
from edge.agent.transports import open_transport
from edge.fleet.devices import Device
from edge.ops.push import PushResult, push
from edge.ops.push_links import PLAN_RTT_MIN_S, SPARE_RTT_MIN_S, plan_round_trip
from edge.ops.push_stream import RANGE_BYTES
from edge.transport.base import SessionRefused
from edge.transport.openssh import LOGIN_ROUND_TRIPS, OpenSSHTransport


class _Trips:
    def __init__(self, trips: int) -> None:
        self.reply_round_trips = trips


def _plan(agent_seconds: float) -> PushPlan:
    return PushPlan(tree_digest="0" * 64, agent_seconds=agent_seconds)


def test_the_round_trip_is_the_wait_less_the_agent_over_the_transports_trips() -> None:
    rtt = plan_round_trip(_Trips(2), 0.160, _plan(0.060))  # type: ignore[arg-type]
    assert rtt == pytest.approx(0.050)
    assert plan_round_trip(_Trips(3), 0.210, _plan(0.060)) == pytest.approx(0.050)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("trips", "waited", "agent"),
    [
        (0, 0.5, 0.05),  # a transport whose trips are not known
        (2, 0.5, 0.0),  # an agent that did not say (or a resident one)
        (2, 0.05, 0.06),  # an agent that says it took longer than the wait
        (2, 0.05 + 2 * PLAN_RTT_MIN_S * 0.9, 0.05),  # too short to tell from the exec
        (2, float("nan"), 0.05),
        # what a hostile or broken device may say (JSON decodes NaN and Infinity)
        (2, 0.5, float("nan")),
        (2, 0.5, float("inf")),
        (2, 0.5, -1.0),
    ],
)
def test_a_ping_times_what_the_plan_cannot(trips: int, waited: float, agent: float) -> None:
    assert plan_round_trip(_Trips(trips), waited, _plan(agent)) is None  # type: ignore[arg-type]


@pytest.fixture
def slow_link(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> Iterator[tuple[Device, TcpProxy]]:
    """d1 behind a proxy (no delay until the test sets one)."""
    d1 = ssh_env["d1"]
    with TcpProxy(d1.host, d1.port) as proxy:
        known = tmp_path / "known_hosts"
        known.write_text(d1.known_hosts_line("127.0.0.1", proxy.port) + "\n")
        monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
        monkeypatch.delenv("EDGE_PUSH_CHANNELS", raising=False)
        device = Device(
            name="far", host="127.0.0.1", port=proxy.port, key=str(ssh_env.client_key_path),
            python=str(device_python), root=str(tmp_path / "root"),
        )  # fmt: skip
        yield device, proxy


def _traced_push(
    src: Path, device: Device, caplog: pytest.LogCaptureFixture
) -> tuple[PushResult, str]:
    """A push that succeeded, and its trace's round-trip line."""
    caplog.set_level(logging.INFO, logger="edge.core.trace")
    (result,) = push(src, [device]).results
    assert result.status == "succeeded", result.error
    (line,) = [r.getMessage() for r in caplog.records if "round trip" in r.getMessage()]
    return result, line


def _model(tmp_path: Path, big_mib: int = 0) -> Path:
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(1000))
    if big_mib:
        (src / "big.bin").write_bytes(os.urandom(big_mib << 20))
    return src


def test_a_push_over_a_50ms_link_reads_the_round_trip_off_its_plan(
    slow_link: tuple[Device, TcpProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    device, proxy = slow_link
    src = _model(tmp_path)
    (installed,) = push(src, [device]).results  # installs the agent: no delay yet
    assert installed.status == "succeeded", installed.error
    pings: list[str] = []
    real_ping = edge.ops.push.round_trip

    def ping(*args: Any, **kwargs: Any) -> float:
        pings.append("ping")
        return real_ping(*args, **kwargs)

    monkeypatch.setattr(edge.ops.push, "round_trip", ping)
    waits: list[float] = []
    real_plan_rtt = edge.ops.push.plan_round_trip

    def seen(transport: OpenSSHTransport, waited: float, plan: PushPlan) -> float | None:
        waits.append(plan.agent_seconds)
        return real_plan_rtt(transport, waited, plan)

    monkeypatch.setattr(edge.ops.push, "plan_round_trip", seen)
    (src / "big.bin").write_bytes(os.urandom(12 << 20))
    proxy.delay_ms = 25
    result, line = _traced_push(src, device, caplog)
    assert pings == [] and len(waits) == 1 and 0 < waits[0] < 5  # the agent said its time
    found = re.search(r"round trip ([\d.]+) ms \(plan\): (\d+) channels", line)
    assert found, line
    assert 40 <= float(found[1]) <= 100, line  # 50 ms, and what the device's exec adds
    assert int(found[2]) > 1


def _login_guess(device: Device) -> float:
    transport = open_transport(device, openssh=True)
    try:
        assert isinstance(transport, OpenSSHTransport) and transport.master()
        guess = transport.login_round_trip()
    finally:
        transport.close()
    assert guess is not None
    return guess


def test_the_login_tells_a_long_link_from_a_short_one(slow_link: tuple[Device, TcpProxy]) -> None:
    device, proxy = slow_link
    near = _login_guess(device)
    proxy.delay_ms = 25
    far = _login_guess(device)
    assert near < SPARE_RTT_MIN_S <= far
    assert 0.040 <= far <= 0.150  # 50 ms a round trip, and the login's own CPU


def test_the_login_is_timed_by_its_socket_not_by_when_it_was_looked_at(
    slow_link: tuple[Device, TcpProxy],
) -> None:
    device, _ = slow_link
    transport = open_transport(device, openssh=True)
    try:
        assert isinstance(transport, OpenSSHTransport)
        transport.launch()
        time.sleep(1.0)  # hashing a big payload, say, before the push first waits
        assert transport.master()
        guess = transport.login_round_trip()
    finally:
        transport.close()
    assert guess is not None and guess * LOGIN_ROUND_TRIPS < 0.5


def _streams_opened(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each push-receive stream was opened (monotonic seconds)."""
    opened: list[float] = []
    real = OpenSSHTransport.open_stream

    def counting(self: OpenSSHTransport, argv: Any) -> Any:
        if "push-receive" in argv:
            opened.append(time.monotonic())
        return real(self, argv)

    monkeypatch.setattr(OpenSSHTransport, "open_stream", counting)
    return opened


def test_on_a_long_link_the_streams_open_beside_the_plan_and_none_is_wasted(
    slow_link: tuple[Device, TcpProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    planned: list[float] = []
    device, proxy = slow_link
    proxy.delay_ms = 25
    src = _model(tmp_path, 40)
    real_decode = edge.ops.push.decode

    def decode(*args: Any) -> Any:
        planned.append(time.monotonic())
        return real_decode(*args)

    monkeypatch.setattr(edge.ops.push, "decode", decode)
    opened = _streams_opened(monkeypatch)
    # the agent is not there yet: the streams opened before its install are opened again
    result, line = _traced_push(src, device, caplog)
    found = re.search(r"(\d+) channels, (\d+) opened beside the plan", line)
    assert found, line
    channels, spares = int(found[1]), int(found[2])
    assert spares >= 3, line
    # no eager bytes: on a long link they would only hold back the spares
    assert not [r for r in caplog.records if "with the plan request" in r.getMessage()]
    (plan_at,) = [t for t in planned if t > opened[0]][:1]
    early = [t for t in opened if t < plan_at]
    assert len(early) == 2 * (1 + spares)  # the planning stream and its spares, twice
    used = min(channels, 1 + math.ceil((40 << 20) / RANGE_BYTES))  # a stream per piece
    assert len(opened) - len(early) == max(0, used - 1 - spares)  # none opened twice
    digest = hashlib.sha256((src / "big.bin").read_bytes()).hexdigest()
    tree = Path(result.model_path or "")
    assert hashlib.sha256((tree / "big.bin").read_bytes()).hexdigest() == digest


def test_a_long_links_re_push_closes_the_streams_it_did_not_need(
    slow_link: tuple[Device, TcpProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device, proxy = slow_link
    src = _model(tmp_path, 12)
    (first,) = push(src, [device]).results
    assert first.status == "succeeded", first.error
    proxy.delay_ms = 25
    opened = _streams_opened(monkeypatch)
    (again,) = push(src, [device]).results
    assert again.status == "succeeded", again.error
    assert again.bytes_sent == 0 and again.tree_digest == first.tree_digest
    assert len(opened) > 1  # spares were opened, then closed unused


class _RefusingClient:
    """start_call refuses `refusals` times (sessions still held by closed spares)."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.calls = refusals, 0

    def start_call(self, *args: str, input: bytes, timeout: float) -> tuple[Any, Any, float]:
        self.calls += 1
        if self.calls <= self.refusals:
            raise SessionRefused("d1")
        return {"plan": True}, "stream", 0.1


def test_a_planning_stream_refused_for_its_spares_tries_again_once_they_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(edge.ops.push.time, "sleep", slept.append)
    client = _RefusingClient(2)
    got = edge.ops.push._plan_alone(client, b"{}\n", 0.05)  # type: ignore[arg-type]
    assert got == ({"plan": True}, "stream", 0.1) and client.calls == 3
    assert slept == pytest.approx([0.1, 0.2, 0.4])  # a round trip twice, then doubled
    stubborn = _RefusingClient(edge.ops.push.PLAN_ALONE_TRIES)
    with pytest.raises(SessionRefused):
        edge.ops.push._plan_alone(stubborn, b"{}\n", 0.05)  # type: ignore[arg-type]
    assert stubborn.calls == edge.ops.push.PLAN_ALONE_TRIES
