"""One family of user errors: the host's EdgeError is the agent's AgentError, so an error
from a shared device helper run on the host (manifest, signature, calibration checks) is
shown with its hint and exit 1, and anything else stays a bug with its traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin

import edge.cli.main as cli_main
from device_agent.errors import AgentError
from edge.core.errors import DeviceError, EdgeError, ModelError, RecipeError
from edge.fleet.inventory import FleetError
from edge.transport.base import TransportError


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def test_every_host_error_is_an_agent_error() -> None:
    for cls in (EdgeError, DeviceError, ModelError, RecipeError, FleetError, TransportError):
        assert issubclass(cls, AgentError), cls
    err = DeviceError("d1: gone", "Check the cable.")
    assert (str(err), err.message, err.hint) == ("d1: gone", "d1: gone", "Check the cable.")
    assert EdgeError("no hint").hint is None


def _main(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def app(**_: object) -> None:  # main() passes prog_name
        raise exc

    monkeypatch.setattr(cli_main, "app", app)
    monkeypatch.setattr(sys, "argv", ["edge"])
    cli_main.main()


def test_cli_shows_an_agent_error_raised_on_the_host(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        _main(monkeypatch, AgentError("Broken symlink: a/b", "fix or remove the link"))
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "error: Broken symlink: a/b" in err and "hint: fix or remove the link" in err


@pytest.mark.parametrize("bug", [KeyError("x"), TypeError("x"), ValueError("x")])
def test_an_internal_bug_is_not_dressed_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bug: Exception
) -> None:
    with pytest.raises(type(bug)):
        _main(monkeypatch, bug)
    assert "error:" not in capsys.readouterr().err


@pytest.fixture
def wrong_calib(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, not_an_input=np.zeros((4, 4), np.float32))
    return path


def test_bad_calibration_is_a_user_error(tiny_model: Path, wrong_calib: Path) -> None:
    proc = edge(
        "convert",
        str(tiny_model),
        "--to",
        "local",
        "--precision",
        "INT8",
        "--calib",
        str(wrong_calib),
    )
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "not_an_input" in proc.stderr
    assert "hint:" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_calibration_fails_every_dry_run_row(tiny_model: Path, wrong_calib: Path) -> None:
    proc = edge(
        "convert",
        str(tiny_model),
        "--to",
        "local",
        "--precision",
        "INT8",
        "--calib",
        str(wrong_calib),
        "--dry-run",
        "--json",
    )
    assert proc.returncode == 1, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["status"] == "failed" and "not_an_input" in row["error"] and row["hint"]


def test_an_unreadable_model_file_is_a_user_error(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "dangling").symlink_to(model / "nowhere")
    proc = edge("push", str(model), "--to", "local")
    assert proc.returncode == 1
    assert "error: Broken symlink: dangling" in proc.stderr and "hint:" in proc.stderr
