"""YAML for the inventory: PyYAML with libyaml's safe loader and dumper where it has them
(the pure-Python ones take most of a large inventory's load), and a JSON copy of the last
fleet.yaml parsed, so that a command whose inventory has not changed does not load PyYAML
at all (~15 ms of every start)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from edge.core.paths import cache_dir

if TYPE_CHECKING:
    import yaml

_CACHE = "fleet-yaml.json"
_SHAPE = 1


class YamlProblem(ValueError):
    """The text is not valid YAML: where (line, column; None if unknown) and what."""

    def __init__(self, line: int | None, column: int | None, problem: str) -> None:
        super().__init__(problem)
        self.line, self.column, self.problem = line, column, problem


def loader() -> type[yaml.SafeLoader]:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dumper() -> type[yaml.SafeDumper]:
    import yaml

    return getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(data: Any) -> str:
    """`data` as block YAML, keys in their order."""
    import yaml

    return yaml.dump(data, Dumper=dumper(), sort_keys=False)


def load_inventory_text(text: str) -> Any:
    """The YAML document in `text` (what `yaml.safe_load` gives), from the cached copy when
    it was made from this same text. Raises YamlProblem."""
    cached = _cached(text)
    if cached is not None:
        return cached[0]
    import yaml

    try:
        data = yaml.load(text, Loader=loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlProblem(
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
            str(getattr(exc, "problem", None) or exc),
        ) from None
    keep(text, data)
    return data


def _path() -> str:
    return os.path.join(cache_dir(), _CACHE)


def _cached(text: str) -> tuple[Any] | None:
    """(data,) where the cache holds `text`'s document; None otherwise (missing, another
    text, unreadable, or not the shape written)."""
    try:
        with open(_path(), encoding="utf-8") as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("shape") != _SHAPE or "data" not in kept:
        return None
    return (kept["data"],) if kept.get("text") == text else None


def keep(text: str, data: Any) -> None:
    """Keep `data` as `text`'s document (what loading it gives), only where JSON gives
    back exactly the same values: YAML's dates, binary, sets or non-string keys are not
    cached. A failure to write is a miss."""
    try:
        encoded = json.dumps({"shape": _SHAPE, "text": text, "data": data}, allow_nan=False)
    except (TypeError, ValueError):
        return
    if json.loads(encoded)["data"] != data:
        return
    path = _path()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(encoded)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
