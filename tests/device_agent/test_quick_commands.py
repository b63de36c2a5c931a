"""The commands every probe and push runs on a device (info, push-plan, push-receive,
push-commit) start without the job machinery and the job and result types: each of
those imports costs a board's Python start (~15 ms here, more on a Jetson's cores)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent.manifest import build_manifest
from device_agent.protocol_core import PUSH_FRAME

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("device_agent.protocol", "device_agent.jobs", "device_agent.runner")
# stdlib modules a push that finds everything there has no use for (shutil brings the
# compressors: ~5 ms of a start here)
NOT_FOR_A_PLAN = ("shutil", "tempfile", "bz2", "lzma")
PROBE = (
    f"STDLIB = {NOT_FOR_A_PLAN!r}\n"
    + """
import json, sys
sys.path.insert(0, sys.argv[1])
from device_agent.__main__ import main
code = main(sys.argv[2:])
loaded = sorted(m for m in sys.modules if m.startswith("device_agent") or m in STDLIB)
print(json.dumps({"code": code, "loaded": loaded}))
"""
)


def _run(root: Path, *args: str, stdin: bytes = b"") -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(ROOT), "--root", str(root), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    *answers, last = proc.stdout.decode().strip().splitlines()
    out: dict[str, object] = json.loads(last)
    out["answers"] = [json.loads(a) for a in answers]
    return out


@pytest.mark.parametrize("command", ["info", "push-plan", "push-commit", "push-receive"])
def test_quick_commands_import_no_job_machinery(tmp_path: Path, command: str) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "saved_model.pb").write_bytes(b"pb")
    manifest = build_manifest(str(tmp_path / "model")).to_dict()
    sha = manifest["entries"][0]["sha256"]
    header = {"manifest": manifest, "blobs": [sha], "commit": False}
    stream = json.dumps(header).encode() + b"\n" + PUSH_FRAME.pack(0, 0, 2) + b"pb"
    if command == "push-commit":  # the bytes first, so that there is something to commit
        assert _run(tmp_path / "root", "push-receive", stdin=stream)["code"] == 0
    stdin = {
        "info": b"",
        "push-plan": json.dumps(manifest).encode(),
        "push-commit": json.dumps(manifest).encode(),
        "push-receive": stream,
    }[command]
    out = _run(tmp_path / "root", command, stdin=stdin)
    assert out["code"] == 0
    assert out["answers"], "the command answered nothing"
    loaded = set(out["loaded"])  # type: ignore[arg-type]
    assert "device_agent.protocol_core" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    if command in ("info", "push-plan"):
        assert not loaded & set(NOT_FOR_A_PLAN), sorted(loaded & set(NOT_FOR_A_PLAN))


def test_disk_usage_says_what_shutil_says(tmp_path: Path) -> None:
    import shutil

    from device_agent.durable import disk_usage

    ours, theirs = disk_usage(str(tmp_path)), shutil.disk_usage(str(tmp_path))
    assert ours.total == theirs.total
    assert abs(ours.free - theirs.free) < 64 << 20  # other writers between the two calls


def test_a_job_command_still_loads_the_job_types(tmp_path: Path) -> None:
    out = _run(tmp_path / "root", "jobs")
    assert out["code"] == 0 and out["answers"] == [[]]
    assert {"device_agent.protocol", "device_agent.jobs"} <= set(out["loaded"])  # type: ignore[arg-type]
