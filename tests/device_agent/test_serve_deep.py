"""`serve` answers `info --deep` without keeping TensorFlow in the resident process.

A real `serve` (the zipapp under a board-like python3 that cannot import device_agent)
answers `info --deep`; afterwards no TensorFlow library is mapped into that process and
its resident memory did not grow by a TensorFlow import (hundreds of MB on a 4 GB board).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from edge.agent.package import build_zipapp


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _tf_mapped(pid: int) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return sorted({m.split()[-1] for m in maps if "tensorflow" in m.split()[-1]})


def test_deep_info_leaves_no_tensorflow_in_serve(tmp_path: Path, device_python: Path) -> None:
    pyz = build_zipapp(tmp_path / "agent")
    root = tmp_path / "root"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    proc = subprocess.Popen(
        [str(device_python), "-I", str(pyz), "--root", str(root), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(tmp_path),
        env=env,
    )
    assert proc.stdin and proc.stdout

    def ask(i: int, *argv: str) -> dict:
        assert proc.stdin and proc.stdout
        proc.stdin.write(json.dumps({"id": i, "argv": list(argv)}) + "\n")
        proc.stdin.flush()
        reply = json.loads(proc.stdout.readline())
        assert reply["id"] == i and reply["exit"] == 0, reply
        return json.loads(reply["stdout"])

    try:
        assert ask(1, "info")["tensorrt_enabled"] is None  # warm: the agent's modules loaded
        before = _rss_kb(proc.pid)
        deep = ask(2, "info", "--deep")
        assert deep["tensorflow"] and deep["tensorrt_enabled"] is not None  # TF really ran
        assert ask(3, "info", "--de")["tensorrt_enabled"] is not None  # argparse's prefix
        assert _tf_mapped(proc.pid) == []
        grown = _rss_kb(proc.pid) - before
        assert grown < 50_000, f"serve grew by {grown} kB answering info --deep"
        assert ask(4, "info")["agent_version"] == deep["agent_version"]  # still serving
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
