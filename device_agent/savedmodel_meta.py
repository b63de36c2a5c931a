"""Read a SavedModel's serving signatures from saved_model.pb without TensorFlow.

A minimal protobuf wire-format reader (stdlib only) that walks just enough of the file:

    SavedModel.meta_graphs (2) -> MetaGraphDef
      .meta_info_def (1) -> MetaInfoDef.tags (4, repeated string)
      .signature_def (5, map<string, SignatureDef>: entry key 1, value 2)
        SignatureDef.inputs (1) / .outputs (2) (map<string, TensorInfo>), .method_name (3)
          TensorInfo.name (1), .dtype (2, DataType), .tensor_shape (3)
            TensorShapeProto.dim (2, repeated Dim{size 1 (int64), name 2}), .unknown_rank (3)

(field numbers from tensorflow/core/protobuf/{saved_model,meta_graph}.proto and
framework/{tensor_shape,types}.proto). Everything else, the GraphDef and the object graph
included, is skipped by its length without being parsed, so a 100 MB file costs a few
slices of a memory map.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .dtypes import dtype_name
from .errors import AgentError
from .protocol import JsonMixin, TensorInfo

# Signature keys TensorFlow keeps in signature_def for itself (not serving signatures).
INTERNAL_SIGNATURE_PREFIX = "__saved_model_"

_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5
_MASK64 = (1 << 64) - 1
# A hostile saved_model.pb must not cost unbounded memory: groups nest at most as deep as
# protobuf's own default recursion limit, and the reader keeps at most MAX_ITEMS objects
# (meta graphs, tags, signature entries, tensors, dims) whatever the file's size. Time is
# linear in the bytes walked: every field is read once.
MAX_GROUP_DEPTH = 100
MAX_ITEMS = 50_000


@dataclass
class Signature(JsonMixin):
    """One serving signature. Inputs and outputs are sorted by key; `TensorInfo.name` is
    the signature key (what callers pass as keyword), not the graph tensor name. A shape
    lists None for an unknown dim and is [] when the rank itself is unknown."""

    key: str
    method_name: str
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)


class _Corrupt(Exception):
    """Bytes that are not a well-formed protobuf message."""


class _Budget:
    """Counts the objects the reader keeps; _Corrupt past MAX_ITEMS."""

    def __init__(self, limit: int = MAX_ITEMS) -> None:
        self.left = limit

    def take(self, what: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Corrupt(
                f"more than {MAX_ITEMS} {what} and other entries (a real "
                "SavedModel's signatures have far fewer)"
            )


# --------------------------------------------------------------------------- wire format


def _varint(buf: Any, pos: int, end: int) -> Tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (unsigned value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Corrupt(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _Corrupt(f"varint longer than 10 bytes at byte {pos}")


def _int64(value: int) -> int:
    """An int64 field's varint as a signed number (negatives are 10-byte two's complement)."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _field(buf: Any, pos: int, end: int) -> Tuple[int, int, int, int, int]:
    """Read the field at `pos`: (number, wire type, a, b, next position). A varint gives
    (value, 0), a length-delimited field its payload range (a, b); fixed-width fields and
    (deprecated) groups are skipped and give (0, 0)."""
    key, pos = _varint(buf, pos, end)
    wire, number = key & 7, key >> 3
    if number == 0:
        raise _Corrupt(f"field number 0 at byte {pos}")
    a = b = 0
    if wire == _VARINT:
        a, pos = _varint(buf, pos, end)
    elif wire == _LEN:
        length, pos = _varint(buf, pos, end)
        a, b = pos, pos + length
        pos = b
    elif wire == _I64:
        pos += 8
    elif wire == _I32:
        pos += 4
    elif wire == _SGROUP:
        open_groups = [number]
        while open_groups:
            inner, after_key = _varint(buf, pos, end)
            if inner & 7 == _EGROUP:
                if inner >> 3 != open_groups.pop():
                    raise _Corrupt(f"mismatched end-group at byte {pos}")
                pos = after_key
            elif inner & 7 == _SGROUP:
                if len(open_groups) >= MAX_GROUP_DEPTH:
                    raise _Corrupt(f"groups nested deeper than {MAX_GROUP_DEPTH} at byte {pos}")
                open_groups.append(inner >> 3)
                pos = after_key
            else:
                pos = _field(buf, pos, end)[4]
    else:
        raise _Corrupt(f"bad wire type {wire} at byte {pos}")
    if pos > end:
        raise _Corrupt(f"field {number} runs past the end of its message (byte {end})")
    return number, wire, a, b, pos


