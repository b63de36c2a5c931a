"""`edge demo`, run once per session for the tests that read its output (registered through
`pytest_plugins`): each run is half a minute of TensorFlow, and the tests check different
things of the same runs."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import edge_bin


@dataclass(frozen=True)
class DemoRun:
    """One finished `edge demo`: its exit code and output, its workdir and its EDGE_HOME
    (the run history it recorded, and nothing else's)."""

    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    home: Path


def _start(
    base: Path, device_python: Path, args: list[str], columns: str
) -> tuple[subprocess.Popen[str], Path, Path]:
    """Start `edge demo ARGS --workdir BASE/workdir` with a home of its own, as the
    autouse `edge_home` fixture would give it."""
    workdir, home = base / "workdir", base / "edge-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    env.pop("NO_COLOR", None)
    env.update(
        TF_CPP_MIN_LOG_LEVEL="2",
        COLUMNS=columns,
        EDGE_HOME=str(home),
        EDGE_LOCAL_ROOT=str(home / "local-device"),
        EDGE_LOCAL_PYTHON=str(device_python),
    )
    proc = subprocess.Popen(
        [edge_bin(), "demo", *args, "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, workdir, home


def _finish(started: tuple[subprocess.Popen[str], Path, Path]) -> DemoRun:
    proc, workdir, home = started
    try:
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += "\n(killed after 600 s)"
    return DemoRun(proc.returncode, stdout, stderr, workdir, home)


@pytest.fixture(scope="session")
def demo_runs(
    tmp_path_factory: pytest.TempPathFactory, device_python: Path, mnist_model: Path
) -> dict[str, DemoRun]:
    """Two demos, run at once (much of each is one-threaded start-up and imports):
    `human` builds its own model, piped at COLUMNS=80 as a user reads it; `json` is
    `--json` on the session's MNIST model."""
    human = _start(
        tmp_path_factory.mktemp("demo-human"), device_python, ["--duration", "0.3"], "80"
    )
    json_args = ["--model", str(mnist_model), "--duration", "0.2", "--json"]
    as_json = _start(tmp_path_factory.mktemp("demo-json"), device_python, json_args, "300")
    return {"human": _finish(human), "json": _finish(as_json)}
