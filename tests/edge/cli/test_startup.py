"""Start-up of the `edge` command (issue 14): a fleet command or a push loads only what it
runs, and the fast parser (edge.cli.fast) reads a command line as typer reads it, or
hands it to typer. Timings are benchmarks' business; these check what is loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer

from edge.cli import fast, quick
from edge.cli.main import build_app
from edge.fleet.inventory import inventory_path

# loaded by no fleet command or push: conversion, plots, typer's pydantic coercion
HEAVY = [
    "typer",
    "numpy",
    "tensorflow",
    "pydantic",
    "typer._adapters",
    "paramiko",
    "edge.ops.convert",
    "edge.ops.export",
    "edge.recipes.loader",
    "edge.history.record",
]

RUN = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n"))
sys.argv = ["edge", *json.loads(sys.argv[1])]
from edge.cli.main import main
{before}
main()
"""


def run_edge(*args: str, full_app: bool = False) -> tuple[subprocess.CompletedProcess[str], set]:
    """`edge ARGS` in a fresh interpreter (the test's EDGE_HOME), and the modules it had
    loaded at exit; `full_app`: through typer's app of every command, as before."""
    before = "import edge.cli.main as m; m.app" if full_app else ""
    env = dict(os.environ, COLUMNS="200")
    env.pop("_EDGE_COMPLETE", None)
    proc = subprocess.run(
        [sys.executable, "-c", RUN.format(before=before), json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("MODULES "), proc.stderr
    proc.stderr = "\n".join(lines[:-1])
    return proc, set(json.loads(lines[-1][len("MODULES ") :]))


def heavy(modules: set) -> list[str]:
    return [h for h in HEAVY if any(m == h or m.startswith(h + ".") for m in modules)]


def add_device(name: str) -> None:
    proc, _mods = run_edge("fleet", "add", name, "--host", "127.0.0.1", "--tag", "lab")
    assert proc.returncode == 0, proc.stderr


def test_fleet_ls_loads_nothing_heavy_and_prints_what_typer_prints() -> None:
    add_device("d1")
    fast_run, modules = run_edge("fleet", "ls", "--json")
    assert fast_run.returncode == 0, fast_run.stderr
    assert heavy(modules) == []
    assert "device_agent.protocol" not in modules  # a listing needs no agent protocol
    typer_run, typer_modules = run_edge("fleet", "ls", "--json", full_app=True)
    assert "pydantic" in typer_modules  # the comparison is with typer's own path
    assert (fast_run.returncode, fast_run.stdout) == (typer_run.returncode, typer_run.stdout)
    assert [d["name"] for d in json.loads(fast_run.stdout)] == ["d1"]


def test_push_to_local_loads_nothing_heavy(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(os.urandom(2048))
    (model / "variables" / "variables.index").write_bytes(os.urandom(512))
    proc, modules = run_edge("push", str(model), "--to", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)] == ["succeeded"]
    assert heavy(modules) == []


# what a quick command's JSON output needs none of: rich (tables, bars), PyYAML (an
# inventory unchanged since it was last parsed) and the job types of the agent protocol
NOT_FOR_JSON = ["rich", "yaml", "device_agent.protocol"]


def loaded(names: list[str], modules: set) -> list[str]:
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


def test_quick_commands_with_json_load_no_rich_yaml_or_job_protocol(tmp_path: Path) -> None:
    add_device("d1")  # fleet.yaml, parsed once by this command
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(os.urandom(2048))
    for args in (
        ("fleet", "ls", "--json"),
        ("fleet", "probe", "--to", "local", "--quick", "--json"),
        ("push", str(model), "--to", "local", "--json"),
    ):
        proc, modules = run_edge(*args)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)
        assert loaded(NOT_FOR_JSON, modules) == [], args
    # a table, an edited inventory and a job command still load what they need
    proc, modules = run_edge("fleet", "ls")
    assert proc.returncode == 0 and "d1" in proc.stdout
    assert loaded(["rich"], modules) == ["rich"]
    add_device("d2")  # `fleet add` leaves what it wrote parsed
    proc, modules = run_edge("fleet", "ls", "--json")
    assert [d["name"] for d in json.loads(proc.stdout)] == ["d1", "d2"]
    assert loaded(["yaml"], modules) == []
    path = inventory_path()  # edited by hand: parsed afresh
    path.write_text(path.read_text() + "  d3: {host: 10.0.0.3}\n")
    proc, modules = run_edge("fleet", "ls", "--json")
    assert [d["name"] for d in json.loads(proc.stdout)] == ["d1", "d2", "d3"]
    assert loaded(["yaml"], modules) == ["yaml"]


@pytest.mark.parametrize(
    "args",
    [
        ("fleet", "probe", "--to", "nosuch", "--json"),  # a user error: message, exit 1
        ("push", "/nonexistent/model", "--to", "local", "--json"),
        ("-q", "fleet", "ls", "--to", "tag:nosuch"),
    ],
)
def test_fast_path_fails_as_typer_does(args: tuple[str, ...]) -> None:
    fast_run, modules = run_edge(*args)
    typer_run, _ = run_edge(*args, full_app=True)
    assert "pydantic" not in modules
    assert fast_run.returncode == typer_run.returncode == 1
    assert (fast_run.stdout, fast_run.stderr) == (typer_run.stdout, typer_run.stderr)


def test_a_bad_command_line_gets_typers_message() -> None:
    proc, modules = run_edge("push", "--parallel", "many", "m")
    assert proc.returncode == 2, proc.stderr
    assert "Invalid value for '--parallel'" in proc.stderr
    assert "pydantic" in modules  # typer parsed it, with its own message
    proc, _ = run_edge("fleet", "ls", "--bogus")
    assert proc.returncode == 2 and "No such option: --bogus" in proc.stderr


def test_a_named_command_loads_only_its_module() -> None:
    proc, modules = run_edge("recipes", "--help")
    assert proc.returncode == 0 and "ls" in proc.stdout, proc.stderr
    assert "edge.cli.recipes" in modules
    assert not {"edge.cli.convert", "edge.cli.bench", "edge.cli.fleet"} & modules
    proc, modules = run_edge("--help")
    assert proc.returncode == 0
    assert {"edge.cli.convert", "edge.cli.fleet", "edge.cli.runs"} <= modules


def typer_params(path: tuple[str, ...], args: list[str]) -> dict[str, Any] | None:
    """What typer's own parser gives the command's function, or None if it refuses."""
    command: Any = typer.main.get_command(build_app([path[0]]))
    for name in path:
        command = command.commands[name]
    try:
        ctx = command.make_context(" ".join(path), list(args))
    except Exception as exc:  # a usage error, --help's Exit
        assert type(exc).__module__.startswith("typer"), exc
        return None
    return dict(ctx.params)


# (command, its arguments, whether the fast parser takes them: else typer does)
CASES: list[tuple[tuple[str, ...], list[str], bool]] = [
    (("fleet", "ls"), [], True),
    (("fleet", "ls"), ["--json"], True),
    (("fleet", "ls"), ["-t", "tag:lab", "--json"], True),
    (("fleet", "ls"), ["--to=d1,d2"], True),
    (("fleet", "ls"), ["d1"], True),
    (("fleet", "ls"), ["d1", "d2"], False),
    (("fleet", "ls"), ["--to"], False),
    (("fleet", "ls"), ["--json=1"], False),
    (("fleet", "ls"), ["--help"], False),
    (("fleet", "ls"), ["-tall"], False),
    (("fleet", "probe"), ["--to", "all", "--quick", "--json"], True),
    (("fleet", "probe"), ["all", "--quick"], True),
    (("fleet", "probe"), ["--quick", "--to", "d1", "--to", "d2"], True),
    (("fleet", "probe"), ["--", "d1"], False),
    (("push",), ["model", "--to", "d1", "--json"], True),
    (("push",), ["--to", "d1", "./m", "--calib", "c.npz", "--parallel", "16"], True),
    (("push",), ["m", "--parallel=3"], True),
    (("push",), ["m", "--parallel", "-2"], True),
    (("push",), ["m", "--parallel", "3.5"], False),
    (("push",), ["m", "--parallel", "1_0"], False),
    (("push",), ["m", "--calib", "-"], False),
    (("push",), ["m", "--to", "-x"], False),
    (("push",), ["m", "extra"], False),
    (("push",), ["--json"], False),
    (("push",), [""], False),
]


@pytest.mark.parametrize(("path", "args", "taken"), CASES)
def test_fast_parser_agrees_with_typer_or_defers(
    path: tuple[str, ...], args: list[str], taken: bool
) -> None:
    function, params = quick.SPECS[path]
    got = quick.parse_command(params, args)
    assert (got is not None) == taken, got
    if got is not None:  # where it answers, it answers as typer does
        assert got == typer_params(path, args)
    call = quick.parse(["-q", "-vv", *path, *args])
    assert (call.kwargs if call else None) == got
    assert call is None or (call.quiet, call.verbose, call.function) == (True, 2, function)


@pytest.mark.parametrize("path", list(fast.FAST))
def test_the_quick_declarations_say_what_typers_say(path: tuple[str, ...]) -> None:
    """edge.cli.quick declares each quick command's parameters for itself (it runs without
    typer); they must be the typer command's, as typer reads them."""
    module, attr = fast.FAST[path]
    typer_function = getattr(__import__(f"edge.cli.{module}", fromlist=[attr]), attr)
    assert quick.SPECS[path][1] == fast.spec(typer_function)
    assert set(quick.SPECS) == set(fast.FAST)


def test_a_declaration_the_parser_does_not_know_goes_to_typer() -> None:
    def choice(
        level: Annotated[int, typer.Option(min=1, max=3)] = 1,
    ) -> None: ...

    def counted(
        verbose: Annotated[int, typer.Option("-v", count=True)] = 0,
    ) -> None: ...

    def listed(names: Annotated[list[str], typer.Argument()]) -> None: ...

    def checked(path: Annotated[Path, typer.Argument(exists=True)]) -> None: ...

    for function in (choice, counted, listed, checked):
        assert fast.spec(function) is None, function.__name__