def _fields(buf: Any, start: int, end: int) -> Iterator[Tuple[int, int, int, int]]:
    """Yield (field number, wire type, a, b) for each field of the message buf[start:end]."""
    pos = start
    while pos < end:
        number, wire, a, b, pos = _field(buf, pos, end)
        yield number, wire, a, b


def _expect(wire: int, want: int, what: str) -> None:
    if wire != want:
        raise _Corrupt(f"{what} has wire type {wire}, not {want}")


def _text(buf: Any, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8")


# --------------------------------------------------------------------------- messages


def _shape(buf: Any, start: int, end: int, budget: _Budget) -> List[Optional[int]]:
    dims: List[Optional[int]] = []
    unknown_rank = False
    for number, wire, a, b in _fields(buf, start, end):
        if number == 2:
            _expect(wire, _LEN, "TensorShapeProto.dim")
            budget.take("dims")
            size = 0
            for n2, w2, a2, _ in _fields(buf, a, b):
                if n2 == 1:
                    _expect(w2, _VARINT, "Dim.size")
                    size = _int64(a2)
            dims.append(None if size < 0 else size)
        elif number == 3:
            _expect(wire, _VARINT, "TensorShapeProto.unknown_rank")
            unknown_rank = a != 0
    return [] if unknown_rank else dims


def _tensor_info(buf: Any, key: str, start: int, end: int, budget: _Budget) -> TensorInfo:
    dtype = 0
    shape: List[Optional[int]] = []
    for number, wire, a, b in _fields(buf, start, end):
        if number == 2:
            _expect(wire, _VARINT, "TensorInfo.dtype")
            dtype = a
        elif number == 3:
            _expect(wire, _LEN, "TensorInfo.tensor_shape")
            shape = _shape(buf, a, b, budget)
    return TensorInfo(name=key, dtype=dtype_name(dtype), shape=shape)


def _map_entry(buf: Any, start: int, end: int) -> Tuple[str, int, int]:
    """A map<string, Message> entry: (key, value range)."""
    key, vstart, vend = "", 0, 0
    for number, wire, a, b in _fields(buf, start, end):
        if number == 1:
            _expect(wire, _LEN, "map key")
            key = _text(buf, a, b)
        elif number == 2:
            _expect(wire, _LEN, "map value")
            vstart, vend = a, b
    return key, vstart, vend


def _signature(buf: Any, key: str, start: int, end: int, budget: _Budget) -> Signature:
    inputs: Dict[str, TensorInfo] = {}
    outputs: Dict[str, TensorInfo] = {}
    method = ""
    for number, wire, a, b in _fields(buf, start, end):
        if number in (1, 2):
            _expect(wire, _LEN, "SignatureDef map")
            budget.take("signature tensors")
            name, vs, ve = _map_entry(buf, a, b)
            (inputs if number == 1 else outputs)[name] = _tensor_info(buf, name, vs, ve, budget)
        elif number == 3:
            _expect(wire, _LEN, "SignatureDef.method_name")
            method = _text(buf, a, b)
    return Signature(
        key=key,
        method_name=method,
        inputs=[inputs[k] for k in sorted(inputs)],
        outputs=[outputs[k] for k in sorted(outputs)],
    )


def _meta_graphs(
    buf: Any, size: int, budget: _Budget
) -> List[Tuple[List[str], List[Tuple[int, int]]]]:
    """Every MetaGraphDef as (tags, ranges of its signature_def map entries)."""
    graphs = []
    for number, wire, a, b in _fields(buf, 0, size):
        if number != 2:
            continue
        _expect(wire, _LEN, "SavedModel.meta_graphs")
        budget.take("meta graphs")
        tags: List[str] = []
        entries: List[Tuple[int, int]] = []
        for n2, w2, a2, b2 in _fields(buf, a, b):
            if n2 == 1:  # meta_info_def: only its tags
                _expect(w2, _LEN, "MetaGraphDef.meta_info_def")
                for n3, w3, a3, b3 in _fields(buf, a2, b2):
                    if n3 == 4:
                        _expect(w3, _LEN, "MetaInfoDef.tags")
                        budget.take("tags")
                        tags.append(_text(buf, a3, b3))
            elif n2 == 5:  # signature_def entry; graph_def (2) etc. are never entered
                _expect(w2, _LEN, "MetaGraphDef.signature_def")
                budget.take("signatures")
                entries.append((a2, b2))
        graphs.append((tags, entries))
    return graphs


# --------------------------------------------------------------------------- API


def _pb_path(model_dir: str) -> str:
    if os.path.isfile(model_dir) and model_dir.endswith(".pb"):
        return model_dir
    pb = os.path.join(model_dir, "saved_model.pb")
    if not os.path.exists(pb):
        if os.path.exists(os.path.join(model_dir, "saved_model.pbtxt")):
            raise AgentError(
                f"{pb} not found: {model_dir} holds a text-format saved_model.pbtxt",
                "Save the model in binary form (model.save(dir) or tf.saved_model.save()).",
            )
        raise AgentError(
            f"{pb} not found: {model_dir} is not a SavedModel directory",
            "A SavedModel directory holds saved_model.pb and variables/, as written by "
            "model.save(dir) or tf.saved_model.save().",
        )
    return pb


def _parse(pb: str, tags: Optional[Sequence[str]]) -> Dict[str, Signature]:
    with open(pb, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise _Corrupt("empty file")
        try:
            buf: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file system without mmap: read it whole
            buf = f.read()
    try:
        budget = _Budget()
        graphs = _meta_graphs(buf, size, budget)
        if not graphs:
            raise _Corrupt("no MetaGraphDef in the file")
        if tags is None and len(graphs) == 1:
            chosen = graphs[0]
        else:
            wanted = set(tags or ())
            match = [g for g in graphs if set(g[0]) == wanted]
            if not match:
                present = "; ".join("[" + ", ".join(sorted(g[0])) + "]" for g in graphs)
                raise AgentError(
                    "{} has no MetaGraph tagged [{}]; the tag sets present are: {}".format(
                        pb, ", ".join(sorted(wanted)), present
                    ),
                    "Pass the tags of one of those MetaGraphs "
                    "(`saved_model_cli show --dir DIR` lists them too).",
                )
            chosen = match[0]
        signatures: Dict[str, Signature] = {}
        for start, end in chosen[1]:
            key, vs, ve = _map_entry(buf, start, end)
            if not key.startswith(INTERNAL_SIGNATURE_PREFIX):
                signatures[key] = _signature(buf, key, vs, ve, budget)
        return {k: signatures[k] for k in sorted(signatures)}
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def read_signatures(
    model_dir: str, tags: Optional[Sequence[str]] = ("serve",)
) -> Dict[str, Signature]:
    """The serving signatures of the MetaGraph whose tag set equals `tags` (tags=None: the
    only MetaGraph), keyed and sorted by signature key. TensorFlow's own entries
    (`__saved_model_init_op`, ...) are left out, as `tf.saved_model.load` does.

    Raises AgentError for a missing, unreadable or corrupt saved_model.pb (naming the
    file), and when no MetaGraph has the tags (listing the tag sets present).
    """
    pb = _pb_path(model_dir)
    try:
        return _parse(pb, tags)
    except (_Corrupt, ValueError, IndexError, OverflowError) as exc:  # ValueError: bad UTF-8
        detail = str(exc) if isinstance(exc, _Corrupt) else f"{type(exc).__name__}: {exc}"
        raise AgentError(
            f"{pb} is not a valid SavedModel protobuf ({detail})",
            "The file is damaged or truncated: push or save the model again.",
        ) from None
    except OSError as exc:
        raise AgentError(
            f"cannot read {pb}: {exc.strerror or exc}",
            "Check the file's permissions and that the disk is readable.",
        ) from None


def read_signature(
    model_dir: str, key: str = "serving_default", tags: Optional[Sequence[str]] = ("serve",)
) -> Signature:
    """One signature by key; AgentError naming the keys present when it is absent."""
    signatures = read_signatures(model_dir, tags)
    if key not in signatures:
        raise AgentError(
            "The SavedModel has no signature {!r} (it has: {}).".format(
                key, ", ".join(signatures) or "none"
            ),
            "Pass --signature with one of the names above.",
        )
    return signatures[key]


def check_model_dir(path: Optional[str], what: str = "model") -> str:
    """`path`, once it is known to be a SavedModel directory on this device."""
    if not path:
        raise AgentError(f"The job names no {what} directory.")
    if not os.path.isdir(path):
        raise AgentError(f"The {what} directory {path} does not exist on this device.")
    if not any(
        os.path.isfile(os.path.join(path, f)) for f in ("saved_model.pb", "saved_model.pbtxt")
    ):
        raise AgentError(
            f"{path} is not a SavedModel: it has no saved_model.pb.",
            "Save the model with model.save(dir) (Keras 2) or tf.saved_model.save(obj, dir).",
        )
    return path
