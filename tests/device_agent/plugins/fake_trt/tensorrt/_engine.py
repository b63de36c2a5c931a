"""The fake TensorRT's engine: a plan is a header, the build settings as JSON and the ONNX
bytes; running it is onnxruntime on the fake pycuda's device memory."""

from __future__ import annotations

import json
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

MAGIC = b"FTRT"

#: ONNX TensorProto element type -> (TensorRT DataType name, numpy dtype name)
ONNX_TYPES: Dict[int, Tuple[str, str]] = {
    1: ("FLOAT", "float32"),
    2: ("UINT8", "uint8"),
    3: ("INT8", "int8"),
    6: ("INT32", "int32"),
    7: ("INT64", "int64"),
    9: ("BOOL", "bool"),
    10: ("HALF", "float16"),
}

NUMPY_OF = {trt_name: np_name for trt_name, np_name in ONNX_TYPES.values()}


def pack(header: Dict[str, Any], onnx_bytes: bytes) -> bytes:
    """A plan: MAGIC, the header's length, the JSON header, the ONNX bytes."""
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + bytes(onnx_bytes)


def unpack(plan: bytes) -> Optional[Tuple[Dict[str, Any], bytes]]:
    """(header, ONNX bytes) of a plan, or None when it is not one."""
    if len(plan) < 8 or plan[:4] != MAGIC:
        return None
    (n,) = struct.unpack("<I", plan[4:8])
    try:
        header = json.loads(plan[8 : 8 + n].decode())
    except ValueError:
        return None
    return header, plan[8 + n :]


def session(onnx_bytes: bytes) -> Any:
    """An onnxruntime CPU session of the ONNX bytes."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def nbytes(shape: Sequence[int], np_dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(np_dtype).itemsize


def read_array(address: int, shape: Sequence[int], np_dtype: str) -> np.ndarray:
    """The array at a fake device address."""
    from pycuda import driver  # the fake pycuda beside this package

    raw = driver.read_device(int(address), nbytes(shape, np_dtype))
    return np.frombuffer(raw, np.dtype(np_dtype)).reshape(tuple(shape)).copy()


def write_array(address: int, array: np.ndarray) -> None:
    from pycuda import driver

    driver.write_device(int(address), np.ascontiguousarray(array).tobytes())


def in_profile(shape: Sequence[int], lo: Sequence[int], hi: Sequence[int]) -> bool:
    return len(shape) == len(lo) and all(a <= d <= b for d, a, b in zip(shape, lo, hi))


def matches_static(shape: Sequence[int], declared: Sequence[int]) -> bool:
    return len(shape) == len(declared) and all(d == s or s < 0 for d, s in zip(shape, declared))


def calibrate(
    calibrator: Any,
    inputs: List[Dict[str, Any]],
    shapes: Mapping[str, Sequence[int]],
    onnx_bytes: bytes,
    version: str,
) -> Dict[str, float]:
    """Run the calibrator as TensorRT does: its cache if it has one, else every batch from
    get_batch (read from device memory) through the model; write the cache; the scales."""
    cached = calibrator.read_calibration_cache()
    if cached:
        return parse_cache(bytes(memoryview(cached)))
    batch = calibrator.get_batch_size()
    if not isinstance(batch, int) or batch < 1:
        raise RuntimeError(f"get_batch_size() gave {batch!r}, not a positive int")
    names = [t["name"] for t in inputs]
    sess = session(onnx_bytes)
    out_names = [o.name for o in sess.get_outputs()]
    amax: Dict[str, float] = {}
    batches = 0
    while True:
        pointers = calibrator.get_batch(names)
        if not pointers:
            break
        if len(pointers) != len(names):
            raise RuntimeError(f"get_batch gave {len(pointers)} pointers for {len(names)} inputs")
        feed = {
            t["name"]: read_array(p, shapes[t["name"]], NUMPY_OF[t["dtype"]])
            for t, p in zip(inputs, pointers)
        }
        results = sess.run(out_names, feed)
        for name, value in list(feed.items()) + list(zip(out_names, results)):
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                amax[name] = max(amax.get(name, 0.0), float(np.max(np.abs(value))))
        batches += 1
    if batches == 0:
        raise RuntimeError("the calibrator gave no batch")
    scales = {name: (a / 127.0 if a > 0 else 1.0) for name, a in amax.items()}
    calibrator.write_calibration_cache(memoryview(cache_text(version, scales)))
    return scales


def cache_text(version: str, scales: Dict[str, float]) -> bytes:
    """A calibration cache in TensorRT's text form: a header line, then name: hex scale."""
    major, minor, patch = ([int(p) for p in version.split(".")] + [0, 0])[:3]
    tag = major * 1000 + minor * 100 + patch  # NV_TENSORRT_VERSION: 8.6.1 -> 8601
    lines = [f"TRT-{tag}-EntropyCalibration2"]
    for name in sorted(scales):
        lines.append(f"{name}: {struct.pack('>f', scales[name]).hex()}")
    return ("\n".join(lines) + "\n").encode()


def parse_cache(data: bytes) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for line in data.decode().splitlines()[1:]:
        name, _, value = line.rpartition(": ")
        if name:
            out[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return out


def inspector_json(header: Dict[str, Any], detailed: bool, io_key: str) -> str:
    """The engine inspector's JSON: one layer per ONNX node; with DETAILED verbosity each
    layer's inputs and outputs carry "Format/Datatype" with the layer's precision."""
    layers: List[Any] = []
    for layer in header["layers"]:
        if not detailed:
            layers.append(layer["name"])
            continue
        fmt = f"Row major linear {layer['precision']}"
        layers.append(
            {
                "Name": layer["name"],
                "LayerType": layer["type"],
                "Inputs": [
                    {"Name": n, "Location": "Device", "Format/Datatype": fmt}
                    for n in layer["inputs"]
                ],
                "Outputs": [
                    {"Name": n, "Location": "Device", "Format/Datatype": fmt}
                    for n in layer["outputs"]
                ],
                "TacticName": "fake_onnxruntime",
                "StreamId": 0,
            }
        )
    io = [t["name"] for t in header["inputs"] + header["outputs"]]
    return json.dumps({"Layers": layers, io_key: io})
