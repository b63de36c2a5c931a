"""Calibration data for INT8: open it memory-mapped, check it against a signature, batch it.

Two formats, both keyed by the signature's input names, axis 0 = samples:
  - an `.npz` (`np.savez(path, input_1=x, ...)`); members stored uncompressed are mapped
    in place, compressed ones (`np.savez_compressed`) are extracted once into a cache dir;
  - a directory with one `<input name>.npy` per input.

Nothing is read into RAM but the .npy headers: `batches` copies one batch at a time out
of the maps. Used on the device (agent) and on the host (checks before a push): numpy
and the standard library only.
"""

from __future__ import annotations

import math
import mmap
import os
import shutil
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from numpy.lib import format as npy_format

from .dtypes import array_fits
from .errors import AgentError
from .protocol import TensorInfo

_SAVE_HINT = (
    "Save calibration data with np.savez(path, **{input_name: array}) (not "
    "np.savez_compressed), or as a directory of <input name>.npy files."
)
_RELEASE_BACK = 2 << 20
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra length


@dataclass
class CalibrationData:
    """Memory-mapped calibration arrays keyed by input name (axis 0 = samples)."""

    path: str
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def inputs(self) -> Dict[str, Tuple[str, List[int]]]:
        """{input name: (dtype name, per-sample shape)}."""
        return {k: (a.dtype.name, [int(d) for d in a.shape[1:]]) for k, a in self.arrays.items()}

    @property
    def samples(self) -> int:
        """The number of samples; AgentError when the inputs disagree on it."""
        counts = {k: int(a.shape[0]) for k, a in self.arrays.items()}
        if len(set(counts.values())) > 1:
            raise AgentError(
                "calibration inputs disagree on the number of samples (axis 0): "
                + ", ".join(f"{k!r} has {n}" for k, n in counts.items()),
                "Every calibration array needs one row per sample, the same count for all.",
            )
        return next(iter(counts.values()), 0)


# --------------------------------------------------------------------------- opening


# What numpy's header parser raises on a malformed header, across numpy versions: the
# header is a Python literal read by ast/tokenize, so a hostile one fails in their ways.
_HEADER_ERRORS = (
    ValueError,
    SyntaxError,
    TypeError,
    KeyError,
    OverflowError,
    RecursionError,
    MemoryError,
    tokenize.TokenError,
)


def _read_header(f: IO[bytes], where: str) -> Tuple[Tuple[int, ...], np.dtype]:
    """Parse the .npy header at f's position (left at the data); check it is usable."""
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except _HEADER_ERRORS as exc:
        what = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise AgentError(
            f"{where} is not a valid .npy array: malformed .npy header ({what})", _SAVE_HINT
        ) from None
    if any(d < 0 for d in shape):
        raise AgentError(
            f"{where}: the .npy header has a negative dimension in shape {tuple(shape)}", _SAVE_HINT
        )
    if dtype.itemsize == 0:
        raise AgentError(
            f"{where}: the .npy header declares a zero-size dtype ({dtype})", _SAVE_HINT
        )
    if dtype.hasobject:
        raise AgentError(
            f"{where} holds Python objects (dtype {dtype}), which cannot be memory-mapped",
            "Save numeric arrays of the signature's dtype, e.g. x.astype(np.float32).",
        )
    if fortran and len(shape) > 1:
        raise AgentError(
            f"{where} is stored in Fortran order; samples must be contiguous (C order)",
            "Save np.ascontiguousarray(x) instead of x.",
        )
    if not shape:
        raise AgentError(
            f"{where} is a scalar; calibration arrays need a sample axis (axis 0)", _SAVE_HINT
        )
    return tuple(shape), dtype


def _memmap(
    path: str, where: str, offset: int, shape: Tuple[int, ...], dtype: np.dtype
) -> np.ndarray:
    """A read-only np.memmap of `shape` at byte `offset` of `path`."""
    needed = offset + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if os.path.getsize(path) < needed:
        raise AgentError(f"{where} is truncated: its header promises {needed} bytes", _SAVE_HINT)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="C")


def _open_npy(path: str, where: str) -> np.ndarray:
    with open(path, "rb") as f:
        shape, dtype = _read_header(f, where)
        offset = f.tell()
    return _memmap(path, where, offset, shape, dtype)


def _open_dir(path: str) -> Dict[str, np.ndarray]:
    arrays = {}
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        if entry.endswith(".npy") and os.path.isfile(full):
            arrays[entry[: -len(".npy")]] = _open_npy(full, full)
    return arrays


