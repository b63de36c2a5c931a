"""The push benchmark's measuring: one tool's repeats, and tools interleaved round by
round, each keeping the median of its own samples."""

from __future__ import annotations

from typing import Any

import pytest
from netlab.measuring import Ctx, interleave, measure
from netlab.tools import ToolFailed


class _Tools:
    """What a Trial reads of Tools: the missing tools, the timeout, the client CPU."""

    def __init__(self, missing: dict[str, str] | None = None) -> None:
        self.missing = missing or {}
        self.timeout = 0.0
        self.cpu_s = 0.0
        self.cpu_clean = True


def _ctx(tools: _Tools, repeat: int = 1) -> Ctx:
    return Ctx(None, tools, None, None, 1, 1, repeat=repeat)  # type: ignore[arg-type]


def _tool(name: str, seconds: list[float], log: list[str], tools: _Tools) -> dict[str, Any]:
    left = list(seconds)

    def fn() -> float:
        log.append(name)
        tools.cpu_s += 0.5
        return left.pop(0)

    return dict(case=2, group="g", tool=name, needs=name, fn=fn, setup=lambda: log.append("-"))


def test_interleaved_tools_take_turns_the_order_reversed_each_round() -> None:
    tools, log = _Tools(), []
    a = _tool("scp", [4.0, 6.0, 5.0], log, tools)
    b = {**_tool("edge", [1.0, 3.0, 2.0], log, tools), "role": "edge"}
    ctx = _ctx(tools)
    rows = interleave(ctx, [a, b], 3)
    assert [x for x in log if x != "-"] == ["scp", "edge", "edge", "scp", "scp", "edge"]
    assert log.count("-") == 6  # each sample's own setup, untimed
    assert [r.seconds for r in rows] == [5.0, 2.0] and [r.cpu_s for r in rows] == [0.5, 0.5]
    assert rows[0].samples == [4.0, 6.0, 5.0] and "runs 4.00 to 6.00 s" in rows[0].note
    assert ctx.rows == rows


def test_a_missing_tool_is_skipped_and_the_other_still_runs_every_round() -> None:
    tools, log = _Tools({"scp": "no scp here"}), []
    ctx = _ctx(tools)
    rows = interleave(
        ctx, [_tool("scp", [1.0], log, tools), _tool("edge", [1.0, 2.0, 3.0], log, tools)], 3
    )
    assert rows[0].seconds is None and rows[0].note == "skipped: no scp here"
    assert rows[1].seconds == 2.0 and ctx.rows == rows


def test_a_failure_is_retried_once_and_a_second_ends_that_tool() -> None:
    tools = _Tools()
    fails = iter([True, False, True, True])

    def flaky() -> float:
        if next(fails):
            raise ToolFailed("timed out")
        return 1.5

    flaky_tool = dict(case=1, group="g", tool="rsync", needs="", fn=flaky)
    (row,) = interleave(_ctx(tools), [flaky_tool], 3)
    assert row.samples == [1.5] and row.seconds is None
    assert row.note.startswith("failed twice: timed out")


def test_measure_runs_one_tool_repeat_times() -> None:
    tools, log = _Tools(), []
    row = measure(_ctx(tools, repeat=2), **_tool("scp", [3.0, 1.0], log, tools))
    assert row.samples == [3.0, 1.0] and row.seconds == pytest.approx(2.0)


def test_measure_takes_the_case_group_tool_and_needs_by_position() -> None:
    tools = _Tools()
    row = measure(_ctx(tools), 5, "g", "agent info", "", fn=lambda: 0.25, repeat=3)
    assert (row.case, row.tool, row.samples) == (5, "agent info", [0.25] * 3)
