"""The wire codec shared by the host and the agent: dataclasses to JSON and back.

Decoding is validation: whatever crosses the wire comes from a peer that may be broken or
hostile, so every field is checked against its annotation (a string where an int belongs,
a list where an object does, a missing required field) and the error names the field.
Unknown fields stay ignored: an older reader accepts a newer writer's extras. Types may
also register a range check (`RANGE_CHECKS`), run after their fields decode.

Python 3.8 (JetPack 5): `typing.List`/`Optional` only, nothing newer than its stdlib.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

T = TypeVar("T")


class ProtocolError(ValueError):
    """A message that does not follow this protocol (wrong version, unknown field...)."""


#: type -> a check of a decoded value's ranges, `check(obj, where)` raising ProtocolError
RANGE_CHECKS: Dict[type, Callable[[Any, str], None]] = {}

_NONE = type(None)
_SCALARS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


@functools.lru_cache(maxsize=None)  # noqa: UP033 (functools.cache is 3.9+)
def _hints(cls: type) -> Dict[str, Any]:
    # each class's own annotations resolve in its own module (a host result type extends
    # the protocol's DeviceResult, whose annotations name typing.Optional)
    return typing.get_type_hints(cls)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _wrong(where: str, expected: str, value: Any) -> ProtocolError:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return ProtocolError(f"{where}: expected {expected}, got {_kind(value)} ({shown})")


def _union_args(tp: Any) -> Optional[Tuple[Any, ...]]:
    """The members of Optional[X]/Union[...] (also `X | None` on the host's Python)."""
    if getattr(tp, "__origin__", None) is typing.Union or type(tp).__name__ == "UnionType":
        return tuple(getattr(tp, "__args__", ()))
    return None


def _decode(tp: Any, value: Any, where: str) -> Any:
    """`value` checked against type `tp` (and dataclasses built); ProtocolError if not."""
    if tp is Any:
        return value
    members = _union_args(tp)
    if members is not None:
        if value is None and _NONE in members:
            return None
        inner = [a for a in members if a is not _NONE]
        return _decode(inner[0], value, where) if len(inner) == 1 else value
    origin = getattr(tp, "__origin__", None)
    args = getattr(tp, "__args__", None) or ()
    if origin in (list, List):
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        if not args:
            return list(value)
        return [_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        if not args:
            return dict(value)
        return {k: _decode(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):  # a class, never an instance
        return _from_dict(tp, value, where)
    if tp in _SCALARS:
        ok = isinstance(value, tp) and not (tp is not bool and isinstance(value, bool))
        if tp is float:  # JSON has one number type: 1 is a fine float
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise _wrong(where, _SCALARS[tp], value)
    return value


def _from_dict(cls: Type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise _wrong(where, "an object for " + cls.__name__, data)
    klass: type = cls  # mypy does not see a type[T] as Hashable, which the cache needs
    hints = _hints(klass)
    kwargs = {}
    missing = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _decode(hints[f.name], data[f.name], where + "." + f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            missing.append(f.name)
    if missing:
        raise ProtocolError(
            "{}: missing required field{} {}".format(
                where, "s" if len(missing) > 1 else "", ", ".join(missing)
            )
        )
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise ProtocolError(f"bad {where}: {exc}") from exc
    check = RANGE_CHECKS.get(cls)
    if check is not None:
        check(obj, where)
    return obj


def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
    """Build dataclass `cls` from a JSON-decoded dict, checking every field's type (and the
    ranges that matter); ProtocolError names the first bad field. Unknown keys are
    ignored so an older reader accepts a newer writer's extra fields."""
    return _from_dict(cls, data, cls.__name__)


def to_dict(obj: Any) -> Dict[str, Any]:
    """Dataclass -> plain JSON-able dict (recursively)."""
    return dataclasses.asdict(obj)


def dumps(obj: Any) -> str:
    return json.dumps(to_dict(obj) if dataclasses.is_dataclass(obj) else obj, sort_keys=True)


class JsonMixin:
    """`to_json`/`from_json` for the dataclasses below."""

    def to_dict(self) -> Dict[str, Any]:
        return to_dict(self)

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        return from_dict(cls, data)

    @classmethod
    def from_json(cls: Type[T], text: str) -> T:
        return from_dict(cls, json.loads(text))
