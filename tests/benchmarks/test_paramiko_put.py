"""The paramiko put baseline (benchmarks/netlab/paramiko_put.py) against a real sshd."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlab.paramiko_put import GCM, prefer_gcm
from sshfleet import SshFleet

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "netlab" / "paramiko_put.py"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    with SshFleet(tmp_path_factory.mktemp("fleet"), ["d1"]) as f:
        yield f


def put(fleet: SshFleet, src: Path, dest: Path, known_hosts: Path) -> subprocess.CompletedProcess:
    s = fleet["d1"]
    argv = [sys.executable, str(SCRIPT), "--key", str(fleet.client_key_path)]
    argv += ["--known-hosts", str(known_hosts), "--user", s.user, "--port", str(s.port)]
    argv += ["--host", f"{s.host}:{dest}", str(src)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_prefer_gcm_moves_only_supported_gcm_first() -> None:
    assert prefer_gcm(("aes128-ctr", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com")) == (
        "aes128-gcm@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-ctr",
    )
    assert prefer_gcm(("aes128-ctr", "aes256-ctr")) == ("aes128-ctr", "aes256-ctr")
    assert set(GCM) <= set(prefer_gcm(("x",) + GCM))


def test_puts_the_file_over_aes_gcm(fleet: SshFleet, tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(3 << 20))
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = put(fleet, src, dest, fleet.known_hosts_path)
    assert proc.returncode == 0, proc.stderr  # it exits 1 unless AES-GCM was negotiated
    assert (dest / "blob.bin").read_bytes() == src.read_bytes()


def test_an_unknown_host_key_fails(fleet: SshFleet, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = put(fleet, src, dest, empty)
    assert proc.returncode == 1
    assert "SSHException" in proc.stderr, proc.stderr
    assert not (dest / "f").exists()
