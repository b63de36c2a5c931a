"""Real agent processes: submit, follow, detach, a killed worker, the GPU lock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import agent, agent_cmd, agent_env, agent_json

from device_agent.protocol import (
    TERMINAL,
    BenchOptions,
    BenchResult,
    BenchSpec,
    ConvertResult,
    ConvertSpec,
    Event,
    JobSpec,
    JobState,
    result_from_dict,
    spec_from_json,
)


def bench_spec(model: Path, seconds: float) -> JobSpec:
    return BenchSpec(
        model=str(model),
        bench=BenchOptions(
            batch_sizes=[1], duration_seconds=seconds, warmup_seconds=0.0, warmup_iterations=1
        ),
    )


def submit(root: Path, spec: JobSpec) -> str:
    return agent_json(root, "submit", "-", "--detach", input=spec.to_json())["job_id"]


def wait_status(
    root: Path, job_id: str, statuses: tuple[str, ...], timeout: float = 90
) -> JobState:
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = JobState.from_dict(agent_json(root, "status", job_id))
        if state.status in statuses:
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {statuses}")


def events(root: Path, job_id: str, offset: int = 0) -> list[Event]:
    proc = agent(root, "follow", job_id, "--offset", str(offset))
    assert proc.returncode == 0, proc.stderr
    return [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]


def test_protocol_round_trip_through_files(tmp_path: Path, tiny_model: Path) -> None:
    """Host encoder -> job.json file -> agent -> events/result files -> host decoder."""
    root = tmp_path / "root"
    spec = ConvertSpec(model=str(tiny_model), output=str(tmp_path / "out"))
    spec_file = tmp_path / "job.json"
    spec_file.write_text(spec.to_json())
    proc = agent(root, "submit", str(spec_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # blank lines are the follow stream's heartbeats
    stream = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e.seq for e in stream] == list(range(len(stream)))
    assert stream[-1].kind == "status" and stream[-1].status == "succeeded"
    job_dir = next((root / "jobs").iterdir())
    assert spec_from_json((job_dir / "job.json").read_text()) == spec
    on_disk = [
        Event.from_json(line) for line in (job_dir / "events.jsonl").read_text().splitlines()
    ]
    assert on_disk == stream
    result = result_from_dict("convert", json.loads((job_dir / "result.json").read_text()))
    assert isinstance(result, ConvertResult)
    assert result.output_model == str(tmp_path / "out")
    assert (tmp_path / "out" / "saved_model.pb").is_file()
    # the result event carries the same result as result.json
    result_event = next(e for e in stream if e.kind == "result")
    assert ConvertResult.from_dict(result_event.data["result"]) == result
    # following from an offset returns exactly the tail
    assert events(root, job_dir.name, offset=3) == stream[3:]


def test_detached_job_survives_its_parent(tmp_path: Path, tiny_model: Path) -> None:
    """`submit --detach` returns at once; the worker runs on after the parent exits."""
    root = tmp_path / "root"
    start = time.time()
    job_id = submit(root, bench_spec(tiny_model, 2.0))
    assert time.time() - start < 10  # returned before the 2 s benchmark could finish
    state = JobState.from_dict(agent_json(root, "status", job_id))
    assert state.status in ("queued", "running") and state.pid
    final = wait_status(root, job_id, TERMINAL)
    assert final.status == "succeeded", final.log_tail
    result = BenchResult.from_dict(agent_json(root, "result", job_id))
    assert result.runs[0].iterations >= 10


def test_killed_worker_is_failed_with_log_tail(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    job_id = submit(root, bench_spec(tiny_model, 60.0))
    state = wait_status(root, job_id, ("running",))
    # wait until the benchmark itself is under way (TensorFlow loaded, something logged)
    deadline = time.time() + 60
    while time.time() < deadline and not any(
        e.kind == "progress" for e in events_so_far(root, job_id)
    ):
        time.sleep(0.2)
    os.kill(state.pid, signal.SIGKILL)
    final = wait_status(root, job_id, TERMINAL, timeout=30)
    assert final.status == "failed"
    assert "died" in (final.error or "")
    log = (root / "jobs" / job_id / "worker.log").read_text()
    assert final.log_tail and final.log_tail.splitlines()[-1] in log
    # the lock was released: a new job runs to completion
    job2 = submit(root, bench_spec(tiny_model, 0.2))
    assert wait_status(root, job2, TERMINAL).status == "succeeded"


def events_so_far(root: Path, job_id: str) -> list[Event]:
    path = root / "jobs" / job_id / "events.jsonl"
    return [Event.from_json(line) for line in path.read_text().splitlines() if line.strip()]


def test_lock_serializes_two_jobs(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    first = submit(root, bench_spec(tiny_model, 2.0))
    wait_status(root, first, ("running",))
    second = submit(root, bench_spec(tiny_model, 0.5))
    assert wait_status(root, second, TERMINAL).status == "succeeded"
    first_events, second_events = events(root, first), events(root, second)
    waiting = [e for e in second_events if "waiting for the GPU lock" in e.message]
    assert waiting and waiting[0].data["holder"] == first
    first_done = next(e.ts for e in first_events if e.status in TERMINAL)
    second_running = next(e.ts for e in second_events if e.status == "running")
    assert second_running >= first_done


def test_cancel_stops_a_running_job(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    job_id = submit(root, bench_spec(tiny_model, 60.0))
    state = wait_status(root, job_id, ("running",))
    canceled = JobState.from_dict(agent_json(root, "cancel", job_id))
    assert canceled.status == "canceled"
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(state.pid, 0)
            time.sleep(0.1)
    assert [s["job_id"] for s in agent_json(root, "jobs")] == [job_id]


def test_agent_errors_are_json(tmp_path: Path, tiny_model: Path) -> None:
    root = tmp_path / "root"
    bad = agent(root, "submit", "-", input=json.dumps({"kind": "explode", "model": "/x"}))
    assert bad.returncode == 3
    err = json.loads(bad.stdout)
    assert "explode" in err["error"]
    missing = agent(root, "status", "no-such-job")
    assert missing.returncode == 3 and "no-such-job" in json.loads(missing.stdout)["error"]
    newer = agent(
        root,
        "submit",
        "-",
        input=json.dumps({"kind": "bench", "model": str(tiny_model), "protocol": 99}),
    )
    assert newer.returncode == 3 and "protocol 99" in json.loads(newer.stdout)["error"]


def test_not_a_savedmodel_fails_the_job_with_a_hint(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.h5").write_bytes(b"\0" * 10)
    spec = ConvertSpec(model=str(tmp_path / "junk"))
    proc = subprocess.run(
        agent_cmd(root) + ["submit", "-"],
        input=spec.to_json(),
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    result = next(
        Event.from_json(line) for line in proc.stdout.splitlines() if '"result"' in line
    ).data["result"]
    assert "not a SavedModel" in result["error"] and result["hint"]
