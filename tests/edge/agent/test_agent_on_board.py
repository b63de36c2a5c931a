"""The agent the way a board runs it: the board's own python3 (device_agent not installed),
the shipped zipapp, `-I`, and whatever sits in the login's home directory."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from device_agent.protocol import ConvertSpec, JobSpec, ValidateSpec
from edge.agent.package import build_zipapp
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory


def run_agent(
    python: Path | str,
    pyz: Path,
    root: Path,
    *args: str,
    cwd: Path,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """One agent command as the host runs it on a board: `python -I PYZ --root ROOT ...`."""
    env = dict(env or {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run(
        [str(python), "-I", str(pyz), "--root", str(root), *args],
        input=input,
        capture_output=True,
        text=True,
        cwd=str(cwd),
        env=env,
        timeout=300,
    )


def submit_and_wait(
    python: Path | str,
    pyz: Path,
    root: Path,
    spec: JobSpec,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> dict:
    """Submit `spec`, follow it to its end, and return its final status."""
    proc = run_agent(
        python, pyz, root, "submit", "-", "--detach", cwd=cwd, input=spec.to_json(), env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job_id = json.loads(proc.stdout)["job_id"]
    run_agent(python, pyz, root, "follow", job_id, "--timeout", "240", cwd=cwd, env=env)
    status = run_agent(python, pyz, root, "status", job_id, cwd=cwd, env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    return json.loads(status.stdout)


def worker_log(root: Path) -> str:
    return "".join(p.read_text() for p in (root / "jobs").glob("*/worker.log"))


def test_convert_over_sshd_with_the_boards_python(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model: Path,
    device_python: Path,
) -> None:
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    inv.add(
        Device(name="d1", host="d1", python=str(device_python), root=str(tmp_path / "roots" / "d1"))
    )
    inv.save()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160")
    proc = subprocess.run(
        [edge_bin(), "convert", str(tiny_model), "--to", "d1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "succeeded", row.get("error")
    assert proc.returncode == 0, proc.stderr
    assert row["output_model"].startswith(str(tmp_path / "roots" / "d1"))
    assert not re.search(r"No module named '?device_agent", worker_log(tmp_path / "roots" / "d1"))


def test_a_device_agent_package_in_the_home_is_not_run(
    tmp_path: Path, device_python: Path, tiny_model: Path
) -> None:
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    home = tmp_path / "home"  # the login's cwd, holding someone's checkout of the project
    marker = tmp_path / "hostile-code-ran"
    for name in ("__init__.py", "__main__.py", "runner.py"):
        (home / "device_agent").mkdir(parents=True, exist_ok=True)
        (home / "device_agent" / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    missing = tmp_path / "no-such-model"
    spec = ValidateSpec(model=str(missing), converted=str(tiny_model))
    state = submit_and_wait(device_python, pyz, root, spec, cwd=home)
    assert not marker.exists()
    # the verified agent's worker ran the job and failed it with its own error
    assert state["status"] == "failed" and str(missing) in state["error"], state
    assert "died" not in state["error"]


def test_a_job_under_python38_gets_past_the_worker_start(
    tmp_path: Path, python38: str, python38_numpy: dict[str, str], tiny_model: Path
) -> None:
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    home = tmp_path / "home"
    home.mkdir()
    # numpy is in the user site-packages: -I hides that, the zipapp puts it back
    info = run_agent(python38, pyz, root, "info", cwd=home, env=python38_numpy)
    assert info.returncode == 0, info.stdout + info.stderr
    facts = json.loads(info.stdout)
    assert facts["python"].startswith("3.8.") and facts["numpy"], facts
    state = submit_and_wait(
        python38, pyz, root, ConvertSpec(model=str(tiny_model)), cwd=home, env=python38_numpy
    )
    log = worker_log(root)
    assert not re.search(r"No module named '?device_agent", log), log
    assert "died" not in state["error"], state
    # it got as far as the conversion, which needs TensorFlow: this Python has none
    assert state["status"] == "failed" and "tensorflow" in state["error"].lower(), state


def test_the_agent_check_ignores_modules_in_the_home(tmp_path: Path, device_python: Path) -> None:
    """The host's PROBE (python -c, which puts the cwd first on sys.path) runs in the home."""
    from edge.agent.client import PROBE

    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "hostile-code-ran"
    for name in ("json", "hashlib"):
        (home / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = subprocess.run(
        [str(device_python), "-c", PROBE, str(tmp_path / "agent.pyz")],
        capture_output=True,
        text=True,
        cwd=str(home),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert json.loads(proc.stdout)["agent"] is None


def test_relative_job_paths_still_mean_the_home(tmp_path: Path, device_python: Path) -> None:
    """The worker runs in its job directory; a relative path meant the submitter's cwd."""
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    home = tmp_path / "home"
    home.mkdir()
    state = submit_and_wait(
        device_python, pyz, root, ValidateSpec(model="models/m", converted="models/c"), cwd=home
    )
    assert state["status"] == "failed" and str(home / "models" / "m") in state["error"], state
