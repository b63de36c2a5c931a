"""The skip guard (tests/skip_guard.py) in a real inner pytest run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

INNER = """
import pytest

def test_skips_without_reason_to():
    pytest.skip("sshd not installed")

@pytest.mark.jetson
def test_hardware_may_skip():
    pytest.skip("no board")

def test_importorskip_counts_too():
    pytest.importorskip("no_such_module_for_edge_tests")

@pytest.mark.xfail(reason="known")
def test_xfail_is_not_a_skip():
    assert False
"""


def test_only_the_hardware_suite_may_skip(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "skip_guard",
            "-p",
            "no:cacheprovider",
            "-o",
            "markers=jetson: board",
            str(tmp_path / "test_inner.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "FAILED test_inner.py::test_skips_without_reason_to" in out
    assert "FAILED test_inner.py::test_importorskip_counts_too" in out
    assert "only -m jetson may skip" in out and "sshd not installed" in out
    assert "2 failed, 1 skipped, 1 xfailed" in out
