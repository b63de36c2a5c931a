"""One CLI (issue 13, item 6): one targeting option, --json on every command, the same
`info` shape whatever fails, --version, completion, -q/-v, `python -m edge`, NO_COLOR; and
two defects of item 3: `fleet add --replace` without --host, `convert --dry-run` exit codes."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from demo_run import DemoRun
from helpers import edge_bin
from typer.testing import CliRunner

from device_agent.protocol import PROTOCOL_VERSION, BenchResult, DeviceFacts
from edge import __version__
from edge.cli.main import app

# Commands that address no device; what they act on is named some other way.
NOT_DEVICES = {
    "fleet add": "names the device it creates",
    "fleet rm": "names inventory entries",
    "fleet import": "reads an inventory file",
    "recipes ls": "recipes",
    "recipes show": "a recipe (and a device class)",
    "recipes validate": "recipe files",
    "runs show": "a run id",
    "runs compare": "two run ids",
    "report": "run ids",
    "export": "runs on this host",
    "demo": "always the built-in local device",
    "mux start": "the host's multiplexer",
    "mux stop": "the host's multiplexer",
    "mux status": "the host's multiplexer",
}
ANSI = "\x1b["


def edge(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="300")
    full.pop("NO_COLOR", None)
    full.update(env or {})
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=full, timeout=timeout
    )


def commands() -> dict[str, Any]:
    """Every leaf command of the real app, by its path ("fleet add"). Typer's click is its
    own (typer._click), so parameters are told apart by their param_type_name."""
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(app), [])
    return found


def options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if p.param_type_name == "option"]


def visible_opts(cmd: Any) -> set[str]:
    return {o for p in options(cmd) if not p.hidden for o in p.opts}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "fleet.yaml"
    monkeypatch.setenv("EDGE_FLEET", str(path))
    return path


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_dead_device(name: str = "dead") -> None:
    proc = edge("fleet", "add", name, "--host", "127.0.0.1", "--port", str(closed_port()))
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- the app's shape


def test_every_command_that_addresses_devices_takes_to() -> None:
    found = commands()
    assert set(NOT_DEVICES) <= set(found), set(NOT_DEVICES) - set(found)  # no stale names
    for path, cmd in found.items():
        opts = visible_opts(cmd)
        if path not in NOT_DEVICES:
            assert {"--to", "-t"} <= opts, f"edge {path} has no --to/-t"
        # the old spellings are hidden (still accepted), so help shows one way only
        assert not opts & {"--from", "--device"}, f"edge {path}: {opts & {'--from', '--device'}}"
        visible_args = [p for p in cmd.params if p.param_type_name == "argument" and not p.hidden]
        assert all(a.metavar != "TARGETS" for a in visible_args), path
        for p in options(cmd):
            if "-t" in p.opts:
                assert "--to" in p.opts, f"edge {path}: -t is {p.opts}"
            if "-d" in p.opts:  # one meaning: a device class
                assert path == "recipes show" and "--device-class" in p.opts, path


def test_every_command_reports_json() -> None:
    missing = [path for path, cmd in commands().items() if "--json" not in visible_opts(cmd)]
    assert missing == []


def test_json_output_parses_for_the_reporting_commands(fleet: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> Any:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (args, result.output, result.exception)
        return json.loads(result.stdout)

    assert run("fleet", "add", "n1", "--host", "127.0.0.1", "--port", "9", "--json")["name"] == "n1"
    assert [d["name"] for d in run("fleet", "ls", "--to", "n1", "--json")] == ["n1"]
    recipes = run("recipes", "ls", "--json")
    assert recipes and run("recipes", "show", recipes[0]["name"], "--json")["recipe"]
    rows = run("recipes", "validate", *[r["path"] for r in recipes], "--json")
    assert [r["ok"] for r in rows] == [True] * len(recipes)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    (row,) = run("recipes", "validate", str(bad), "--json", code=1)
    assert row["ok"] is False and row["error"]
    assert run("runs", "ls", "--json") == []
    assert run("runs", "export", "--json") == []
    assert run("mux", "stop", "--json") == {"stopped": False}
    assert run("mux", "status", "--json")["running"] is False
    (info,) = run("info", "--to", "local", "--json")
    assert DeviceFacts.from_dict(info["facts"]).agent_version == __version__
    assert [r["device"] for r in run("agent", "install", "--to", "local", "--json")] == ["local"]
    assert isinstance(run("jobs", "ls", "--to", "local", "--json"), list)
    assert [d["name"] for d in run("fleet", "rm", "n1", "--json")] == ["n1"]
    assert run("fleet", "ls", "--json") == []


def test_old_spellings_still_work_but_not_both(fleet: Path) -> None:
    runner = CliRunner()
    old = runner.invoke(app, ["info", "local", "--json"])
    assert old.exit_code == 0, old.output
    assert json.loads(old.stdout)[0]["device"] == "local"
    assert runner.invoke(app, ["jobs", "ls", "local", "--json"]).exit_code == 0
    assert runner.invoke(app, ["runs", "ls", "--device", "local", "--json"]).exit_code == 0
    both = edge("info", "local", "--to", "other")
    assert both.returncode == 1 and "Two device selections" in both.stderr


def test_runs_to_filters_by_names_and_tags(fleet: Path, tmp_path: Path) -> None:
    from edge.history.record import record_runs

    model = tmp_path / "model"
    model.mkdir()
    for name in ("a", "b", "c"):
        record_runs("bench", [BenchResult(name, "succeeded", backend="native")], model, None)
    for name in ("a", "b"):
        assert edge("fleet", "add", name, "--host", "h", "--tag", "lab").returncode == 0

    def devices(*args: str) -> list[str]:
        proc = edge("runs", "ls", *args, "--json")
        assert proc.returncode == 0, proc.stderr
        return [r["device"] for r in json.loads(proc.stdout)]

    assert devices("--to", "a,c") == ["a", "c"]
    assert devices("-t", "tag:lab") == ["a", "b"]
    assert devices("--to", "a,b,c", "-n", "1") == ["c"]
    assert devices("--to", "b") == ["b"]


# ---------------------------------------------------------------- root options


def test_version_from_the_script_and_python_m_edge() -> None:
    want = f"jetson-edge {__version__} (agent protocol {PROTOCOL_VERSION})"
    assert edge("--version").stdout.strip() == want
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    mod = subprocess.run(
        [sys.executable, "-m", "edge", "--version"], capture_output=True, text=True, env=env
    )
    assert mod.returncode == 0 and mod.stdout.strip() == want
    helped = subprocess.run(
        [sys.executable, "-m", "edge", "--help"], capture_output=True, text=True, env=env
    )
    assert "Usage: edge " in helped.stdout  # the program is called edge, not __main__.py


def test_shell_completion_is_enabled() -> None:
    assert "--install-completion" in edge("--help").stdout
    complete = {"_EDGE_COMPLETE": "complete_bash", "COMP_CWORD": "1", "COMP_WORDS": "edge fle"}
    assert "fleet" in edge(env=complete).stdout.split()
    options = edge(env=complete | {"COMP_CWORD": "2", "COMP_WORDS": "edge info --"})
    assert "--to" in options.stdout.split()


def test_no_color_means_no_escapes_even_when_forced(fleet: Path) -> None:
    add_dead_device()
    forced = {"FORCE_COLOR": "1", "TERM": "xterm-256color"}
    for args in (["fleet", "ls"], ["info", "--to", "dead"]):
        colored = edge(*args, env=forced)
        assert ANSI in colored.stdout + colored.stderr, args  # the control: styles are on
        plain = edge(*args, env=forced | {"NO_COLOR": "1"})
        assert ANSI not in plain.stdout + plain.stderr, (args, plain.stdout + plain.stderr)
        assert "dead" in plain.stdout + plain.stderr


def test_quiet_drops_progress_and_verbose_adds_debug(fleet: Path, tiny_model: Path) -> None:
    bench = ["bench", str(tiny_model), "--iterations", "3", "--warmup", "0", "--no-telemetry"]
    loud = edge(*bench)
    assert loud.returncode == 0, loud.stderr
    assert "local" in loud.stderr and "recorded as" in loud.stderr  # progress lines, a note
    quiet = edge("-q", *bench)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip() == "" and "p50" in quiet.stdout  # the result, nothing else
    add_dead_device()
    plain = edge("info", "--to", "dead")
    assert plain.returncode == 1 and "debug:" not in plain.stderr
    verbose = edge("-v", "info", "--to", "dead")
    assert verbose.returncode == 1 and "debug: edge." in verbose.stderr
    errors_only = edge("-q", "info", "--to", "dead")
    assert errors_only.returncode == 1 and "dead: failed:" in errors_only.stderr


# ---------------------------------------------------------------- info's shape


def test_info_keeps_successes_and_one_shape_when_a_device_fails(fleet: Path) -> None:
    add_dead_device()
    both = edge("info", "--to", "local,dead", "--json")
    assert both.returncode == 1, both.stderr
    rows = {r["device"]: r for r in json.loads(both.stdout)}
    assert list(rows) == ["local", "dead"]
    assert rows["local"]["status"] == "succeeded" and rows["local"]["error"] is None
    assert DeviceFacts.from_dict(rows["local"]["facts"]).memory_total_mb > 0
    assert rows["dead"]["status"] == "failed" and rows["dead"]["facts"] is None
    assert "unreachable" in rows["dead"]["error"] and rows["dead"]["hint"]
    alone = edge("info", "--to", "dead", "--json")
    assert alone.returncode == 1
    (row,) = json.loads(alone.stdout)
    assert set(row) == set(rows["dead"]) and row["status"] == "failed"
    ok = edge("info", "--to", "local", "--json")
    assert ok.returncode == 0 and set(json.loads(ok.stdout)[0]) == set(row)
    table = edge("info", "--to", "local,dead")
    assert table.returncode == 1
    assert "memory" in table.stdout and "dead: failed:" in table.stderr


# ---------------------------------------------------------------- item 3: two defects


def test_fleet_add_replace_keeps_what_is_not_given(fleet: Path) -> None:
    first = edge("fleet", "add", "n1", "--host", "h1", "--port", "2222", "--user", "u")
    assert first.returncode == 0, first.stderr
    again = edge("fleet", "add", "n1", "--host", "h2")
    assert again.returncode == 1 and "--replace" in again.stderr  # the hint suggests it
    changed = edge("fleet", "add", "n1", "--port", "2300", "--replace", "--json")
    assert changed.returncode == 0, changed.stderr
    device = json.loads(changed.stdout)
    assert (device["host"], device["port"], device["user"]) == ("h1", 2300, "u")
    # the hint of an unknown tag, as printed, with its placeholders filled in
    untagged = edge("fleet", "ls", "--to", "tag:gpu")
    assert untagged.returncode == 1
    hinted = re.search(r"edge (fleet add NAME\b.*?--replace)", untagged.stderr)
    assert hinted, untagged.stderr
    words = hinted.group(1).replace("NAME", "n1").replace("HOST", "h1").replace("TAG", "gpu")
    taken = edge(*words.split())
    assert taken.returncode == 0, taken.stderr
    (tagged,) = json.loads(edge("fleet", "ls", "--to", "tag:gpu", "--json").stdout)
    assert (tagged["name"], tagged["port"], tagged["user"]) == ("n1", 2300, "u")
    new = edge("fleet", "add", "n2", "--port", "22")
    assert new.returncode == 1 and "--host" in new.stderr and "hint:" in new.stderr


def test_fleet_add_jump_is_stored_shown_and_kept(fleet: Path) -> None:
    added = edge("fleet", "add", "b1", "--host", "10.0.0.9", "--jump", "ops@bastion:2222", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["jump"] == "ops@bastion:2222"
    edge("fleet", "add", "b1", "--user", "jetson", "--replace")
    (row,) = json.loads(edge("fleet", "ls", "--to", "b1", "--json").stdout)
    assert (row["jump"], row["user"]) == ("ops@bastion:2222", "jetson")
    listed = edge("fleet", "ls", "--to", "b1")
    assert "via ops@bastion:2222" in listed.stdout, listed.stdout
    bad = edge("fleet", "add", "b2", "--host", "h", "--jump", "-oProxyCommand=x")
    assert bad.returncode == 1 and "jump" in bad.stderr


def test_dry_run_exits_1_for_plans_that_cannot_work(mnist_model: Path) -> None:
    fine = edge("convert", str(mnist_model), "--dry-run", "--json")
    assert fine.returncode == 0, fine.stderr
    assert json.loads(fine.stdout)[0]["plan"]["blockers"] == []

    bert = edge("convert", str(mnist_model), "--recipe", "bert-base", "--dry-run", "--json")
    assert bert.returncode == 1, bert.stderr
    (row,) = json.loads(bert.stdout)  # the plans still print
    assert row["status"] == "succeeded" and row["plan"]["blockers"]
    assert all("flatten_input" in b and "input_ids" in b for b in row["plan"]["blockers"])
    assert "local: cannot work: build shapes" in bert.stderr

    tftrt = edge("convert", str(mnist_model), "--backend", "tftrt", "--dry-run")
    assert tftrt.returncode == 1  # the plan itself says the conversion would fail here
    assert "local: cannot work: tftrt requested" in tftrt.stderr


@pytest.mark.slow
def test_demo_json(demo_runs: dict[str, DemoRun]) -> None:
    run = demo_runs["json"]  # `edge demo --model MNIST --json`, run once (tests/demo_run.py)
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)  # stdout is the JSON alone: no step lines, no tables
    assert [r["device"] for r in data["convert"]] == ["local"]
    assert [BenchResult.from_dict(r).status for r in data["bench"]] == ["succeeded"] * 2
    assert len(data["runs"]) == 3


def test_demo_steps_are_progress_that_quiet_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.cli import _utils, demo
    from edge.views.layout import PipeConsole

    record = PipeConsole(width=100, record=True)
    monkeypatch.setattr(demo, "console", record)
    for quiet in (False, True):
        monkeypatch.setattr(_utils.output, "quiet", quiet)
        demo._step("[bold]1/3[/] building the model")
    assert record.export_text().count("1/3 building the model") == 1
