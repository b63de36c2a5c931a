"""Ctrl-C in a fleet command: it stops at once (exit 130), says which job keeps running on
which device and how to reattach, and the jobs do keep running there (real sshd fleet)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from device_agent.protocol import RUNNING, TERMINAL
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory

SUBMITTED = re.compile(r"^(\S+) job (\S+) submitted\s*$")


@pytest.fixture
def silent_host() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (no SSH banner): a
    device there is still connecting when the command is interrupted."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
        for conn in held:
            conn.close()


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="250")


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=_env(), timeout=300
    )


def jobs_on(device: str) -> dict[str, str]:
    """Job id -> status on `device`, from `edge jobs ls` (as `--to D`, or positionally)."""
    proc = edge("jobs", "ls", "--to", device, "--json")
    if proc.returncode == 2 and "--to" in proc.stderr:  # an older CLI: positional targets
        proc = edge("jobs", "ls", device, "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["job_id"]: row["status"] for row in json.loads(proc.stdout)}


def interrupt(args: list[str], devices: list[str]) -> tuple[int, float, str, dict[str, str]]:
    """Run `edge ARGS`, wait until each of `devices` said its job was submitted (and it
    runs there), then press Ctrl-C. Returns the exit code, the seconds from SIGINT to the
    exit, stderr, and device -> job id."""
    proc = subprocess.Popen(
        [edge_bin(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        start_new_session=True,  # its own process group: SIGINT to it is a terminal's Ctrl-C
    )
    lines: list[str] = []
    started: dict[str, str] = {}
    all_started = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            match = SUBMITTED.match(line)
            if match and match[1] in devices:
                started[match[1]] = match[2]
                if len(started) == len(devices):
                    all_started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert all_started.wait(240), "".join(lines)
        for name, job in started.items():  # the jobs run on the devices now
            assert jobs_on(name).get(job) == RUNNING, (name, job)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(10)
    return code, took, "".join(lines), started


def check_left_running(code: int, took: float, err: str, started: dict[str, str]) -> None:
    """Exit 130 at once, a reattach line per job, no traceback; then the jobs run on
    without the host, and each can be cancelled (which cleans up)."""
    assert code == 130, err
    assert took < 3, (took, err)
    assert "Traceback" not in err and "Aborted" not in err, err
    for name, job in started.items():
        line = (
            f"{name}: job {job} keeps running on the device; "
            f"reattach: edge jobs attach {job} --to {name}"
        )
        assert line in err.splitlines(), err
    time.sleep(1.5)  # the host is gone: the jobs run on, detached on the devices
    for name, job in started.items():
        assert jobs_on(name).get(job) == RUNNING, (name, job)
        cancel = edge("jobs", "cancel", job, "--to", name)
        assert cancel.returncode == 0, cancel.stderr
    deadline = time.monotonic() + 60
    ended: dict[str, str] = {}
    while time.monotonic() < deadline and len(ended) < len(started):
        for name, job in started.items():
            status = jobs_on(name).get(job, "")
            if status in TERMINAL:
                ended[name] = status
        time.sleep(0.5)
    assert sorted(ended) == sorted(started), ended


def test_ctrl_c_in_bench_leaves_the_jobs_running(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: Path,
    device_python: Path,
    silent_host: int,
) -> None:
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    for name in ("d1", "d2"):
        inv.add(Device(name=name, host=name, python=str(device_python), root=str(tmp_path / name)))
    inv.add(Device(name="d9", host="127.0.0.1", port=silent_host, user="edge"))
    inv.save()
    args = ["bench", str(tiny_model), "--to", "d1,d2,d9", "--duration", "600"]
    code, took, err, started = interrupt(args, ["d1", "d2"])
    assert "d9: nothing started" in err.splitlines(), err
    check_left_running(code, took, err, started)


def test_ctrl_c_in_bench_on_the_local_device(tiny_model: Path) -> None:
    """The local agent's follow is a child process in the command's process group, so
    Ctrl-C kills it too; the job itself runs on in its own session."""
    args = ["bench", str(tiny_model), "--to", "local", "--duration", "600", "--no-telemetry"]
    check_left_running(*interrupt(args, ["local"]))
