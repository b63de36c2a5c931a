"""The agent builds only the subparser a command line names: the answer must be the one
the whole parser gives, and anything uncertain gets the whole parser."""

from __future__ import annotations

import argparse

import pytest

from device_agent.__main__ import COMMANDS, _parser_for, command_of

LINES = [
    ["info"],
    ["--root", "/r", "info", "--deep"],
    ["--root=/r", "info", "--sysroot", "/s"],
    ["--root", "info", "jobs"],  # a root named like a command
    ["push-plan", "--ranged-min", "1048576"],
    ["push-receive"],
    ["push-commit"],
    ["submit", "-", "--detach"],
    ["follow", "j1", "--offset", "3", "--timeout", "2.5"],
    ["status", "j1"],
    ["gc", "--keep", "2", "--dry-run", "--grace", "5"],
    ["manifest", "models/m"],
    ["cache", "k"],
    ["serve"],
    ["_work", "j1"],
]


def _choices(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def test_the_command_table_is_the_parsers() -> None:
    assert _choices(_parser_for("~/.edge")) == list(COMMANDS)


@pytest.mark.parametrize("argv", LINES, ids=" ".join)
def test_one_subparser_parses_as_the_whole_parser(argv: list[str]) -> None:
    only = command_of(argv)
    assert only is not None and only in argv
    assert _choices(_parser_for("~/.edge", only)) == [only]
    full = _parser_for("~/.edge").parse_args(argv)
    assert _parser_for("~/.edge", only).parse_args(argv) == full


@pytest.mark.parametrize(
    "argv",
    [[], ["-h"], ["--ro", "/r", "info"], ["--root"], ["infos"], ["--help", "info"], ["-x"]],
)
def test_an_uncertain_line_gets_the_whole_parser(argv: list[str]) -> None:
    assert command_of(argv) is None


def test_errors_still_name_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from device_agent.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["infos"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'infos'" in err and all(c in err for c in ("push-plan", "gc"))
