"""Helpers the tests share (importable as `helpers`: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def agent_cmd(root: Path) -> list[str]:
    """Run the agent from the source tree, as `python -m device_agent --root ROOT`."""
    return [sys.executable, "-m", "device_agent", "--root", str(root)]


def agent_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def edge_bin() -> str:
    """The `edge` console script of the running interpreter's environment."""
    exe = Path(sys.executable).parent / "edge"
    return str(exe) if exe.exists() else shutil.which("edge") or "edge"


def agent(
    root: Path, *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run one agent command from the source tree."""
    return subprocess.run(
        agent_cmd(root) + list(args),
        input=input,
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=timeout,
    )


def agent_json(root: Path, *args: str, input: str | None = None) -> Any:
    proc = agent(root, *args, input=input)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
