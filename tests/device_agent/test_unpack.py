"""The zipapp's unpacked copy `<pyz>.d`: verified against the digests in the zipapp on every
start, repaired when tampered or torn, and refused in a device root others can write."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from edge.agent.package import build_zipapp


def agent(
    python: Path | str, pyz: Path, root: Path, *args: str, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run(
        [str(python), "-I", str(pyz), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        preexec_fn=None if umask is None else lambda: os.umask(umask),
    )


@pytest.fixture
def unpacked(tmp_path: Path, device_python: Path) -> tuple[Path, Path]:
    """A zipapp that has run once (so `<pyz>.d` exists), and its device root."""
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    proc = agent(device_python, pyz, root, "jobs")
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stdout + proc.stderr
    assert (Path(str(pyz) + ".d") / "device_agent" / "jobs.py").is_file()
    return pyz, root


def zipped(pyz: Path, name: str) -> bytes:
    with zipfile.ZipFile(pyz) as z:
        return z.read(name)


def test_a_tampered_file_is_repaired_and_the_verified_code_runs(
    unpacked: tuple[Path, Path], device_python: Path
) -> None:
    pyz, root = unpacked
    main = Path(str(pyz) + ".d") / "device_agent" / "__main__.py"
    main.write_text("import sys\ndef main(argv=None):\n    print('[\"tampered\"]')\n    return 0\n")
    proc = agent(device_python, pyz, root, "jobs")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [], "the tampered code ran"
    assert main.read_bytes() == zipped(pyz, "device_agent/__main__.py")
    assert not [p.name for p in pyz.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("damage", ["deleted", "truncated", "emptied"])
def test_a_torn_unpack_is_repaired(
    unpacked: tuple[Path, Path], device_python: Path, damage: str
) -> None:
    pyz, root = unpacked
    victim = Path(str(pyz) + ".d") / "device_agent" / "jobs.py"
    if damage == "deleted":
        victim.unlink()
    else:  # what a power cut leaves of a file whose data never reached the disk
        victim.write_bytes(
            victim.read_bytes()[: len(victim.read_bytes()) // 2] if damage == "truncated" else b""
        )
    proc = agent(device_python, pyz, root, "jobs")
    assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stdout + proc.stderr
    assert victim.read_bytes() == zipped(pyz, "device_agent/jobs.py")
    # and it stays repaired
    assert agent(device_python, pyz, root, "jobs").returncode == 0


@pytest.mark.parametrize("where", ["root", "agent dir"])
def test_a_root_others_can_write_is_refused(
    tmp_path: Path, device_python: Path, where: str
) -> None:
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    writable = root if where == "root" else pyz.parent
    writable.chmod(0o777)
    proc = agent(device_python, pyz, root, "jobs")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert str(writable) in error["error"] and "write" in error["error"]
    assert error["hint"] == f"chmod go-w {writable}"
    assert not Path(str(pyz) + ".d").exists()  # nothing from there was trusted or unpacked


def test_a_root_made_under_a_group_umask_is_accepted(tmp_path: Path, device_python: Path) -> None:
    """Ubuntu's login umask is 002: the user's private group may write, as sshd allows."""
    root = tmp_path / "root"
    pyz = build_zipapp(tmp_path / "dist")
    unpacked = Path(str(pyz) + ".d")
    seen = set()
    for _ in range(3):
        proc = agent(device_python, pyz, root, "jobs", umask=0o002)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        seen.add(unpacked.stat().st_ino)
    assert len(seen) == 1  # unpacked once: its own files pass the check under that umask


def test_starts_racing_to_repair_all_run_the_verified_copy(
    unpacked: tuple[Path, Path], device_python: Path
) -> None:
    pyz, root = unpacked
    (Path(str(pyz) + ".d") / "device_agent" / "protocol.py").write_bytes(b"")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    procs = [
        subprocess.Popen(
            [str(device_python), "-I", str(pyz), "--root", str(root), "jobs"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(6)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and json.loads(out) == [], out + err
    assert sorted(p.name for p in pyz.parent.iterdir()) == [pyz.name, pyz.name + ".d"]


def _hashed(python: Path, pyz: Path, root: Path) -> bool:
    """Whether this start hashed the unpacked copy (`info` itself imports no hashlib)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [str(python), "-I", "-X", "importtime", str(pyz), "--root", str(root), "info"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and json.loads(proc.stdout)["agent_version"], proc.stderr[-2000:]
    return any(line.rstrip().endswith("| hashlib") for line in proc.stderr.splitlines())


def test_a_stamped_copy_starts_without_hashing_until_a_file_changes(
    tmp_path: Path, device_python: Path
) -> None:
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    assert _hashed(device_python, pyz, root)  # the first start: unpack, full check, stamp
    assert not _hashed(device_python, pyz, root)  # the stamp stands for the check
    victim = Path(str(pyz) + ".d") / "device_agent" / "errors.py"
    good, st = victim.read_bytes(), victim.stat()
    # same size, same mtime, other bytes: only the ctime tells
    victim.write_bytes(good.replace(b"class ", b"klass ", 1))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    assert _hashed(device_python, pyz, root)
    assert victim.read_bytes() == good  # repaired from the zipapp
    assert not _hashed(device_python, pyz, root)


@pytest.mark.parametrize("stamp", ["garbage", "symlink", "others can write"])
def test_a_bad_stamp_means_a_full_check(tmp_path: Path, device_python: Path, stamp: str) -> None:
    """Each of these stamps would pass if it were believed (the files are intact)."""
    root = tmp_path / "root"
    pyz = build_zipapp(root / "agent")
    assert _hashed(device_python, pyz, root)
    path = Path(str(pyz) + ".d") / ".stamp"
    real = path.read_text()
    if stamp == "garbage":
        path.write_text("not a stamp\n")
    elif stamp == "symlink":  # a valid stamp, but somewhere else
        (tmp_path / "elsewhere").write_text(real)
        path.unlink()
        path.symlink_to(tmp_path / "elsewhere")
    else:
        path.chmod(0o666)
    assert _hashed(device_python, pyz, root)
    assert path.is_file() and not path.is_symlink() and path.read_text() == real
    assert path.stat().st_mode & 0o022 == 0
    assert not _hashed(device_python, pyz, root)
