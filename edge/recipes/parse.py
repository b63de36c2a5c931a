"""Validate a decoded recipe document into a `Recipe`; each error names the file, the field
path and why."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from device_agent.jetson import find_module
from device_agent.protocol import PRECISIONS, PROFILE_STRATEGIES
from edge.core.errors import RecipeError
from edge.recipes.schema import (
    DEFAULTS,
    DTYPES,
    FAMILIES,
    HINT,
    OVERRIDABLE,
    REQUIRED,
    TOP_KEYS,
    Bench,
    Calibration,
    DynamicShapes,
    InputSpec,
    Recipe,
    Segments,
    known_device_classes,
    parse_size,
)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_OP_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _board(slug: str) -> Tuple[Optional[int], bool]:
    """(memory bytes, has INT8) of a class. TensorRT INT8 needs compute capability 7.x+
    on Jetson: Maxwell (Nano, TX1) and Pascal (TX2) have no INT8 path."""
    mod = find_module(slug)
    if mod is None:
        return None, True
    return mod.memory_mb * 2**20, float(mod.compute_capability) >= 7.0


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class _Check:
    """Typed readers that raise RecipeError naming the file, the field path and why."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> RecipeError:
        return RecipeError(f"{self.source}: {path or '(document)'}: {reason}", HINT)

    def int_(self, value: Any, path: str, minimum: Optional[int] = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def str_(self, value: Any, path: str, choices: Tuple[str, ...] = ()) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_kind(value)}")
        if choices and value not in choices:
            raise self.fail(path, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def list_(self, value: Any, path: str, nonempty: bool = False) -> List[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        if nonempty and not value:
            raise self.fail(path, "must not be empty")
        return value

    def mapping(
        self, value: Any, path: str, keys: Tuple[str, ...] = (), required: Tuple[str, ...] = ()
    ) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if keys and key not in keys:
                raise self.fail(_join(path, key), f"unknown field (allowed: {', '.join(keys)})")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "required field is missing")
        return value

    def dims(self, value: Any, path: str, spec: InputSpec, batch_free: bool) -> List[int]:
        dims = [self.int_(d, f"{path}[{i}]", 1) for i, d in enumerate(self.list_(value, path))]
        if len(dims) != len(spec.shape):
            raise self.fail(
                path,
                f"rank {len(dims)} does not match the rank "
                f"{len(spec.shape)} of input {spec.name} (shape {spec.shape})",
            )
        for i, (got, fixed) in enumerate(zip(dims, spec.shape)):
            if fixed != -1 and got != fixed and not (batch_free and i == 0):
                raise self.fail(
                    f"{path}[{i}]", f"is {got} but dim {i} of input {spec.name} is fixed at {fixed}"
                )
        return dims

    def input_dims(
        self, value: Any, path: str, inputs: Dict[str, InputSpec], batch_free: bool
    ) -> Dict[str, List[int]]:
        out = {}
        for name, dims in self.mapping(value, path).items():
            if name not in inputs:
                raise self.fail(
                    _join(path, name), f"no input named {name!r} in inputs ({', '.join(inputs)})"
                )
            out[name] = self.dims(dims, _join(path, name), inputs[name], batch_free)
        return out


def _parse_inputs(chk: _Check, value: Any) -> List[InputSpec]:
    specs: List[InputSpec] = []
    for i, item in enumerate(chk.list_(value, "inputs", nonempty=True)):
        path = f"inputs[{i}]"
        item = chk.mapping(item, path, ("name", "dtype", "shape"), ("name", "dtype", "shape"))
        name = chk.str_(item["name"], path + ".name")
        if any(s.name == name for s in specs):
            raise chk.fail(path + ".name", f"duplicate input name {name!r}")
        shape = chk.list_(item["shape"], path + ".shape", nonempty=True)
        for j, dim in enumerate(shape):
            if chk.int_(dim, f"{path}.shape[{j}]", -1) == 0:
                raise chk.fail(f"{path}.shape[{j}]", "must be -1 (dynamic) or >= 1")
        specs.append(InputSpec(name, chk.str_(item["dtype"], path + ".dtype", DTYPES), shape))
    return specs


def _parse_field(chk: _Check, key: str, value: Any, path: str, inputs: Dict[str, InputSpec]) -> Any:
    """One overridable field, raw -> typed (None stays None where the field allows it)."""

    def sub(name: str) -> str:
        return _join(path, name)

    if key == "precision":
        return chk.str_(value, path, PRECISIONS)
    if key == "maximum_cached_engines":
        return chk.int_(value, path, 1)
    if key == "allow_build_at_runtime":
        if not isinstance(value, bool):
            raise chk.fail(path, f"expected true or false, got {_kind(value)}")
        return value
    if key == "workspace":
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise chk.fail(path, f'expected "auto" or a size, got {_kind(value)}')
        try:
            parse_size(value)
        except RecipeError as exc:
            raise chk.fail(path, f'{exc.message} (use "auto", 512MiB, 1GiB, ...)') from None
        return str(value)
    if key == "op_denylist":
        for i, op in enumerate(chk.list_(value, path)):
            if not isinstance(op, str) or not _OP_RE.match(op):
                raise chk.fail(f"{path}[{i}]", f"expected a TensorFlow op type, got {op!r}")
        return list(value)
    if key == "calibration":
        if value is None:
            return None
        raw = chk.mapping(value, path, ("batches", "batch_size"))
        return Calibration(
            chk.int_(raw.get("batches", 8), sub("batches"), 1),
            chk.int_(raw.get("batch_size", 1), sub("batch_size"), 1),
        )
    if key == "segments":
        raw = chk.mapping(value, path, ("minimum_segment_size", "max_engines"))
        size = chk.int_(raw.get("minimum_segment_size", 3), sub("minimum_segment_size"), None)
        if size < 1 and size != -1:
            raise chk.fail(
                sub("minimum_segment_size"), f"must be >= 1 (or -1: convert nothing), got {size}"
            )
        engines = raw.get("max_engines")
        return Segments(size, None if engines is None else chk.int_(engines, sub("max_engines"), 1))
    if key == "dynamic_shapes":
        if value is None:
            return None
        raw = chk.mapping(value, path, ("strategy", "profiles"), ("profiles",))
        strategy = chk.str_(raw.get("strategy", "Range"), sub("strategy"), PROFILE_STRATEGIES)
        profiles = []
        for i, prof in enumerate(chk.list_(raw["profiles"], sub("profiles"), nonempty=True)):
            dims = chk.input_dims(prof, f"{path}.profiles[{i}]", inputs, batch_free=False)
            missing = [n for n in inputs if n not in dims]
            if missing:
                raise chk.fail(
                    f"{path}.profiles[{i}]",
                    f"no dims for input(s) {', '.join(missing)}: build() feeds every input",
                )
            profiles.append(dims)
        return DynamicShapes(strategy, profiles)
    if key == "bench":
        raw = chk.mapping(value, path, ("batch_sizes", "input_shapes"))
        sizes = [
            chk.int_(b, f"{path}.batch_sizes[{i}]", 1)
            for i, b in enumerate(chk.list_(raw.get("batch_sizes", [1]), sub("batch_sizes"), True))
        ]
        for spec in inputs.values():
            if spec.shape[0] != -1 and any(b != spec.shape[0] for b in sizes):
                raise chk.fail(
                    sub("batch_sizes"),
                    f"{sizes}, but the batch dim of input {spec.name} is fixed at {spec.shape[0]}",
                )
        shapes = chk.input_dims(raw.get("input_shapes", {}), sub("input_shapes"), inputs, True)
        return Bench(sizes, shapes)
    raise chk.fail(path, "unknown field")  # pragma: no cover - callers check keys first


def _merge(base: Any, override: Any) -> Any:
    """Mappings merge one level deep; anything else (lists, scalars, null) replaces."""
    if dataclasses.is_dataclass(base) and not isinstance(base, type):
        base = dataclasses.asdict(base)
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **override}
    return override


