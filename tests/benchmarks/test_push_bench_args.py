"""push_bench.py's options: case 6 and its sizes, --quick's small numbers."""

from __future__ import annotations

import push_bench
import pytest


def test_defaults_run_every_case_with_the_scale_case() -> None:
    args = push_bench.parse_args([])
    assert args.cases == [1, 2, 3, 4, 5, 6]
    assert (args.devices, args.scale_devices, args.scale_mib, args.mib) == (16, 64, 32, 128)


def test_quick_keeps_case_6_small() -> None:
    args = push_bench.parse_args(["--quick", "--cases", "3,6"])
    assert args.cases == [3, 6]
    assert (args.devices, args.scale_devices, args.scale_mib) == (4, 8, 8)
    assert args.results is None  # --quick never overwrites RESULTS.md


def test_scale_options_and_unknown_cases() -> None:
    args = push_bench.parse_args(["--cases", "6", "--scale-devices", "32", "--scale-mib", "4"])
    assert (args.scale_devices, args.scale_mib) == (32, 4)
    with pytest.raises(SystemExit):
        push_bench.parse_args(["--cases", "7"])
