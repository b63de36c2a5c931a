"""The end of `edge convert|bench|validate` (edge.cli._utils.finish_run): every device's
result recorded, the kind's view or JSON printed, exit 1 when a device or a validation
failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from device_agent.protocol import (
    BenchResult,
    ConvertResult,
    OutputCheck,
    ValidateResult,
    ValidationReport,
)
from edge.cli._utils import any_failed, finish_run
from edge.fleet.group import GroupResult
from edge.history.store import RunStore


def _report(passed: bool) -> ValidationReport:
    check = OutputCheck(
        max_abs_err=0.5 if not passed else 0.0,
        max_rel_err=0.0,
        mismatched=0 if passed else 3,
        elements=12,
        passed=passed,
    )
    return ValidationReport(passed=passed, outputs={"dense": check})


def test_any_failed() -> None:
    ok_convert = ConvertResult("d1", "succeeded")
    assert not any_failed([ok_convert, BenchResult("d2", "succeeded")])
    assert any_failed([ok_convert, BenchResult("d2", "failed")])
    assert not any_failed([ConvertResult("d1", "succeeded", validation=_report(True))])
    assert any_failed([ConvertResult("d1", "succeeded", validation=_report(False))])
    assert any_failed([ValidateResult("d1", "succeeded", validation=_report(False))])


@pytest.mark.parametrize("json_out", [True, False])
@pytest.mark.parametrize("passed", [True, False])
def test_records_prints_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], json_out: bool, passed: bool
) -> None:
    run = GroupResult(
        [
            ValidateResult("d1", "succeeded", validation=_report(passed)),
            ValidateResult("d2", "failed", error="gone", hint="Plug it in."),
        ],
        model_digest="ab" * 32,
    )
    with pytest.raises(typer.Exit) as info:  # d2 failed either way
        finish_run("validate", run, tmp_path / "m", None, json_out)
    assert info.value.exit_code == 1
    out, err = capsys.readouterr()
    if json_out:
        assert [r["device"] for r in json.loads(out)] == ["d1", "d2"]
    else:
        assert "Validation" in out and "dense" in out and ("pass" if passed else "FAIL") in out
        assert "d2: failed: gone" in err and "hint: Plug it in." in err and "recorded as" in err
    with RunStore() as store:
        assert [(r.kind, r.device) for r in store.list()] == [
            ("validate", "d1"),
            ("validate", "d2"),
        ]
    one = GroupResult([ValidateResult("d1", "succeeded", validation=_report(passed))])
    if passed:
        finish_run("validate", one, tmp_path / "m", None, json_out)
    else:
        with pytest.raises(typer.Exit):
            finish_run("validate", one, tmp_path / "m", None, json_out)
