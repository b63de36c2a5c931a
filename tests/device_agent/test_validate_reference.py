"""The host's reference outputs are untrusted input on the device: a file that is not a
reference set is refused with the fix, never unpickled or half used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_agent.errors import AgentError
from device_agent.validate import _reference_arrays


def test_a_good_reference_set_reads_back(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.savez(tmp_path / "reference.npz", **{"in.x": x, "out.y": x * 2})
    ins, outs = _reference_arrays(str(tmp_path))
    assert np.array_equal(ins["x"], x) and np.array_equal(outs["y"], x * 2)


@pytest.mark.parametrize(
    "arrays",
    [
        {"in.x": np.zeros((3, 4)), "out.y": np.zeros((2, 4))},  # rows disagree
        {"in.x": np.zeros((3, 4))},  # no outputs
        {"out.y": np.zeros((3, 4))},  # no inputs
        {"in.x": np.array(1.0), "out.y": np.array(2.0)},  # no sample axis
        {"in.x": np.array([{"a": 1}], dtype=object), "out.y": np.zeros((1,))},  # pickled
    ],
)
def test_a_bad_reference_set_is_refused(tmp_path: Path, arrays: dict) -> None:
    np.savez(tmp_path / "reference.npz", **arrays)
    with pytest.raises(AgentError) as info:
        _reference_arrays(str(tmp_path))
    assert "--validate" in (info.value.hint or "")


def test_a_missing_or_corrupt_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError):
        _reference_arrays(str(tmp_path))
    (tmp_path / "reference.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(AgentError):
        _reference_arrays(str(tmp_path))
