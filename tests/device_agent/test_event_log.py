"""events.jsonl under a short write: the kernel cuts a write at RLIMIT_FSIZE, as it does
at a full disk. The append must not pass a torn line off as written, and the next event
must not be glued to it."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

from helpers import agent, agent_env

from device_agent.protocol import SUCCEEDED, BenchSpec, Event, JobState

JOB_ID = "20240101-000000-bench-abcdef"

# Appends one event with the file size limited to `limit` bytes (Python ignores SIGXFSZ,
# so the kernel's answer is a short write, then EFBIG); prints what append_event did.
APPEND = f"""
import resource, sys
from device_agent.jobs import JobStore
root, limit, message = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    JobStore(root).append_event({JOB_ID!r}, "log", message)
    print("appended")
except OSError as exc:
    print("refused", exc.errno)
"""


def append(root: Path, message: str, limit: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", APPEND, str(root), str(limit), message],
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=60,
        cwd=str(root.parent),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_short_write_is_not_a_written_event(tmp_path: Path) -> None:
    root = tmp_path / "root"
    job = root / "jobs" / JOB_ID
    job.mkdir(parents=True)
    (job / "job.json").write_text(BenchSpec(model=str(root / "m")).to_json())
    now = time.time()
    (job / "status.json").write_text(
        JobState(
            job_id=JOB_ID, kind="bench", status=SUCCEEDED, created_at=now, updated_at=now
        ).to_json()
    )
    log = job / "events.jsonl"
    log.write_text(Event(seq=0, ts=now, kind="status", status="queued").to_json() + "\n")
    size = log.stat().st_size
    assert append(root, "x" * 200, limit=size + 40) == f"refused {errno.EFBIG}"  # a cut
    assert log.stat().st_size == size + 40  # the kernel wrote part of the line
    assert append(root, "after the cut") == "appended"
    lines = log.read_text().splitlines()
    events = []
    for n, line in enumerate(lines):
        try:
            events.append((n, Event.from_dict(json.loads(line))))
        except ValueError:
            continue
    # every whole event is where its seq says, and the one after the cut is whole
    assert [n for n, e in events] == [e.seq for n, e in events]
    assert events[-1][1].message == "after the cut"
    proc = agent(root, "follow", JOB_ID, timeout=30)
    assert proc.returncode == 0, proc.stderr
    sent = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e.message for e in sent][:2] == ["", "after the cut"]


def test_a_final_event_that_status_json_missed_is_adopted(tmp_path: Path) -> None:
    """The worker wrote its final status event, then died (power cut, OOM) before it
    replaced status.json: the job succeeded, it did not fail."""
    root = tmp_path / "root"
    job = root / "jobs" / JOB_ID
    job.mkdir(parents=True)
    (job / "job.json").write_text(BenchSpec(model=str(root / "m")).to_json())
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs
    now = time.time()
    (job / "status.json").write_text(
        JobState(
            job_id=JOB_ID,
            kind="bench",
            status="running",
            created_at=now,
            updated_at=now,
            pid=gone.pid,
        ).to_json()
    )
    lines = [
        Event(seq=0, ts=now, kind="status", status="queued"),
        Event(seq=1, ts=now, kind="status", status="running"),
        Event(seq=2, ts=now, kind="status", status=SUCCEEDED),
    ]
    (job / "events.jsonl").write_text("".join(e.to_json() + "\n" for e in lines))
    state = JobState.from_dict(json.loads(agent(root, "status", JOB_ID).stdout))
    assert state.status == SUCCEEDED, state
    proc = agent(root, "follow", JOB_ID, timeout=30)
    sent = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [e.status for e in sent] == ["queued", "running", SUCCEEDED]
