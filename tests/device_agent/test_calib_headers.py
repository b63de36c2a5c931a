"""Malformed .npy headers in calibration data: an AgentError that names the file and the
fault, never a ValueError/TokenError from numpy's parser (real files, both layouts)."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from device_agent.calib import open_calibration
from device_agent.errors import AgentError

GOOD = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"


def npy(
    header: str, data: bytes = b"\0" * 24, magic: bytes = b"\x93NUMPY", version: int = 1
) -> bytes:
    """A .npy file with this header dict text (padded as numpy pads it)."""
    h = header.encode("latin1")
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    size = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return magic + bytes([version, 0]) + size + h + data


CASES = {
    "truncated header": (npy(GOOD)[:20], "EOF"),
    "bad magic": (npy(GOOD, magic=b"\x93NUMPX"), "magic"),
    "unknown version": (npy(GOOD, version=7), "version"),
    "unterminated dict": (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,"), "header"),
    "not a dict": (npy("[1, 2, 3]"), "header"),
    "missing keys": (npy("{'descr': '<f4'}"), "header"),
    "bad descr": (npy("{'descr': 'zz9', 'fortran_order': False, 'shape': (2,), }"), "header"),
    "fortran_order not a bool": (
        npy("{'descr': '<f4', 'fortran_order': 'yes', 'shape': (2, 3), }"),
        "fortran_order",
    ),
    "fortran order 2-D": (
        npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"),
        "Fortran",
    ),
    "object dtype": (npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"), "objects"),
    "object field": (
        npy("{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (2,), }"),
        "objects",
    ),
    "negative dimension": (
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }"),
        "negative",
    ),
    "overflowing shape": (
        npy(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({2**40}, {2**40}, {2**40}), }}"),
        "promises",
    ),
    "zero-size dtype": (
        npy("{'descr': '|V0', 'fortran_order': False, 'shape': (2,), }"),
        "zero-size",
    ),
    "nested parentheses": (
        npy(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), "
            "'x': " + "(" * 1000 + ")" * 1000 + "}",
            version=2,
        ),
        "header",
    ),
}


@pytest.mark.parametrize("layout", ["dir", "npz"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_header_is_an_agent_error(tmp_path: Path, layout: str, case: str) -> None:
    data, fault = CASES[case]
    if layout == "dir":
        path = tmp_path / "calib"
        path.mkdir()
        (path / "x.npy").write_bytes(data)
    else:
        path = tmp_path / "calib.npz"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("x.npy", data)
    with pytest.raises(AgentError) as err:
        open_calibration(str(path))
    assert "x.npy" in err.value.message and fault in err.value.message, err.value.message
    assert err.value.hint
