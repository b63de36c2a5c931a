"""`edge gc` on the local device: the table (piped, narrow), dry run, argument checks."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

from helpers import edge_bin
from rich.console import Console

from device_agent.protocol import SUCCEEDED, GcCategory, GcResult
from edge.views.gc import gc_table, human_bytes


def edge(*args: str, columns: int = 160) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS=str(columns))
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=300)


def files(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.lstat().st_size
        for p in root.rglob("*")
        if "agent" not in p.relative_to(root).parts[:1] and p.name != "gc.lock"
    }


def test_dry_run_table_piped_and_narrow_then_gc(tmp_path: Path, edge_home: Path) -> None:
    model = tmp_path / "m"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(os.urandom(3000))
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(2_500_000))
    assert edge("push", str(model), "--json").returncode == 0
    root = edge_home / "local-device"
    before = files(root)

    proc = edge("gc", "--keep", "0", "--grace", "0", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    (answer,) = json.loads(proc.stdout)
    size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
    assert answer["device"] == "local" and answer["dry_run"] and answer["bytes_freed"] == size
    for columns in (160, 40):  # piped: nothing is cut, however narrow COLUMNS says
        proc = edge("gc", "--keep", "0", "--grace", "0", "--dry-run", columns=columns)
        assert proc.returncode == 0, proc.stderr
        assert "would free" in proc.stdout and "…" not in proc.stdout
        assert human_bytes(size) in proc.stdout
    assert files(root) == before

    proc = edge("gc", "--keep", "0", "--grace", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"freed {human_bytes(size)} in all" in proc.stdout
    assert not [n for n in os.listdir(root / "models") if not n.startswith(".")]
    assert not [n for n in os.listdir(root / "store") if not n.startswith(".")]


def test_negative_keep_is_refused() -> None:
    proc = edge("gc", "--keep", "-1")
    assert proc.returncode == 2 and "--keep" in proc.stderr


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B" and human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(5 * 2**20) == "5.0 MiB"
    assert human_bytes(3 * 2**40) == "3.0 TiB" and human_bytes(2**50) == "1024.0 TiB"


def test_table_in_a_terminal_of_80_columns_cuts_nothing() -> None:
    names = ["jetson-orin-nano-devkit-lab-bench-07", "[/x]\x1b[2Jevil"]
    results = [
        GcResult(
            device=name,
            status=SUCCEEDED,
            bytes_freed=123_456_789_012,
            categories=[GcCategory("models", 12, 123_456_789_012, 3, 987_654_321)],
        )
        for name in names
    ]
    out = io.StringIO()
    Console(file=out, width=80, force_terminal=True, color_system=None).print(
        gc_table(results, dry_run=False)
    )
    text = out.getvalue()
    assert "\x1b[2J" not in text and "…" not in text
    assert names[0] in text and "[/x]" in text
    assert human_bytes(123_456_789_012) in text and human_bytes(2 * 123_456_789_012) in text
    assert "all devices" in text


def test_host_and_agent_agree_on_the_defaults() -> None:
    """The host cannot import device_agent.gc (device-only), so it restates the defaults."""
    import device_agent.gc as agent_gc
    from device_agent.__main__ import _parser
    from edge.ops import gc as host_gc

    args = _parser().parse_args(["gc"])
    assert args.keep == agent_gc.DEFAULT_KEEP == host_gc.DEFAULT_KEEP
    assert args.grace == agent_gc.GRACE_SECONDS == host_gc.GRACE_SECONDS
    assert not args.dry_run
