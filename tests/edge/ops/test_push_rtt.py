"""How a push learns its link's round trip: off the planning stream's own wait, with the
agent's start taken out; a ping only where that is not known or too short to trust."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshfleet import SshFleet
from tcpproxy import TcpProxy

import edge.ops.push
from device_agent.protocol_core import PushPlan
from edge.fleet.devices import Device
from edge.ops.push import PLAN_RTT_MIN_S, plan_round_trip, push
from edge.transport.openssh import OpenSSHTransport


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


def test_a_push_over_a_50ms_link_reads_the_round_trip_off_its_plan(
    slow_link: tuple[Device, TcpProxy], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    device, proxy = slow_link
    src = tmp_path / "model"
    src.mkdir()
    (src / "saved_model.pb").write_bytes(os.urandom(1000))
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
    caplog.set_level(logging.INFO, logger="edge.core.trace")
    (result,) = push(src, [device]).results
    assert result.status == "succeeded", result.error
    assert pings == [] and len(waits) == 1 and 0 < waits[0] < 5  # the agent said its time
    (line,) = [r.getMessage() for r in caplog.records if "round trip" in r.getMessage()]
    found = re.search(r"round trip ([\d.]+) ms \(plan\): (\d+) channels", line)
    assert found, line
    assert 40 <= float(found[1]) <= 100, line  # 50 ms, and what the device's exec adds
    assert int(found[2]) > 1
