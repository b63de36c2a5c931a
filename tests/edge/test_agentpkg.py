"""The agent zipapp the host ships: built from the installed package, runs on Python 3.8."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import DATA

import device_agent
from edge.agentpkg import agent_filename, build_zipapp, source_digest


def python38() -> str | None:
    for candidate in ("python3.8", str(Path.home() / ".pyenv/versions/3.8.18/bin/python")):
        found = shutil.which(candidate)
        if found and subprocess.run([found, "-c", "import sys; assert sys.version_info[:2] == "
                                     "(3, 8)"], capture_output=True).returncode == 0:
            return found
    return None


def test_zipapp_holds_every_agent_module(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path)
    assert pyz.name == agent_filename()
    assert pyz.name == f"edge-agent-{device_agent.__version__}-{source_digest()[:12]}.pyz"
    names = set(zipfile.ZipFile(pyz).namelist())
    pkg = Path(device_agent.__file__).parent
    expected = {"device_agent/" + str(p.relative_to(pkg)) for p in pkg.rglob("*.py")
                if "__pycache__" not in p.parts}
    assert expected <= names and "__main__.py" in names
    assert build_zipapp(tmp_path) == pyz  # cached: same sources, same file


@pytest.mark.parametrize("interpreter", ["current", "3.8"])
def test_zipapp_info_on_a_jetson_sysroot(tmp_path: Path, interpreter: str) -> None:
    exe = sys.executable if interpreter == "current" else python38()
    if exe is None:
        pytest.skip("no Python 3.8 interpreter on this machine")
    pyz = build_zipapp(tmp_path)
    proc = subprocess.run([exe, str(pyz), "--root", str(tmp_path / "root"), "info",
                           "--sysroot", str(DATA / "sysroots" / "orin-nano-jp6")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["jetson"]["module"].startswith("Jetson Orin Nano")
    assert facts["jetson"]["compute_capability"] == "8.7"
    assert facts["python"].startswith("3.8" if interpreter == "3.8" else "3.")


def test_zipapp_unpacks_once_for_cached_bytecode(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path / "agent")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run() -> dict:
        proc = subprocess.run([sys.executable, str(pyz), "--root", str(tmp_path / "root"),
                               "jobs"], capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert run() == []
    unpacked = Path(str(pyz) + ".d") / "device_agent"
    assert (unpacked / "protocol.py").read_bytes() == \
        zipfile.ZipFile(pyz).read("device_agent/protocol.py")
    assert list((unpacked / "__pycache__").glob("protocol.*.pyc"))  # the next start loads it
    assert not list(pyz.parent.glob(".unpack-*"))
    assert run() == []


def test_zipapp_runs_from_the_zip_where_it_cannot_unpack(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path / "agent")
    Path(str(pyz) + ".d").write_text("in the way")  # a file where the directory would go
    proc = subprocess.run([sys.executable, str(pyz), "--root", str(tmp_path / "root"),
                           "jobs"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stderr
    assert not list(pyz.parent.glob(".unpack-*"))  # nothing left behind


def test_zipapp_built_once_when_many_devices_ask_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: build_zipapp(tmp_path / "agent"), range(8)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert zipfile.ZipFile(paths[0]).testzip() is None
    assert sorted(p.name for p in (tmp_path / "agent").iterdir()) == [paths[0].name]
