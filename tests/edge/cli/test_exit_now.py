"""edge.cli.main._exit_now: a quick command's end without the interpreter's teardown,
only once nothing is left to finish."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import edge_bin

from edge.cli import main as cli_main
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory


class _Exited(Exception):
    pass


def _fake_exit(code: int) -> None:
    raise _Exited(code)


def test_the_atexit_handlers_run_before_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(os, "_exit", _fake_exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: ran.append("atexit"))
    with pytest.raises(_Exited) as info:
        cli_main._exit_now()
    assert info.value.args == (0,) and ran == ["atexit"]


def test_a_running_thread_gets_the_usual_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "_exit", _fake_exit)
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: pytest.fail("ran the handlers"))
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=False)
    worker.start()
    try:
        cli_main._exit_now()  # returns: the interpreter's exit joins the thread
    finally:
        stop.set()
        worker.join()


def test_a_quick_command_piped_to_a_file_keeps_all_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`edge fleet ls --json` into a file (block-buffered stdout): every byte is there,
    and an atexit handler of a module it loaded has run."""
    fleet = tmp_path / "fleet.yaml"
    monkeypatch.setenv("EDGE_FLEET", str(fleet))
    inventory = Inventory.load()
    for i in range(1, 200):
        inventory.add(Device(name=f"dev{i}", host=f"10.0.0.{i}"))
    inventory.save()
    out = tmp_path / "out.json"
    marker = tmp_path / "atexit-ran"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        f"import atexit\natexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
    )
    env = dict(os.environ, EDGE_FLEET=str(fleet), PYTHONPATH=str(site))
    with open(out, "wb") as f:
        proc = subprocess.run(
            [edge_bin(), "fleet", "ls", "--json"], stdout=f, stderr=subprocess.PIPE, env=env
        )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert sorted(r["name"] for r in rows) == sorted(f"dev{i}" for i in range(1, 200))
    assert marker.read_text() == "yes"
