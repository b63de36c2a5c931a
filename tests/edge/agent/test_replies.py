"""A device that answers with malformed replies: each one fails that device with a clear
DeviceError (naming the device and the command), never a KeyError/TypeError traceback.

The device is real (the agent runs under the board-like `device_python`); only the
commands a test names answer with the canned reply (tests/hostile_device.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import edge_bin
from hostile_device import hostile_python, json_reply, set_replies
from sshfleet import SshFleet

from device_agent.protocol import BenchSpec
from edge.agent import replies
from edge.agent.client import AgentClient
from edge.agent.sessions import open_client
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.ops.push import make_payload, push_to

FACTS = {
    "agent_version": "1",
    "protocol": 1,
    "python": "3.8.10",
    "machine": "aarch64",
    "hostname": "h",
    "memory_total_mb": 8000,
    "memory_available_mb": 4000,
    "swap_total_mb": 0,
    "disk_free_mb": 1000,
}
STATE = {"job_id": "j1", "kind": "bench", "status": "running", "created_at": 1.0, "updated_at": 2.0}
LATENCY = {k: 1.0 for k in ("p50", "p90", "p95", "p99", "mean", "min", "max")}
RESULT = {
    "device": "h",
    "status": "succeeded",
    "runs": [{"batch_size": 1, "iterations": 10, "latency_ms": LATENCY, "throughput_per_s": 100.0}],
}
A_SHA = hashlib.sha256(b"x" * 100).hexdigest()  # the one blob `_push` sends
EVENT = {"seq": 0, "ts": 1.0, "kind": "log", "message": "hi"}


def text(s: str, exit: int = 0) -> dict[str, Any]:
    return {"stdout": s, "exit": exit}


def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


@pytest.fixture
def hostile(tmp_path: Path, device_python: Path) -> Iterator[tuple[Path, AgentClient]]:
    """(replies dir, an open client) of a local device whose python lies on cue."""
    exe = hostile_python(tmp_path / "hostile", device_python)
    device = Device(name="h", python=str(exe), root=str(tmp_path / "root"))
    with open_client(device) as client:
        yield tmp_path / "hostile", client


def _push(client: AgentClient, tmp: Path) -> Any:
    tree = tmp / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "a.bin").write_bytes(b"x" * 100)
    return push_to(client, make_payload(tree))


# command -> (what the host calls, {case: canned reply})
CASES: dict[str, tuple[Callable[[AgentClient, Path], Any], dict[str, dict[str, Any]]]] = {
    "info": (
        lambda c, t: c.info(),
        {
            "bad-json": text('{"agent_version": \n'),
            "not-an-object": json_reply([FACTS]),
            "missing-key": json_reply({"bogus": 1}),
            "wrong-type": json_reply(FACTS | {"memory_total_mb": "lots"}),
            "bool-for-int": json_reply(FACTS | {"protocol": True}),
            "list-for-dict": json_reply(FACTS | {"jetson": ["orin"]}),
            "null-for-str": json_reply(FACTS | {"hostname": None}),
        },
    ),
    "push-receive": (  # its first line is the push plan
        _push,
        {
            "bad-json": text("plan: all good\n"),
            "missing-key": json_reply({"missing": []}),
            "wrong-type": json_reply({"tree_digest": "t", "missing": {"sha256": "x"}}),
            "str-for-int": json_reply({"tree_digest": "t", "bytes_missing": "100"}),
            "negative-size": json_reply(
                {"tree_digest": "t", "missing": [{"sha256": "a" * 64, "size": -5}]}
            ),
            "bad-range": json_reply(
                {
                    "tree_digest": "t",
                    "missing": [{"sha256": "a" * 64, "size": 10, "ranges": [[8, 4]]}],
                }
            ),
            "foreign-blob": json_reply(
                {"tree_digest": "t", "missing": [{"sha256": "a" * 64, "size": 100}]}
            ),
            "wrong-size": json_reply(
                {"tree_digest": "t", "missing": [{"sha256": A_SHA, "size": 1 << 40}]}
            ),
        },
    ),
    "submit": (
        lambda c, t: c.submit(BenchSpec(model="m")),
        {
            "bad-json": text("submitted!\n"),
            "missing-key": json_reply({"id": "j1"}),
            "wrong-type": json_reply({"job_id": 5}),
            "list": json_reply(["j1"]),
            "path-job-id": json_reply({"job_id": "../../etc"}),
        },
    ),
    "status": (
        lambda c, t: c.status("j1"),
        {
            "bad-json": text("running\n"),
            "missing-key": json_reply(without(STATE, "status")),
            "wrong-type": json_reply(STATE | {"created_at": "yesterday"}),
            "negative-position": json_reply(STATE | {"queue_position": -1}),
        },
    ),
    "result": (
        lambda c, t: c.result("bench", "j1"),
        {
            "bad-json": text("[1, 2\n"),
            "missing-key": json_reply(without(RESULT, "device")),
            "wrong-type": json_reply(RESULT | {"runs": {"batch_size": 1}}),
            "nested-wrong-type": json_reply(
                RESULT | {"runs": [RESULT["runs"][0] | {"latency_ms": [1.0]}]}
            ),
        },
    ),
    "jobs": (
        lambda c, t: c.jobs(),
        {
            "bad-json": text("j1 running\n"),
            "missing-key": json_reply([without(STATE, "job_id")]),
            "wrong-type": json_reply({"j1": STATE}),
            "item-wrong-type": json_reply([STATE, "j2"]),
        },
    ),
    "follow": (
        lambda c, t: c.follow("j1", 3),
        {
            "bad-json": text(json.dumps(EVENT | {"seq": 3}) + "\n{{garbage\n"),
            "missing-key": text(json.dumps(without(EVENT, "seq")) + "\n"),
            "wrong-type": text(json.dumps(EVENT | {"seq": "3"}) + "\n"),
            "seq-backwards": text(
                json.dumps(EVENT | {"seq": 3}) + "\n" + json.dumps(EVENT | {"seq": 1}) + "\n"
            ),
            "bad-error-object": text(json.dumps({"error": {"x": 1}, "hint": 2}) + "\n", 3),
        },
    ),
    "cancel": (
        lambda c, t: c.cancel("j1"),
        {
            "bad-json": text("canceled\n"),
            "missing-key": json_reply(without(STATE, "kind")),
            "wrong-type": json_reply(STATE | {"pid": "123"}),
        },
    ),
}

PARAMS = [
    pytest.param(cmd, case, id=f"{cmd}-{case}")
    for cmd, (_, cases) in CASES.items()
    for case in cases
]


@pytest.mark.parametrize(("command", "case"), PARAMS)
def test_malformed_reply_is_a_clear_device_error(
    hostile: tuple[Path, AgentClient], tmp_path: Path, command: str, case: str
) -> None:
    replies_dir, client = hostile
    call, cases = CASES[command]
    set_replies(replies_dir, {command: cases[case]})
    with pytest.raises(DeviceError) as info:
        call(client, tmp_path)
    assert info.value.message.startswith(f"h: malformed reply to `{command}`: "), info.value.message
    assert info.value.hint and "h" in info.value.hint


@pytest.mark.parametrize(
    "reply",
    [
        text("this is not JSON\n", 3),
        text(json.dumps(["error", "x"]) + "\n", 3),
        text(json.dumps({"error": ["x"], "hint": None}) + "\n", 3),
        text(json.dumps({"error": "x", "hint": 5}) + "\n", 3),
    ],
    ids=["bad-json", "not-an-object", "error-not-str", "hint-not-str"],
)
def test_malformed_agent_error_object(
    hostile: tuple[Path, AgentClient], reply: dict[str, Any]
) -> None:
    """Exit 3 means "the agent's own error object": it is checked like any other reply."""
    replies_dir, client = hostile
    set_replies(replies_dir, {"status": reply})
    with pytest.raises(DeviceError, match=r"^h: malformed reply to `status`: "):
        client.status("j1")


def test_agent_error_object_is_still_reported(hostile: tuple[Path, AgentClient]) -> None:
    """A well-formed error object keeps its message and hint (the check is not blind)."""
    replies_dir, client = hostile
    set_replies(replies_dir, {"status": json_reply({"error": "no job j1", "hint": "ls"}, 3)})
    with pytest.raises(DeviceError) as info:
        client.status("j1")
    assert (info.value.message, info.value.hint) == ("h: no job j1", "ls")


def test_unknown_fields_from_a_newer_agent_stay_ignored(hostile: tuple[Path, AgentClient]) -> None:
    replies_dir, client = hostile
    set_replies(replies_dir, {"info": json_reply(FACTS | {"gpu_clock_mhz": "new"})})
    facts = client.info()
    assert facts.memory_total_mb == FACTS["memory_total_mb"]


def test_over_long_reply(
    hostile: tuple[Path, AgentClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    replies_dir, client = hostile
    monkeypatch.setattr(replies, "MAX_REPLY_CHARS", 1000)
    set_replies(replies_dir, {"info": json_reply(FACTS | {"hostname": "h" * 2000})})
    with pytest.raises(DeviceError, match=r"^h: malformed reply to `info`: .*too long"):
        client.info()


def test_real_agent_replies_still_decode(hostile: tuple[Path, AgentClient]) -> None:
    """No canned reply: the real agent's info/jobs pass the checks."""
    _, client = hostile
    facts = client.info()
    assert facts.python.startswith(f"{sys.version_info[0]}.")
    assert client.jobs() == []