def _view(
    chk: _Check,
    recipe: Recipe,
    override: Mapping[str, Any],
    prefix: str,
    device_class: Optional[str],
) -> Dict[str, Any]:
    """The typed overridable fields of `recipe` with `override` applied, checked across
    fields for `device_class`. Errors name `prefix.<field>` (the override block)."""
    inputs = {s.name: s for s in recipe.inputs}
    view = {key: getattr(recipe, key) for key in OVERRIDABLE}
    for key, value in override.items():
        view[key] = _parse_field(chk, key, _merge(view[key], value), _join(prefix, key), inputs)
    if view["precision"] == "INT8" and view["calibration"] is None:
        raise chk.fail(_join(prefix, "precision"), "INT8 needs calibration: {batches, batch_size}")
    memory, int8 = _board(device_class) if device_class else (None, True)
    if view["precision"] == "INT8" and not int8:
        raise chk.fail(
            _join(prefix, "precision"),
            f"{device_class} has no INT8 path in "
            f"TensorRT; set devices.{device_class}.precision: FP16",
        )
    if memory and view["workspace"] != "auto" and parse_size(view["workspace"]) >= memory:
        raise chk.fail(
            _join(prefix, "workspace"),
            f"{view['workspace']} is not below the {memory // 2**30} GiB memory of {device_class}",
        )
    return view


