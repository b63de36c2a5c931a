"""Client CPU accounting of the push benchmark's tool runs (netlab.tools.Tools.run)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from netlab.tools import ToolFailed, Tools

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def tools(tmp_path: Path) -> Tools:
    return Tools(cast(Any, None), tmp_path, sys.executable, timeout=60.0)


def burn(seconds: float) -> list[str]:
    return [sys.executable, "-c", BURN.format(s=seconds)]


def test_cpu_of_the_tool_and_its_children_is_counted(tmp_path: Path) -> None:
    t = tools(tmp_path)
    # the tool itself burns 0.3 s and waits for a child that burns 0.3 s more
    spawn = f"import subprocess, sys; subprocess.run({burn(0.3)!r}, check=True)\n"
    t.run([[sys.executable, "-c", spawn + BURN.format(s=0.3)]])
    assert 0.6 <= t.cpu_s < 1.5
    assert t.cpu_clean
    before = t.cpu_s
    t.run([burn(0.2), burn(0.2)])  # two at once: both are counted
    assert 0.4 <= t.cpu_s - before < 1.2


def test_a_long_lived_child_is_not_counted(tmp_path: Path) -> None:
    """A harness child that lives on (like the lab's sshd) adds nothing while unreaped."""
    t = tools(tmp_path)
    daemon = subprocess.Popen(burn(1.0))
    try:
        time.sleep(0.5)  # it burns meanwhile
        t.run([[sys.executable, "-c", "pass"]])
        assert t.cpu_s < 0.4
        assert t.cpu_clean
    finally:
        daemon.kill()
        daemon.wait()


def test_a_child_reaped_during_the_run_marks_the_cpu_unclean(tmp_path: Path) -> None:
    t = tools(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    reaper = threading.Thread(target=other.wait)
    reaper.start()  # reaps `other` while the tool below still runs
    t.run([[sys.executable, "-c", "import time; time.sleep(1.0)"]])
    reaper.join()
    assert not t.cpu_clean


def test_a_failed_run_raises(tmp_path: Path) -> None:
    with pytest.raises(ToolFailed, match="exit 3"):
        tools(tmp_path).run([[sys.executable, "-c", "raise SystemExit(3)"]])


def test_a_failed_edge_run_names_the_device_error(tmp_path: Path) -> None:
    # the error line is not among the last lines (edge prints more fields after it)
    out = '[{"device": "b2", "error": "disk full", "a": 1, "b": 2, "c": 3}, {"error": null}]'
    script = f"import json; print(json.dumps(json.loads({out!r}), indent=2)); raise SystemExit(1)"
    with pytest.raises(ToolFailed, match="disk full"):
        tools(tmp_path).run([[sys.executable, "-c", script]])
