"""Pytest plugin: only the hardware suite (`-m jetson`) may skip.

Any other skip (a missing sshd, an importorskip) becomes a failure, so a machine that
lacks a real component cannot pass the suite by skipping what needs it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Report a skip outside the hardware suite as a failure, with its reason."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and item.get_closest_marker("jetson") is None
        and not hasattr(report, "wasxfail")
    ):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped outside the hardware suite (only -m jetson may skip): {reason}"
