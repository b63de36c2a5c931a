"""The agent zipapp the host ships: built from the installed package, runs on Python 3.8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import DATA

import device_agent
from edge.agent.package import agent_filename, build_zipapp, source_digest


def test_zipapp_holds_every_agent_module(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path)
    assert pyz.name == agent_filename()
    assert pyz.name == f"edge-agent-{device_agent.__version__}-{source_digest()[:12]}.pyz"
    names = set(zipfile.ZipFile(pyz).namelist())
    pkg = Path(device_agent.__file__).parent
    expected = {
        "device_agent/" + str(p.relative_to(pkg))
        for p in pkg.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert expected <= names and "__main__.py" in names
    assert build_zipapp(tmp_path) == pyz  # cached: same sources, same file


@pytest.mark.parametrize("interpreter", ["current", "3.8"])
def test_zipapp_info_on_a_jetson_sysroot(
    tmp_path: Path, interpreter: str, request: pytest.FixtureRequest
) -> None:
    # 3.8: the python38 fixture fails, never skips, with the command that installs one
    exe = sys.executable if interpreter == "current" else request.getfixturevalue("python38")
    pyz = build_zipapp(tmp_path)
    proc = subprocess.run(
        [
            exe,
            "-I",
            str(pyz),
            "--root",
            str(tmp_path / "root"),
            "info",
            "--sysroot",
            str(DATA / "sysroots" / "orin-nano-jp6"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    assert facts["jetson"]["module"].startswith("Jetson Orin Nano")
    assert facts["jetson"]["compute_capability"] == "8.7"
    assert facts["python"].startswith("3.8" if interpreter == "3.8" else "3.")


def test_zipapp_unpacks_once_for_cached_bytecode(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path / "agent")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def run() -> dict:
        proc = subprocess.run(
            [sys.executable, str(pyz), "--root", str(tmp_path / "root"), "jobs"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert run() == []
    unpacked = Path(str(pyz) + ".d") / "device_agent"
    assert (unpacked / "protocol.py").read_bytes() == zipfile.ZipFile(pyz).read(
        "device_agent/protocol.py"
    )
    assert list((unpacked / "__pycache__").glob("protocol.*.pyc"))  # the next start loads it
    assert not list(pyz.parent.glob(".unpack-*"))
    assert run() == []


def test_zipapp_replaces_a_file_where_its_unpacked_copy_goes(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path / "agent")
    Path(str(pyz) + ".d").write_text("in the way")  # a file where the directory would go
    proc = subprocess.run(
        [sys.executable, "-I", str(pyz), "--root", str(tmp_path / "root"), "jobs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stderr
    assert (Path(str(pyz) + ".d") / "device_agent" / "__main__.py").is_file()
    assert sorted(p.name for p in pyz.parent.iterdir()) == [pyz.name, pyz.name + ".d"]


def test_zipapp_built_once_when_many_devices_ask_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: build_zipapp(tmp_path / "agent"), range(8)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert zipfile.ZipFile(paths[0]).testzip() is None
    assert sorted(p.name for p in (tmp_path / "agent").iterdir()) == [paths[0].name]


def test_zipapp_main_is_the_bootstrap_with_its_files(tmp_path: Path) -> None:
    pyz = build_zipapp(tmp_path)
    with zipfile.ZipFile(pyz) as z:
        main = z.read("__main__.py").decode()
        names = [n for n in z.namelist() if n.startswith("device_agent/") and n.endswith(".py")]
    files = json.loads(
        main.split("\nFILES: Dict[str, List[Union[int, str]]] = ", 1)[1].split("\n", 1)[0]
    )
    assert sorted(files) == sorted(names)
    with zipfile.ZipFile(pyz) as z:
        for name, (size, _digest) in files.items():
            assert len(z.read(name)) == size


def test_zipapp_on_a_jetpack46_python_says_it_is_too_old(tmp_path: Path) -> None:
    """JetPack 4.6 boards (Nano, TX1, TX2) have Python 3.6: the zipapp must still parse
    there and say what is wrong, and the host's check reports it as too old."""
    py36 = Path.home() / ".pyenv" / "versions" / "3.6.15" / "bin" / "python"
    assert py36.exists(), "needs Python 3.6 (JetPack 4.6's) to check: pyenv install 3.6.15"
    pyz = build_zipapp(tmp_path)
    proc = subprocess.run(
        [str(py36), "-I", str(pyz), "--root", str(tmp_path / "root"), "info"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr
    assert "edge-agent needs Python 3.8+, this is 3.6" in proc.stderr