def _stored_member(path: str, f: IO[bytes], info: zipfile.ZipInfo) -> np.ndarray:
    """Map an uncompressed .npz member in place: local header -> .npy header -> data."""
    where = f"{path}:{info.filename}"
    f.seek(info.header_offset)
    raw = f.read(_LOCAL_HEADER.size)
    if len(raw) < _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
        raise AgentError(f"{where}: bad zip local header", _SAVE_HINT)
    _, name_len, extra_len = _LOCAL_HEADER.unpack(raw)
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    f.seek(start)
    shape, dtype = _read_header(f, where)
    offset = f.tell()
    promised = offset - start + math.prod(shape) * dtype.itemsize
    if promised != info.file_size:
        raise AgentError(
            f"{where}: the .npy header promises {promised} bytes but the member "
            f"holds {info.file_size}",
            _SAVE_HINT,
        )
    return _memmap(path, where, offset, shape, dtype)


def _extract_member(
    path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, cache_dir: str
) -> str:
    """Stream a compressed member to <cache_dir>/<key>.npy once; reuse a fresh copy."""
    if key in ("", ".", "..") or "/" in key or "\\" in key:
        raise AgentError(f"{path}: member name {info.filename!r} is not a plain input name")
    out = os.path.join(cache_dir, key + ".npy")
    if (
        os.path.isfile(out)
        and os.path.getsize(out) == info.file_size
        and os.path.getmtime(out) >= os.path.getmtime(path)
    ):
        return out
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{out}.partial.{os.getpid()}"
    try:
        with zf.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, out)
    except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError, EOFError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise AgentError(
            f"cannot extract {path}:{info.filename} to {out}: {exc}", _SAVE_HINT
        ) from None
    return out


def _open_npz(path: str, cache_dir: Optional[str]) -> Dict[str, np.ndarray]:
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                if not info.filename.endswith(".npy"):
                    raise AgentError(
                        f"{path} holds {info.filename!r}, not a .npy array", _SAVE_HINT
                    )
                key = info.filename[: -len(".npy")]
                if info.flag_bits & 0x1:
                    raise AgentError(f"{path}:{info.filename} is encrypted", _SAVE_HINT)
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[key] = _stored_member(path, f, info)
                elif cache_dir is None:
                    raise AgentError(
                        f"{path}:{info.filename} is compressed and there is no cache "
                        "directory to extract it to",
                        _SAVE_HINT,
                    )
                else:
                    out = _extract_member(path, zf, info, key, cache_dir)
                    arrays[key] = _open_npy(out, f"{path}:{info.filename}")
    except zipfile.BadZipFile as exc:
        raise AgentError(f"{path} is not a valid .npz file ({exc})", _SAVE_HINT) from None
    return arrays


def open_calibration(path: str, cache_dir: Optional[str] = None) -> CalibrationData:
    """Open an .npz or a directory of .npy files, every array memory-mapped read-only.
    Compressed .npz members are extracted once to `cache_dir` (AgentError without one)."""
    try:
        if os.path.isdir(path):
            arrays = _open_dir(path)
        elif os.path.isfile(path) and (path.endswith(".npz") or zipfile.is_zipfile(path)):
            arrays = _open_npz(path, cache_dir)
        elif os.path.isfile(path):
            raise AgentError(f"{path} is neither an .npz file nor a directory", _SAVE_HINT)
        else:
            raise AgentError(f"calibration data {path} not found", _SAVE_HINT)
    except OSError as exc:
        raise AgentError(f"cannot read calibration data {path}: {exc}", _SAVE_HINT) from None
    if not arrays:
        raise AgentError(f"{path} holds no .npy arrays", _SAVE_HINT)
    return CalibrationData(path=path, arrays=arrays)


# --------------------------------------------------------------------------- checking


def _fits(want: List[Optional[int]], got: List[int]) -> bool:
    return len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got))


