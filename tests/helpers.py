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


def make_device_python(dest: Path) -> Path:
    """An interpreter like a board's own `python3`: it sees numpy and TensorFlow (this
    venv's site-packages, added by a .pth line, so that directory's own .pth files, the
    project's editable install among them, do not run) but cannot import device_agent.

    Returns the path of its `python`. The caller checks nothing: this raises if the
    interpreter can import device_agent or cannot import numpy."""
    import sysconfig
    import venv

    if not (dest / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(dest)
        purelib = Path(sysconfig.get_paths()["purelib"])
        site = next((dest / "lib").glob("python3*/site-packages"))
        (site / "edge-test-host-packages.pth").write_text(f"{purelib}\n")
    python = dest / "bin" / "python"
    probe = (
        "import importlib.util, numpy, sys; "
        "sys.exit(3 if importlib.util.find_spec('device_agent') else 0)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(python), "-I", "-c", probe],
        cwd=str(dest),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"device python {python} is not like a board's (exit "
            f"{proc.returncode}: {proc.stderr.strip()[-500:]})"
        )
    return python


PYTHON38_INSTALL = "pyenv install 3.8.18 (or: apt-get install python3.8 python3.8-venv)"


def find_python38() -> str | None:
    """A Python 3.8 interpreter (the oldest the agent supports), or None."""
    for candidate in ("python3.8", str(Path.home() / ".pyenv/versions/3.8.18/bin/python")):
        found = shutil.which(candidate)
        if (
            found
            and subprocess.run(
                [found, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                capture_output=True,
            ).returncode
            == 0
        ):
            return found
    return None


def make_python38_numpy(userbase: Path) -> dict[str, str]:
    """Python 3.8 (the oldest board Python the agent supports) with numpy and no TensorFlow:
    numpy goes to a user site-packages (`pip install --user`, as on many boards), under
    `userbase`. Returns the environment that points Python at it; raises if pip fails."""
    base = find_python38()
    if base is None:
        raise RuntimeError(f"no Python 3.8 on this machine; install it: {PYTHON38_INSTALL}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONUSERBASE"] = str(userbase)
    if not list(userbase.glob("lib/python3.8/site-packages/numpy")):
        proc = subprocess.run(
            [base, "-m", "pip", "install", "-q", "--user", "--disable-pip-version-check", "numpy"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"pip install --user numpy for Python 3.8 failed: {proc.stderr[-800:]}"
            )
    return env
