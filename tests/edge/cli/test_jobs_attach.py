"""`edge jobs attach` shows a job of each kind with that kind's own view, the one the command
that started the job printed: real convert, bench and validate jobs on `local`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from helpers import edge_bin


def _edge(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", **env)
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=full, timeout=300
    )


@pytest.fixture(scope="module")
def jobs_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, device_python: Path
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(env, {kind: the command's stdout}, {kind: job id}) for one job of each kind."""
    home = tmp_path_factory.mktemp("attach")
    env = {
        "EDGE_HOME": str(home / "home"),
        "EDGE_LOCAL_ROOT": str(home / "root"),
        "EDGE_LOCAL_PYTHON": str(device_python),
    }
    converted = home / "converted"
    commands = {
        "convert": ["convert", str(tiny_model), "--to", "local", "--output", str(converted)],
        "validate": ["validate", str(tiny_model), str(converted), "--to", "local"],
        "bench": [
            "bench",
            str(tiny_model),
            "--to",
            "local",
            "--iterations",
            "20",
            "--no-telemetry",
        ],
    }
    printed = {}
    for kind, argv in commands.items():
        proc = _edge(env, *argv)
        assert proc.returncode == 0, proc.stderr
        printed[kind] = proc.stdout
    listing = _edge(env, "jobs", "ls", "--to", "local", "--json")
    assert listing.returncode == 0, listing.stderr
    ids = {j["kind"]: j["job_id"] for j in json.loads(listing.stdout)}
    assert set(ids) == set(commands)
    return env, printed, ids


@pytest.mark.parametrize("kind", ["convert", "bench", "validate"])
def test_attach_prints_the_commands_own_view(
    jobs_run: tuple[dict[str, str], dict[str, str], dict[str, str]], kind: str
) -> None:
    env, printed, ids = jobs_run
    proc = _edge(env, "jobs", "attach", ids[kind], "--to", "local")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    if kind == "bench":  # the command names the model by its host path, attach by its digest
        assert _cells(proc.stdout, drop=1) == _cells(printed[kind], drop=1)
        assert "Benchmark" in proc.stdout and len(_cells(proc.stdout, drop=1)) == 2
    else:
        assert proc.stdout == printed[kind]


def _cells(table: str, drop: int) -> list[list[str]]:
    """The header and data cells of a rich table, column `drop` left out."""
    rows = [
        [c.strip() for c in line.strip("┃│ ").split("┃" if "┃" in line else "│")]
        for line in table.splitlines()
        if "│" in line or "┃" in line
    ]
    return [r[:drop] + r[drop + 1 :] for r in rows]


def test_attach_json_on_a_validate_job(
    jobs_run: tuple[dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    env, _, ids = jobs_run
    proc = _edge(env, "jobs", "attach", ids["validate"], "--to", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["device"] == "local" and row["status"] == "succeeded"
    assert row["validation"]["passed"] is True and row["validation"]["outputs"]
