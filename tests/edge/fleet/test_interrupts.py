"""`each` under Ctrl-C: it raises at once, not after its workers end, and the registry
knows which device's job was started, which ended, and where nothing started."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import pytest

from edge.fleet import interrupts
from edge.fleet.devices import Device
from edge.fleet.group import each


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    interrupts.clear()
    yield
    interrupts.clear()


def test_each_stops_at_once_and_reports_what_was_started() -> None:
    release = threading.Event()
    blocked = threading.Barrier(3)  # both workers, and the test
    dev3_done = threading.Event()
    hooks: list[str] = []
    interrupts.on_interrupt(lambda: hooks.append("stop"))

    def work(device: Device) -> str:
        if device.name == "dev1":
            interrupts.job_started("dev1", "j-1")
        if device.name == "dev3":
            interrupts.job_started("dev3", "j-3")
            interrupts.job_ended("dev3", "j-3")
            dev3_done.set()
        if device.name != "dev3":
            blocked.wait(10)
            release.wait(30)  # a follow that would go on for as long as the job
        return device.name

    devices = [Device(name=n, host=n) for n in ("dev1", "dev2", "dev3")]
    main = threading.main_thread().ident
    assert main is not None

    def ctrl_c() -> None:  # a real SIGINT, to the main thread as a terminal's Ctrl-C is
        blocked.wait(10)
        dev3_done.wait(10)
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=ctrl_c).start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            each(devices, work)
        took = time.monotonic() - start
        assert not release.is_set()
        assert took < 2, took
    finally:
        release.set()
    assert hooks == ["stop"]
    interrupts.interrupted()  # a second time: the hooks ran once
    assert hooks == ["stop"]
    assert interrupts.left_running() == {"dev1": ["j-1"], "dev2": [], "dev3": []}
    assert interrupts.report() == [
        "dev1: job j-1 keeps running on the device; reattach: edge jobs attach j-1 --to dev1",
        "dev2: nothing started",
        "dev3: job j-3 had ended; see: edge jobs ls --to dev3",
    ]


def test_each_without_interrupt_waits_and_keeps_order() -> None:
    def work(device: Device) -> str:
        time.sleep(0.2 if device.name == "a" else 0)
        return device.name.upper()

    assert each([Device(name="a", host="a"), Device(name="b", host="b")], work) == ["A", "B"]
    assert interrupts.report() == ["a: nothing started", "b: nothing started"]
