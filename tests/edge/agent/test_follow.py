"""Following a job ends from its status and result, and cannot loop without end.

A power cut, an OOM kill or ENOSPC can fall between a job's last writes, leaving a
status.json that is final and an events.jsonl without the final status event (or with
half of it). The host follows through a real AgentClient, LocalTransport and agent.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import agent, agent_json

from device_agent.protocol import (
    QUEUED,
    RUNNING,
    SUCCEEDED,
    BenchOptions,
    BenchResult,
    BenchSpec,
    Event,
    JobState,
)
from edge.agent.client import AgentClient
from edge.agent.follow import follow_to_end
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.transport.local import LocalTransport

JOB_ID = "20240101-000000-bench-abcdef"


def finished_job(root: Path, tail: str) -> BenchResult:
    """A job that succeeded (status.json, result.json) whose log lost its final event:
    tail "missing": the line was never written; "torn": only part of it was."""
    path = root / "jobs" / JOB_ID
    (path / "artifacts").mkdir(parents=True)
    (path / "job.json").write_text(BenchSpec(model=str(root / "m")).to_json())
    result = BenchResult(
        device="board",
        status=SUCCEEDED,
        job_id=JOB_ID,
        scenario="custom",
        headline=f"headline {time.time()}",
    )
    (path / "result.json").write_text(result.to_json(indent=2))
    now = time.time()
    state = JobState(
        job_id=JOB_ID, kind="bench", status=SUCCEEDED, created_at=now, updated_at=now, pid=None
    )
    (path / "status.json").write_text(state.to_json())
    lines = [
        Event(seq=0, ts=now, kind="status", message="job created", status=QUEUED),
        Event(seq=1, ts=now, kind="status", message="running", status=RUNNING),
        Event(
            seq=2,
            ts=now,
            kind="result",
            message="result written",
            data={"result": result.to_dict()},
        ),
    ]
    text = "".join(e.to_json() + "\n" for e in lines)
    if tail == "torn":
        final = Event(seq=3, ts=now, kind="status", message=SUCCEEDED, status=SUCCEEDED)
        text += final.to_json()[:25]
    (path / "events.jsonl").write_text(text)
    return result


def in_thread(fn: Any, timeout: float) -> Any:
    """fn() in a daemon thread: its value, or an AssertionError if it still runs."""
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still following after {timeout}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def local_client(root: Path, python: Path) -> AgentClient:
    client = AgentClient(
        Device(name="local", python=str(python), root=str(root)), LocalTransport("local")
    )
    client.ensure_agent(install=True)
    return client


@pytest.mark.parametrize("tail", ["missing", "torn"])
def test_follow_to_end_ends_from_the_status(tmp_path: Path, device_python: Path, tail: str) -> None:
    root = tmp_path / "root"
    expected = finished_job(root, tail)
    client = local_client(root, device_python)
    seen: list[Event] = []
    start = time.time()
    result = in_thread(
        lambda: follow_to_end(client, "bench", JOB_ID, lambda _, e: seen.append(e)), 30
    )
    assert time.time() - start < 15
    assert isinstance(result, BenchResult) and result.headline == expected.headline
    assert [e.seq for e in seen if e.seq >= 0][:3] == [0, 1, 2]


@pytest.mark.parametrize("tail", ["missing", "torn"])
def test_device_follow_ends_from_the_status(tmp_path: Path, tail: str) -> None:
    root = tmp_path / "root"
    finished_job(root, tail)
    try:
        proc = agent(root, "follow", JOB_ID, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the device's follow did not end")
    assert proc.returncode == 0, proc.stderr
    stream = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e.seq for e in stream][:3] == [0, 1, 2]
    # the log is repaired: it ends with the status that status.json holds
    assert stream[-1].kind == "status" and stream[-1].status == SUCCEEDED
    assert agent_json(root, "status", JOB_ID)["status"] == SUCCEEDED


def test_a_stream_that_keeps_ending_early_is_bounded(
    tmp_path: Path, device_python: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job runs on, but every `follow` on the device is killed after a second (as an
    OOM kill would): the host backs off and gives up after EDGE_RECONNECT_TRIES."""
    root = tmp_path / "root"
    spec = BenchSpec(
        model=str(tiny_model),
        bench=BenchOptions(
            batch_sizes=[1], duration_seconds=120.0, warmup_seconds=0.0, warmup_iterations=1
        ),
    )
    job_id = agent_json(root, "submit", "-", "--detach", input=spec.to_json())["job_id"]
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" follow "*) exec timeout -s KILL 1 {device_python} "$@";;'
        f'\nesac\nexec {device_python} "$@"\n'
    )
    python.chmod(0o755)
    monkeypatch.setenv("EDGE_RECONNECT_TRIES", "2")
    client = local_client(root, python)
    try:
        start = time.time()
        with pytest.raises(DeviceError, match="ended early") as info:
            in_thread(lambda: follow_to_end(client, "bench", job_id), 40)
        assert "edge jobs attach" in (info.value.hint or "")
        assert 1.4 < time.time() - start < 30  # it backed off: 0.5 s, then 1 s
        assert client.status(job_id).status in (QUEUED, RUNNING)  # the job goes on
    finally:
        json.loads(agent(root, "cancel", job_id).stdout)