def parse_recipe(data: Any, source: str, path: Optional[Path] = None) -> Recipe:
    """Validate a decoded YAML document into a Recipe; RecipeError names file and field."""
    chk = _Check(source)
    data = chk.mapping(data, "", TOP_KEYS, REQUIRED)
    name = chk.str_(data["name"], "name")
    if not _NAME_RE.match(name):
        raise chk.fail("name", f"{name!r} is not a slug (lowercase letters, digits, . _ -)")
    if path is not None and name != path.stem:
        raise chk.fail("name", f"{name!r} must match the file name {path.name!r}")
    inputs = _parse_inputs(chk, data["inputs"])
    by_name = {s.name: s for s in inputs}
    fields = {
        key: _parse_field(chk, key, data.get(key, DEFAULTS[key]), key, by_name)
        for key in OVERRIDABLE
    }
    tags = [
        chk.str_(t, f"tags[{i}]")
        for i, t in enumerate(chk.list_(data.get("tags", ["serve"]), "tags", nonempty=True))
    ]
    recipe = Recipe(
        name=name,
        description=chk.str_(data["description"], "description"),
        family=chk.str_(data["family"], "family", FAMILIES),
        inputs=inputs,
        signature_key=chk.str_(data.get("signature_key", "serving_default"), "signature_key"),
        tags=tags,
        path=path,
        **fields,
    )
    _view(chk, recipe, {}, "", None)
    known = known_device_classes()
    devices = data.get("devices")
    for slug, block in chk.mapping({} if devices is None else devices, "devices").items():
        prefix = _join("devices", slug)
        if slug not in known:
            raise chk.fail(prefix, f"unknown device class (known: {', '.join(known)})")
        for key in chk.mapping(block, prefix):
            if key not in OVERRIDABLE:
                why = "cannot be overridden per device" if key in TOP_KEYS else "unknown field"
                raise chk.fail(_join(prefix, key), f"{why} (overridable: {', '.join(OVERRIDABLE)})")
        _view(chk, recipe, block, prefix, slug)
        recipe.devices[slug] = dict(block)
    return recipe


def effective_fields(recipe: Recipe, device_class: Optional[str]) -> Dict[str, Any]:
    """The typed overridable fields of `recipe` with its `devices.<device_class>` block
    applied (None: none), checked across fields for that class."""
    override = recipe.devices.get(device_class, {}) if device_class else {}
    prefix = _join("devices", device_class) if override else ""
    return _view(_Check(str(recipe.path or recipe.name)), recipe, override, prefix, device_class)
