"""Decoding is validation: `from_dict` checks every field against its annotation and the
ranges that matter, and names the bad field; unknown fields stay ignored."""

from __future__ import annotations

from typing import Any

import pytest

from device_agent.protocol import (
    BenchResult,
    BlobNeed,
    ConvertOptions,
    ConvertSpec,
    DeviceFacts,
    Event,
    JobState,
    Manifest,
    ProtocolError,
    PushPlan,
    TelemetrySample,
    result_from_dict,
    spec_from_json,
)
from edge.ops.push import PushResult

FACTS: dict[str, Any] = {
    "agent_version": "1",
    "protocol": 1,
    "python": "3.8.10",
    "machine": "aarch64",
    "hostname": "h",
    "memory_total_mb": 8000,
    "memory_available_mb": 4000,
    "swap_total_mb": 0,
    "disk_free_mb": 10,
}


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (
            DeviceFacts,
            FACTS | {"memory_total_mb": "8000"},
            "DeviceFacts.memory_total_mb: expected an integer, got a string ('8000')",
        ),
        (DeviceFacts, FACTS | {"protocol": True}, "DeviceFacts.protocol: expected an integer"),
        (
            DeviceFacts,
            FACTS | {"hostname": None},
            "DeviceFacts.hostname: expected a string, got null",
        ),
        (
            DeviceFacts,
            FACTS | {"jetson": {"module": 7}},
            "DeviceFacts.jetson.module: expected a string",
        ),
        (
            DeviceFacts,
            FACTS | {"jetson": []},
            "DeviceFacts.jetson: expected an object for JetsonInfo",
        ),
        (
            DeviceFacts,
            {"python": "3.8"},
            "DeviceFacts: missing required fields agent_version, protocol, machine",
        ),
        (
            DeviceFacts,
            FACTS | {"disk_free_mb": -1},
            "DeviceFacts.disk_free_mb: must not be negative",
        ),
        (Event, {"seq": 0, "ts": "now", "kind": "log"}, "Event.ts: expected a number"),
        (Event, {"seq": -3, "ts": 1, "kind": "log"}, "Event.seq: must not be negative"),
        (Event, {"seq": 0, "ts": 1, "kind": "log", "data": []}, "Event.data: expected an object"),
        (
            JobState,
            {
                "job_id": "j",
                "kind": "bench",
                "status": "running",
                "created_at": 1,
                "updated_at": 1,
                "pid": 1.5,
            },
            "JobState.pid: expected an integer",
        ),
        (
            PushPlan,
            {"tree_digest": "t", "missing": [{"sha256": "s", "size": 4, "offset": 9}]},
            "PushPlan.missing[0].offset: 9 is past the blob's size 4",
        ),
        (
            PushPlan,
            {"tree_digest": "t", "missing": [{"sha256": "s", "size": 4, "ranges": [[0, 2, 4]]}]},
            "PushPlan.missing[0].ranges[0]: [0, 2, 4] is not a byte range",
        ),
        (
            PushPlan,
            {"tree_digest": "t", "missing": [{"sha256": "s", "size": 4, "ranges": [["0", 2]]}]},
            "PushPlan.missing[0].ranges[0][0]: expected an integer",
        ),
        (
            Manifest,
            {"entries": [{"path": "a", "size": -1, "sha256": "s"}]},
            "Manifest.entries[0].size: must not be negative",
        ),
        (
            TelemetrySample,
            {"cpu_load_pct": [1.0, None, "x"]},
            "TelemetrySample.cpu_load_pct[2]: expected a number",
        ),
        (
            TelemetrySample,
            {"temperatures_c": {"gpu": "hot"}},
            "TelemetrySample.temperatures_c.gpu: expected a number",
        ),
        (
            ConvertSpec,
            {"kind": "convert", "model": "m", "convert": {"precision": ["FP16"]}},
            "ConvertSpec.convert.precision: expected a string",
        ),
        (
            PushResult,
            {"device": "d", "status": "failed", "error": 5},
            "PushResult.error: expected a string",
        ),
    ],
)
def test_bad_field_is_named(cls: type, data: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        cls.from_dict(data)  # type: ignore[attr-defined]
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize("data", [None, [], "facts", 3])
def test_not_an_object(data: Any) -> None:
    with pytest.raises(ProtocolError, match="DeviceFacts: expected an object for DeviceFacts"):
        DeviceFacts.from_dict(data)


def test_valid_messages_still_decode() -> None:
    """Ints where floats belong (JSON has one number type), nulls where Optional, unknown
    fields from a newer writer, host dataclasses with `X | None` annotations."""
    facts = DeviceFacts.from_dict(
        FACTS | {"jetson": {"module": "orin", "memory_mb": 8}, "from_the_future": {"x": 1}}
    )
    assert facts.jetson is not None and facts.jetson.memory_mb == 8
    event = Event.from_dict({"seq": 2, "ts": 5, "kind": "status", "status": None})
    assert (event.seq, event.ts, event.status) == (2, 5, None)
    need = BlobNeed.from_dict({"sha256": "s", "size": 10, "offset": 10, "ranges": [[0, 10]]})
    assert need.ranges == [[0, 10]]
    assert PushResult.from_dict({"device": "d", "status": "ok", "error": None}).error is None
    spec = ConvertSpec(model="m", convert=ConvertOptions(precision="FP16"))
    assert spec_from_json(spec.to_json()) == spec
    result = BenchResult(device="d", status="succeeded")
    assert result_from_dict("bench", result.to_dict()) == result
