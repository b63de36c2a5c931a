"""TensorFlow's dtype names, and which of them numpy holds natively (stdlib only).

One table for every reader: the saved_model.pb reader (savedmodel_meta), the conversion
summary (summary), the calibration check (calib) and input synthesis (signature).
tests/device_agent/test_dtypes.py pins the answers against TensorFlow itself.
"""

from __future__ import annotations

from typing import Dict, Optional

# DataType enum (framework/types.proto) -> TensorFlow's dtype names, which are numpy's
# names where numpy has the type ("float32", "int64", "bool", "float16", ...).
DTYPE_NAMES: Dict[int, str] = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
    7: "string", 8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8",
    13: "qint32", 14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16",
    18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
    23: "uint64", 24: "float8_e5m2", 25: "float8_e4m3fn", 29: "int4", 30: "uint4",
}  # fmt: skip
REF_OFFSET = 100  # DT_FLOAT_REF = 101, ...: a reference holds values of its base type

# The TensorFlow dtypes that are numpy's own types under the same name (bfloat16, the
# quantized and float8 types are not: numpy alone cannot make or read them).
NUMPY_NATIVE = frozenset({
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
})  # fmt: skip


def dtype_name(enum: int) -> str:
    """TensorFlow's name for the values of a DataType enum value: "float32" for DT_FLOAT
    and for its reference type DT_FLOAT_REF (`tf.as_dtype(enum).base_dtype.name`), and
    "unknown_dtype_N" for a value TensorFlow does not know."""
    enum = int(enum)
    if enum not in DTYPE_NAMES and enum - REF_OFFSET in DTYPE_NAMES:
        enum -= REF_OFFSET
    return DTYPE_NAMES.get(enum, f"unknown_dtype_{enum}")


def numpy_name(name: str) -> Optional[str]:
    """numpy's name for the values of TensorFlow dtype `name`, or None where numpy has no
    such type of its own (string, resource, variant, bfloat16, quantized, float8, int4)."""
    return name if name in NUMPY_NATIVE else None


def array_fits(name: str, array_dtype: str, array_kind: str) -> bool:
    """Whether a numpy array of dtype `array_dtype` (of kind `array_kind`) holds values of
    TensorFlow dtype `name`: the same name, or bytes/str arrays for a string."""
    return array_dtype == name or (name == "string" and array_kind in "SU")