# --------------------------------------------------------------------------- the probe

_PROBE_LIAR = """\
#!{real}
import os, sys
if len(sys.argv) > 1 and sys.argv[1] == "-c" and "hashlib" in sys.argv[2]:
    sys.stdout.buffer.write({out!r})
    sys.exit(0)
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""


@pytest.mark.parametrize(
    "out",
    [
        b"Python 3.10\n",
        b'{"python": "3.10.1"}\n',
        b'{"python": 3.1, "numpy": null, "agent": null}\n',
        b'{"python": "three", "numpy": null, "agent": null}\n',
        b'{"python": "3.10.1", "numpy": 1, "agent": null}\n',
        b'{"python": "3.10.1", "numpy": null, "agent": ["x"]}\n',
        b'\xff\xfe{"python"\n',
    ],
    ids=[
        "bad-json",
        "missing-key",
        "wrong-type",
        "bad-version",
        "numpy-not-str",
        "agent-not-str",
        "non-utf8",
    ],
)
def test_malformed_probe_reply(tmp_path: Path, device_python: Path, out: bytes) -> None:
    exe = tmp_path / "python3"
    exe.write_text(_PROBE_LIAR.format(real=str(device_python), out=out))
    exe.chmod(0o755)
    device = Device(name="h", python=str(exe), root=str(tmp_path / "root"))
    with (
        open_client(device) as client,
        pytest.raises(DeviceError, match=r"^h: malformed reply to `probe`: "),
    ):
        client.ensure_agent()


# --------------------------------------------------------------------------- over real sshd


def _fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path) -> Path:
    """d1, d2, d3 by their ssh_config aliases; d2 runs the agent with a lying python."""
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    liar = tmp_path / "liar"
    exe = hostile_python(liar, device_python)
    inv = Inventory.load()
    for name in ("d1", "d2", "d3"):
        inv.add(
            Device(
                name=name,
                host=name,
                python=str(exe if name == "d2" else device_python),
                root=str(tmp_path / "roots" / name),
            )
        )
    inv.save()
    return liar


def _edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="200")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=600)


def _one_clear_failure(proc: subprocess.CompletedProcess[str], command: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"d2: malformed reply to `{command}`" in proc.stdout + proc.stderr


def test_fleet_keeps_the_good_devices_results(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device_python: Path
) -> None:
    liar = _fleet(tmp_path, monkeypatch, device_python)
    set_replies(
        liar,
        {
            "info": json_reply(without(FACTS, "memory_total_mb")),
            "push-receive": json_reply({"missing": []}),
        },
    )
    targets = "d1,d2,d3"

    for args in (
        ["info", "--to", targets, "--json"],
        ["fleet", "probe", "--to", targets, "--json"],
    ):
        proc = _edge(*args)
        _one_clear_failure(proc, "info")
        rows = {r["device"]: r for r in json.loads(proc.stdout)}
        assert list(rows) == ["d1", "d2", "d3"]
        for good in ("d1", "d3"):
            facts = rows[good]["facts"]  # info and probe: one object per device
            assert facts["hostname"] and facts["memory_total_mb"] > 0, rows[good]
        assert "memory_total_mb" in rows["d2"]["error"] and rows["d2"]["hint"]
    table = _edge("info", "--to", targets)
    _one_clear_failure(table, "info")
    assert "d1" in table.stdout and "d3" in table.stdout

    tree = tmp_path / "model"
    tree.mkdir()
    (tree / "saved_model.pb").write_bytes(b"not really a model, but pushed all the same")
    proc = _edge("push", str(tree), "--to", targets, "--json")
    _one_clear_failure(proc, "push-receive")
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert [rows[d]["status"] for d in ("d1", "d2", "d3")] == ["succeeded", "failed", "succeeded"]
    for good in ("d1", "d3"):
        pushed = Path(rows[good]["model_path"])
        pushed = pushed if pushed.is_absolute() else Path.home() / pushed
        assert (pushed / "saved_model.pb").read_bytes() == (tree / "saved_model.pb").read_bytes()
    assert "tree_digest" in rows["d2"]["error"]
