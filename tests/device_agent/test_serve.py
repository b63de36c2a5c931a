"""The agent's `serve` mode: many commands from one process, each isolated."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from pathlib import Path

import pytest
from helpers import agent_cmd, agent_env

from device_agent import facts
from device_agent import serve as serve_mod
from device_agent.__main__ import main
from device_agent.serve import answer, serve
from device_agent.trt_types import BackendCheck, Capabilities


def test_answer_runs_a_command_with_its_stdin(tmp_path: Path) -> None:
    from device_agent.manifest import build_manifest

    small_model = tmp_path / "model"
    (small_model / "variables").mkdir(parents=True)
    (small_model / "saved_model.pb").write_bytes(b"\x08\x01" * 100)
    (small_model / "variables" / "v.data").write_bytes(bytes(range(256)) * 40)
    manifest = build_manifest(str(small_model), name="m").to_json().encode()
    root = str(tmp_path / "root")
    reply = answer(
        main, root, {"id": 7, "argv": ["push-plan"], "stdin": base64.b64encode(manifest).decode()}
    )
    assert reply["id"] == 7 and reply["exit"] == 0, reply
    plan = json.loads(reply["stdout"])
    assert plan["bytes_missing"] == sum(e.size for e in build_manifest(str(small_model)).entries)


def test_refusals_and_failures_are_replies_not_crashes(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    assert answer(main, root, {"id": 1, "argv": ["_work", "x"]})["exit"] == 2  # not served
    assert answer(main, root, {"id": 2, "argv": ["status"]})["exit"] == 2  # argparse: no id
    bad = answer(main, root, {"id": 3, "argv": ["status", "no-such-job"]})
    assert bad["exit"] == 3 and "error" in json.loads(bad["stdout"])


def test_serve_loop_answers_in_order_and_survives_garbage(tmp_path: Path) -> None:
    lines = (
        "\n".join(
            [
                json.dumps({"id": 1, "argv": ["jobs"]}),
                "not json",
                "[1, 2]",
                json.dumps({"id": 4, "argv": ["jobs"]}),
            ]
        )
        + "\n"
    )
    out = io.StringIO()
    assert serve(main, str(tmp_path / "root"), io.StringIO(lines), out) == 0
    replies = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["id"] for r in replies] == [1, None, None, 4]
    assert [r["exit"] for r in replies] == [0, 2, 2, 0]
    assert json.loads(replies[0]["stdout"]) == []


def test_serve_process_keeps_answering(tmp_path: Path) -> None:
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [*agent_cmd(root), "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=agent_env(),
    )
    assert proc.stdin and proc.stdout
    try:
        for i in range(3):
            proc.stdin.write(json.dumps({"id": i, "argv": ["info"]}) + "\n")
            proc.stdin.flush()
            reply = json.loads(proc.stdout.readline())
            assert reply["id"] == i and reply["exit"] == 0
            assert json.loads(reply["stdout"])["agent_version"]
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_deep_info_is_answered_in_process_while_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`info --deep` goes to a forked child only when it would probe (import TensorFlow):
    with the deep probe's answer cached, the resident process answers it itself."""
    children: list[list[str]] = []

    def child(main_: object, root: str, request: dict) -> dict:
        children.append(list(request["argv"]))
        # a child that inherited the in-process guard could never probe
        facts.collect(deep=True, root_dir=str(tmp_path / f"child{len(children)}"))
        return {"id": request.get("id"), "exit": 0, "stdout": "{}", "stderr": ""}

    probes: list[int] = []
    caps = Capabilities(tensorrt="10.3.0", backends=[BackendCheck("onnx-trt", True, "ok")])

    def probe() -> tuple[bool, str, str, Capabilities]:
        probes.append(1)
        return True, "10.3.0", "10.3.0", caps

    monkeypatch.setattr(serve_mod, "_answer_in_child", child)
    monkeypatch.setattr(facts, "_deep_probe_now", probe)
    root = str(tmp_path / "root")
    request = {"id": 1, "argv": ["info", "--deep"]}
    assert answer(main, root, request) == {"id": 1, "exit": 0, "stdout": "{}", "stderr": ""}
    assert children == [["info", "--deep"]] and probes == [1]  # cold: the child probes
    facts.collect(deep=True, root_dir=root)  # what the child would have cached
    assert probes == [1, 1]
    reply = answer(main, root, {"id": 2, "argv": ["info", "--deep"]})
    assert reply["exit"] == 0, reply
    got = json.loads(reply["stdout"])
    assert got["capabilities"]["tensorrt"] == "10.3.0" and got["tensorrt_enabled"] is True
    assert len(children) == 1 and probes == [1, 1]  # hot: answered here, nothing probed
    assert answer(main, root, {"id": 3, "argv": ["plan"]})["exit"] == 0
    assert children[-1] == ["plan"]  # plan always imports TensorFlow: always the child
    facts.collect(deep=True, root_dir=str(tmp_path / "other"))  # the guard was lifted
    assert len(probes) == 4