def check_against_signature(data: CalibrationData, inputs: List[TensorInfo]) -> None:
    """AgentError unless `data` has exactly the signature's inputs, each with its dtype and
    a per-sample shape (the signature shape minus its batch dim; None matches any size;
    an unknown-rank signature shape [] matches any) -- and one sample count for all."""
    have = data.inputs
    wanted = {t.name: t for t in inputs}
    missing = [k for k in sorted(wanted) if k not in have]
    extra = [k for k in sorted(have) if k not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append("lacks the signature input(s) " + ", ".join(map(repr, missing)))
        if extra:
            parts.append("has input(s) the signature does not take: " + ", ".join(map(repr, extra)))
        raise AgentError(
            "calibration data {} {} (signature inputs: {}; calibration data: {})".format(
                data.path, " and ".join(parts), ", ".join(sorted(wanted)), ", ".join(sorted(have))
            ),
            "Name each calibration array after its signature input: " + _SAVE_HINT,
        )
    problems = []
    for name in sorted(wanted):
        info, (dtype, shape) = wanted[name], have[name]
        want = list(info.shape[1:]) if info.shape else None
        dtype_ok = array_fits(info.dtype, dtype, data.arrays[name].dtype.kind)
        if not dtype_ok or (want is not None and not _fits(want, shape)):
            shown = "[any rank]" if want is None else str(want)
            problems.append(
                f"calibration input {name!r}: expected {info.dtype} {shown} per sample, "
                f"got {dtype} {shape}"
            )
    if problems:
        raise AgentError(
            "; ".join(problems),
            "Save each array with the signature's dtype and per-sample shape, samples on "
            "axis 0 (e.g. x.astype(np.float32) with x.shape == (samples, *shape)).",
        )
    if data.samples == 0:
        raise AgentError(f"calibration data {data.path} holds no samples", _SAVE_HINT)


# --------------------------------------------------------------------------- batching


def plan_batches(samples: int, batch_size: int, requested: Optional[int]) -> int:
    """How many batches `batches` yields: `requested`, capped at the number of complete
    batches (samples // batch_size); all complete batches when `requested` is 0/None.
    A partial last batch is never yielded (calibration wants a single shape)."""
    if batch_size < 1:
        raise AgentError(f"calibration batch size must be >= 1, not {batch_size}")
    if requested is not None and requested < 0:
        raise AgentError(f"calibration batch count must be >= 0, not {requested}")
    complete = samples // batch_size
    return min(requested, complete) if requested else complete


def _release(arr: np.ndarray, lo: int, hi: int) -> None:
    """Drop the pages behind rows [lo, hi) of a read-only memmap from this process's
    resident set (they stay in the page cache), so RSS holds one batch, not the file."""
    mm = getattr(arr, "_mmap", None)
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if mm is None or advice is None or getattr(arr, "mode", None) != "r":
        return
    base = int(getattr(arr, "offset", 0)) % mmap.ALLOCATIONGRANULARITY  # np.memmap's layout
    if len(mm) != base + arr.nbytes:  # not the layout we expect: leave it alone
        return
    row = arr.strides[0]
    # Reach back 2 MiB: the kernel's fault-around (and large folios) may have mapped pages
    # of the previous rows again while this batch was read.
    start = max(base + lo * row - _RELEASE_BACK, 0)
    start -= start % mmap.PAGESIZE
    end = min(base + hi * row, len(mm))
    if end > start:
        try:
            mm.madvise(advice, start, end - start)
        except (OSError, ValueError):
            pass


def batches(
    data: CalibrationData, batch_size: int, count: Optional[int], order: Sequence[str]
) -> Iterator[Tuple[np.ndarray, ...]]:
    """Yield plan_batches(samples, batch_size, count) batches, each a tuple of arrays in
    `order` (contiguous copies of rows [i*bs, (i+1)*bs)); one batch is in RAM at a time."""
    unknown = [k for k in order if k not in data.arrays]
    if unknown:
        raise AgentError(
            "calibration data has no input(s) {} (it has: {})".format(
                ", ".join(map(repr, unknown)), ", ".join(data.arrays)
            )
        )
    n = plan_batches(data.samples, batch_size, count)
    return _iter_batches([data.arrays[k] for k in order], batch_size, n)


def _iter_batches(arrays: List[np.ndarray], bs: int, n: int) -> Iterator[Tuple[np.ndarray, ...]]:
    for i in range(n):
        lo, hi = i * bs, (i + 1) * bs
        out = []
        for arr in arrays:
            # A copy (np.ascontiguousarray alone would return a view into the map).
            batch = np.array(arr[lo:hi], order="C", copy=True)
            if not batch.dtype.isnative:
                batch = batch.astype(batch.dtype.newbyteorder("="))
            out.append(batch)
            _release(arr, lo, hi)
        yield tuple(out)
