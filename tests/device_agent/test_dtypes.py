"""The one dtype table (device_agent/dtypes.py), pinned against TensorFlow and numpy."""

from __future__ import annotations

import numpy as np
import pytest

from device_agent import dtypes
from device_agent.calib import CalibrationData, check_against_signature
from device_agent.errors import AgentError
from device_agent.protocol import TensorInfo
from device_agent.signature import synth_inputs


def test_names_are_tensorflow_names_for_every_enum_and_its_reference() -> None:
    import tensorflow as tf

    for enum in dtypes.DTYPE_NAMES:
        assert dtypes.dtype_name(enum) == tf.as_dtype(enum).name
        ref = enum + dtypes.REF_OFFSET
        if ref - dtypes.REF_OFFSET in (20, 21):  # resource and variant have no _ref type
            continue
        assert tf.as_dtype(ref).name.endswith("_ref")
        assert dtypes.dtype_name(ref) == tf.as_dtype(ref).base_dtype.name


@pytest.mark.parametrize("enum", [0, 26, 99, 250, 10_000])
def test_an_unknown_enum_is_named_as_such(enum: int) -> None:
    import tensorflow as tf

    with pytest.raises(TypeError):
        tf.as_dtype(enum)
    assert dtypes.dtype_name(enum) == f"unknown_dtype_{enum}"


def test_numpy_names_are_what_tensorflow_converts_to() -> None:
    import tensorflow as tf

    for enum, name in dtypes.DTYPE_NAMES.items():
        try:
            np_type = np.dtype(tf.as_dtype(enum).as_numpy_dtype)
        except (KeyError, TypeError):  # resource, variant, int4...: no numpy type at all
            np_type = None
        # numpy's own scalar types only: ml_dtypes' bfloat16 and float8 need that package
        native = (
            np_type is not None
            and np_type.type.__module__ == "numpy"
            and (np_type.kind in "biufc" and np_type.name == name)
        )
        assert dtypes.numpy_name(name) == (name if native else None), name


def _info(dtype: str) -> TensorInfo:
    return TensorInfo(name="x", dtype=dtype, shape=[None, 2])


@pytest.mark.parametrize("name", sorted(set(dtypes.DTYPE_NAMES.values())))
def test_synthesis_and_the_calibration_check_agree(name: str) -> None:
    """A real or integer dtype numpy holds is synthesized and its arrays pass the calibration
    check; any other is refused as a user error (never a numpy TypeError)."""
    native = dtypes.numpy_name(name)
    if native is None or np.dtype(native).kind not in "biuf":
        with pytest.raises(AgentError, match="cannot be synthesized"):
            synth_inputs([_info(name)], batch_size=3)
        return
    arrays = synth_inputs([_info(name)], batch_size=3)
    assert arrays["x"].dtype.name == name and arrays["x"].shape == (3, 2)
    check_against_signature(CalibrationData("mem.npz", arrays), [_info(name)])


def test_string_inputs_take_bytes_or_str_arrays() -> None:
    for arr in (np.array([[b"a", b"b"]]), np.array([["a", "b"]])):
        check_against_signature(CalibrationData("mem.npz", {"x": arr}), [_info("string")])
    with pytest.raises(AgentError, match="expected string"):
        check_against_signature(
            CalibrationData("mem.npz", {"x": np.zeros((1, 2), np.uint8)}), [_info("string")]
        )
