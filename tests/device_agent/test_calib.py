"""calib: calibration data opened memory-mapped, checked against a signature, batched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import IO, Dict, List, Optional

import numpy as np
import pytest
from helpers import agent_env

from device_agent.calib import (
    CalibrationData,
    batches,
    check_against_signature,
    open_calibration,
    plan_batches,
)
from device_agent.errors import AgentError
from device_agent.protocol import TensorInfo


def _arrays(samples: int = 10) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "image": rng.random((samples, 4, 3), dtype=np.float32),
        "ids": rng.integers(0, 100, size=(samples, 7), dtype=np.int32),
    }


def _signature(
    image: Optional[List[Optional[int]]] = None, ids_dtype: str = "int32"
) -> List[TensorInfo]:
    return [
        TensorInfo("ids", ids_dtype, [None, None]),
        TensorInfo("image", "float32", image or [None, 4, 3]),
    ]


def _as_dir(path: Path, arrays: Dict[str, np.ndarray]) -> Path:
    path.mkdir()
    for name, arr in arrays.items():
        np.save(path / f"{name}.npy", arr)
    return path


@pytest.fixture(params=["npz", "dir"])
def calib_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "npz":
        np.savez(tmp_path / "calib.npz", **_arrays())
        return tmp_path / "calib.npz"
    return _as_dir(tmp_path / "calib", _arrays())


def _assert_mapped(data: CalibrationData) -> None:
    expected = _arrays()
    assert sorted(data.arrays) == sorted(expected)
    for name, arr in data.arrays.items():
        assert isinstance(arr, np.memmap), name
        assert arr.mode == "r"
        np.testing.assert_array_equal(arr, expected[name])


# --------------------------------------------------------------------------- opening


def test_open_stored_npz_and_npy_dir_memory_mapped(calib_path: Path) -> None:
    data = open_calibration(str(calib_path))
    _assert_mapped(data)
    assert data.inputs == {"image": ("float32", [4, 3]), "ids": ("int32", [7])}
    assert data.samples == 10
    check_against_signature(data, _signature())


def test_stored_npz_members_are_mapped_in_place(tmp_path: Path) -> None:
    np.savez(tmp_path / "c.npz", **_arrays())
    data = open_calibration(str(tmp_path / "c.npz"))
    for arr in data.arrays.values():
        assert Path(arr.filename) == (tmp_path / "c.npz").resolve()
    assert sorted(os.listdir(tmp_path)) == ["c.npz"]  # nothing extracted


def test_compressed_npz_needs_a_cache_dir(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "c.npz", **_arrays())
    with pytest.raises(AgentError, match="compressed") as err:
        open_calibration(str(tmp_path / "c.npz"))
    assert "np.savez" in (err.value.hint or "") and "directory" in (err.value.hint or "")
    cache = tmp_path / "cache"
    data = open_calibration(str(tmp_path / "c.npz"), cache_dir=str(cache))
    _assert_mapped(data)
    assert sorted(os.listdir(cache)) == ["ids.npy", "image.npy"]
    assert Path(data.arrays["ids"].filename) == (cache / "ids.npy").resolve()
    mtime = (cache / "ids.npy").stat().st_mtime_ns
    _assert_mapped(open_calibration(str(tmp_path / "c.npz"), cache_dir=str(cache)))
    assert (cache / "ids.npy").stat().st_mtime_ns == mtime  # extracted once, then reused


def test_mixed_stored_and_compressed_members(tmp_path: Path) -> None:
    arrays = _arrays()
    path = tmp_path / "mixed.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, method in (("ids", zipfile.ZIP_STORED), ("image", zipfile.ZIP_DEFLATED)):
            member = zipfile.ZipInfo(f"{name}.npy")
            member.compress_type = method
            with zf.open(member, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, arrays[name])
    info = {i.filename: i.compress_type for i in zipfile.ZipFile(path).infolist()}
    assert info == {"ids.npy": zipfile.ZIP_STORED, "image.npy": zipfile.ZIP_DEFLATED}
    data = open_calibration(str(path), cache_dir=str(tmp_path / "cache"))
    _assert_mapped(data)
    assert Path(data.arrays["ids"].filename) == path.resolve()


@pytest.mark.parametrize("fmt", ["npz", "dir"])
@pytest.mark.parametrize(
    "bad, message",
    [
        (np.asfortranarray(np.ones((4, 3, 2), np.float32)), "Fortran"),
        (np.array([{"a": 1}] * 4, dtype=object), "objects"),
        (np.float32(3.0), "scalar"),
    ],
)
def test_unusable_arrays(tmp_path: Path, fmt: str, bad: np.ndarray, message: str) -> None:
    if fmt == "npz":
        np.savez(tmp_path / "c.npz", x=bad)
        path = tmp_path / "c.npz"
    else:
        path = tmp_path / "d"
        path.mkdir()
        np.save(path / "x.npy", bad, allow_pickle=True)
    with pytest.raises(AgentError, match=message) as err:
        open_calibration(str(path))
    assert "x.npy" in err.value.message


def test_bad_paths_and_files(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="not found"):
        open_calibration(str(tmp_path / "nope.npz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgentError, match="no .npy arrays"):
        open_calibration(str(tmp_path / "empty"))
    (tmp_path / "junk.npz").write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(AgentError, match="junk.npz"):
        open_calibration(str(tmp_path / "junk.npz"))
    np.save(tmp_path / "single.npy", np.zeros((3, 2)))
    with pytest.raises(AgentError, match="neither an .npz file nor a directory"):
        open_calibration(str(tmp_path / "single.npy"))
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(AgentError, match="notes.txt"):
        open_calibration(str(tmp_path / "other.npz"))
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    raw = (tmp_path / "single.npy").read_bytes()
    (trunc / "x.npy").write_bytes(raw[:-8])
    with pytest.raises(AgentError, match="truncated"):
        open_calibration(str(trunc))
    (trunc / "x.npy").write_bytes(raw[:5])
    with pytest.raises(AgentError, match="not a valid .npy"):
        open_calibration(str(trunc))


# --------------------------------------------------------------------------- checking


def _error(data: CalibrationData, sig: List[TensorInfo]) -> str:
    with pytest.raises(AgentError) as err:
        check_against_signature(data, sig)
    assert err.value.hint
    return err.value.message


def test_missing_and_extra_inputs_are_named(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["labels"] = np.zeros(10, np.int64)
    del arrays["ids"]
    data = open_calibration(str(_as_dir(tmp_path / "d", arrays)))
    message = _error(data, _signature())
    assert "'ids'" in message and "'labels'" in message
    only_extra = _arrays()
    only_extra["labels"] = np.zeros(10, np.int64)
    message = _error(open_calibration(str(_as_dir(tmp_path / "e", only_extra))), _signature())
    assert "'labels'" in message and "does not take" in message


def test_dtype_mismatch_names_both(calib_path: Path) -> None:
    message = _error(open_calibration(str(calib_path)), _signature(ids_dtype="int64"))
    assert message == "calibration input 'ids': expected int64 [None] per sample, got int32 [7]"


def test_per_sample_shape_mismatch_names_both(calib_path: Path) -> None:
    message = _error(open_calibration(str(calib_path)), _signature(image=[None, 32, 3]))
    assert message == (
        "calibration input 'image': expected float32 [32, 3] per sample, got float32 [4, 3]"
    )


def test_rank_mismatch_names_both(calib_path: Path) -> None:
    message = _error(open_calibration(str(calib_path)), _signature(image=[None, 12]))
    assert "'image'" in message and "[12]" in message and "[4, 3]" in message


def test_unknown_dims_and_unknown_rank_match(calib_path: Path) -> None:
    data = open_calibration(str(calib_path))
    check_against_signature(data, _signature(image=[None, None, 3]))
    check_against_signature(data, [TensorInfo("ids", "int32", []), _signature()[1]])


def test_sample_count_mismatch_names_inputs_and_counts(tmp_path: Path) -> None:
    arrays = _arrays()
    arrays["ids"] = arrays["ids"][:7]
    np.savez(tmp_path / "c.npz", **arrays)
    data = open_calibration(str(tmp_path / "c.npz"))
    with pytest.raises(AgentError) as err:
        _ = data.samples
    assert "'ids' has 7" in err.value.message and "'image' has 10" in err.value.message
    assert "'ids' has 7" in _error(data, _signature())


def test_mnist_signature_from_savedmodel_meta_without_tensorflow(
    tmp_path: Path, mnist_model: Path
) -> None:
    """The host's path: signature from saved_model.pb, data checked, no TensorFlow."""
    good = tmp_path / "good.npz"
    np.savez(good, flatten_input=np.zeros((6, 28, 28), np.float32))
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "flatten_input.npy", np.zeros((6, 784), np.float32))
    code = f"""
import json, sys
from device_agent.calib import check_against_signature, open_calibration
from device_agent.errors import AgentError
from device_agent.savedmodel_meta import read_signatures
inputs = read_signatures({str(mnist_model)!r})["serving_default"].inputs
check_against_signature(open_calibration({str(good)!r}), inputs)
try:
    check_against_signature(open_calibration({str(bad)!r}), inputs)
    message = None
except AgentError as exc:
    message = exc.message
print(json.dumps({{"tf": "tensorflow" in sys.modules, "message": message}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=agent_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {
        "tf": False,
        "message": "calibration input 'flatten_input': expected float32 [28, 28] per sample, "
        "got float32 [784]",
    }


# --------------------------------------------------------------------------- batching


def test_plan_batches_arithmetic() -> None:
    assert plan_batches(100, 8, 5) == 5
    assert plan_batches(100, 8, 12) == 12
    assert plan_batches(100, 8, 13) == 12  # only complete batches: 96 of 100 samples
    assert plan_batches(100, 8, 0) == 12
    assert plan_batches(100, 8, None) == 12
    assert plan_batches(7, 8, 3) == 0
    assert plan_batches(0, 1, None) == 0
    assert plan_batches(10, 10, 1) == 1
    with pytest.raises(AgentError, match="batch size"):
        plan_batches(10, 0, 1)
    with pytest.raises(AgentError, match="count"):
        plan_batches(10, 2, -1)


@pytest.mark.parametrize("count, expected", [(3, 3), (4, 4), (5, 4), (0, 4), (None, 4)])
def test_batches_yield_requested_slices(
    calib_path: Path, count: Optional[int], expected: int
) -> None:
    data = open_calibration(str(calib_path))
    arrays = _arrays()
    got = list(batches(data, 2 + 1, count, ["image", "ids"]))  # 10 samples -> 3 complete
    assert len(got) == min(expected, 3) == plan_batches(10, 3, count)
    for i, batch in enumerate(got):
        assert isinstance(batch, tuple) and len(batch) == 2
        for arr, name in zip(batch, ["image", "ids"]):
            assert type(arr) is np.ndarray and arr.flags.c_contiguous and arr.flags.owndata
            np.testing.assert_array_equal(arr, arrays[name][i * 3 : (i + 1) * 3])


def test_batches_order_and_unknown_names(calib_path: Path) -> None:
    data = open_calibration(str(calib_path))
    (ids, image), *_ = batches(data, 4, 1, ["ids", "image"])
    assert ids.shape == (4, 7) and image.shape == (4, 4, 3)
    with pytest.raises(AgentError, match="'label'"):
        batches(data, 4, 1, ["ids", "label"])


def test_non_native_byte_order_is_converted(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    values = np.arange(12, dtype=">f4").reshape(6, 2)
    np.save(d / "x.npy", values)
    data = open_calibration(str(d))
    check_against_signature(data, [TensorInfo("x", "float32", [None, 2])])
    (batch,), *_ = batches(data, 3, None, ["x"])
    assert batch.dtype == np.dtype("float32") and batch.dtype.isnative
    np.testing.assert_array_equal(batch, values[:3])


MEMORY_PROBE = """
import json, resource, sys
from device_agent.calib import batches, open_calibration
data = open_calibration(sys.argv[1])
rows = data.samples // 1000
first = next(iter(batches(data, rows, 1, ["x"])))[0].copy()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
n, total = 0, 0.0
for (batch,) in batches(data, rows, 1000, ["x"]):
    n += 1
    total += float(batch[:, 0].sum())
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"batches": n, "growth_kb": after - before, "total": total}))
"""


def _write_rows(f: IO[bytes], rows: int, width: int) -> None:
    """An .npy of float32 rows whose every element is its row index, written in chunks."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, width)}
    np.lib.format.write_array_header_1_0(f, header)
    for lo in range(0, rows, 5_000):
        chunk = np.repeat(np.arange(lo, lo + 5_000, dtype="<f4")[:, None], width, axis=1)
        f.write(chunk.tobytes())


@pytest.mark.parametrize("fmt", ["dir", "npz"])
def test_memory_stays_flat_over_a_large_mapped_file(tmp_path: Path, fmt: str) -> None:
    rows, width = 50_000, 1_000  # 200 MB of float32
    if fmt == "npz":
        path = tmp_path / "big.npz"
        with zipfile.ZipFile(path, "w") as zf, zf.open("x.npy", "w", force_zip64=True) as f:
            _write_rows(f, rows, width)
    else:
        path = tmp_path / "d"
        path.mkdir()
        with open(path / "x.npy", "wb") as f:
            _write_rows(f, rows, width)
    size_kb = rows * width * 4 // 1024
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path)],
        capture_output=True,
        text=True,
        env=agent_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["batches"] == 1000
    assert out["total"] == float(rows * (rows - 1) // 2)  # every row was read
    assert out["growth_kb"] < size_kb // 8, out  # 25 MB of a 200 MB file
