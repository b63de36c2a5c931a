"""Conversion recipes: YAML files (model family x device class) -> `ConvertOptions`.

Precedence, lowest first: built-in defaults < recipe < recipe's `devices.<class>` block <
CLI flags (the caller applies those last). Schema: `recipes/README.md`. Host side only:
no TensorFlow, no Typer.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from device_agent.jetson import device_classes, find_module
from device_agent.protocol import PRECISIONS, PROFILE_STRATEGIES, ConvertOptions
from edge.errors import RecipeError
from edge.settings import settings

FAMILIES = ("classification", "detection", "segmentation", "nlp", "speech", "other")
DTYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64",
          "bool", "string")
REQUIRED = ("name", "description", "family", "inputs")
# The fields a `devices.<class>` block may override, with their built-in defaults.
DEFAULTS: Dict[str, Any] = {
    "precision": "FP32", "calibration": None, "dynamic_shapes": None,
    "segments": {"minimum_segment_size": 3, "max_engines": None}, "workspace": "auto",
    "op_denylist": [], "maximum_cached_engines": 1, "allow_build_at_runtime": True,
    "bench": {"batch_sizes": [1], "input_shapes": {}},
}
OVERRIDABLE = tuple(DEFAULTS)
TOP_KEYS = REQUIRED + OVERRIDABLE + ("signature_key", "tags", "devices")
HINT = "The schema is in recipes/README.md; check a file with `edge recipes validate FILE`."
SIZE_HINT = "Sizes look like 512MiB, 1GiB, 256MB or 1073741824 (bytes)."
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_OP_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class InputSpec:
    name: str
    dtype: str
    shape: List[int]  # -1 marks a dynamic dimension


@dataclass
class Calibration:
    batches: int = 8
    batch_size: int = 1


@dataclass
class DynamicShapes:
    strategy: str
    profiles: List[Dict[str, List[int]]]  # each: {input name: dims}, one build() input


@dataclass
class Segments:
    minimum_segment_size: int = 3
    max_engines: Optional[int] = None


@dataclass
class Bench:
    batch_sizes: List[int] = field(default_factory=lambda: [1])
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)


@dataclass
class Recipe:
    """One validated recipe. `devices` keeps each override block as written."""

    name: str
    description: str
    family: str
    inputs: List[InputSpec]
    precision: str = "FP32"
    calibration: Optional[Calibration] = None
    dynamic_shapes: Optional[DynamicShapes] = None
    segments: Segments = field(default_factory=Segments)
    workspace: str = "auto"
    op_denylist: List[str] = field(default_factory=list)
    maximum_cached_engines: int = 1
    allow_build_at_runtime: bool = True
    bench: Bench = field(default_factory=Bench)
    signature_key: str = "serving_default"
    tags: List[str] = field(default_factory=lambda: ["serve"])
    devices: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    path: Optional[Path] = None

    def to_dict(self) -> Dict[str, Any]:
        """The recipe as a JSON-able dict, defaults filled in."""
        return {**dataclasses.asdict(self), "path": str(self.path) if self.path else None}


@dataclass
class ResolvedRecipe:
    """A recipe applied to one device class: what a convert or bench job is given."""

    recipe: Recipe
    device_class: Optional[str]
    options: ConvertOptions
    workspace: Optional[str]  # "auto" (max_workspace_size_bytes=None) or a size
    bench_batch_sizes: List[int]
    bench_input_shapes: Dict[str, List[int]]
    applied_override: Optional[str] = None
    overridden_fields: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able view; the recipe by name only."""
        return {**dataclasses.asdict(self), "recipe": self.recipe.name}


# --------------------------------------------------------------------------- sizes, boards


def parse_size(text: Any) -> int:
    """Bytes in "512MiB", "1GiB", "256MB", "1073741824" (or an int); RecipeError if bad."""
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$", str(text))
    unit = match.group(2).lower() if match else None
    if isinstance(text, bool) or match is None or unit not in _UNITS:
        raise RecipeError(f"bad size {text!r}", SIZE_HINT)
    value = Decimal(match.group(1)) * _UNITS[unit]
    if value < 1 or value != value.to_integral_value():
        raise RecipeError(f"bad size {text!r}: not a positive whole number of bytes", SIZE_HINT)
    return int(value)


def known_device_classes() -> Tuple[str, ...]:
    """Device-class slugs a `devices:` block may name (device_agent.jetson's table)."""
    return tuple(device_classes())


def _board(slug: str) -> Tuple[Optional[int], bool]:
    """(memory bytes, has INT8) of a class. TensorRT INT8 needs compute capability 7.x+
    on Jetson: Maxwell (Nano, TX1) and Pascal (TX2) have no INT8 path."""
    mod = find_module(slug)
    if mod is None:
        return None, True
    return mod.memory_mb * 2**20, float(mod.compute_capability) >= 7.0


# --------------------------------------------------------------------------- validation


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

    def mapping(self, value: Any, path: str, keys: Tuple[str, ...] = (),
                required: Tuple[str, ...] = ()) -> Dict[str, Any]:
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
            raise self.fail(path, f"rank {len(dims)} does not match the rank "
                            f"{len(spec.shape)} of input {spec.name} (shape {spec.shape})")
        for i, (got, fixed) in enumerate(zip(dims, spec.shape)):
            if fixed != -1 and got != fixed and not (batch_free and i == 0):
                raise self.fail(f"{path}[{i}]", f"is {got} but dim {i} of input {spec.name} "
                                f"is fixed at {fixed}")
        return dims

    def input_dims(self, value: Any, path: str, inputs: Dict[str, InputSpec],
                   batch_free: bool) -> Dict[str, List[int]]:
        out = {}
        for name, dims in self.mapping(value, path).items():
            if name not in inputs:
                raise self.fail(_join(path, name), f"no input named {name!r} in inputs "
                                f"({', '.join(inputs)})")
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


def _parse_field(chk: _Check, key: str, value: Any, path: str,
                 inputs: Dict[str, InputSpec]) -> Any:
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
            raise chk.fail(path, f"expected \"auto\" or a size, got {_kind(value)}")
        try:
            parse_size(value)
        except RecipeError as exc:
            raise chk.fail(path, f"{exc.message} (use \"auto\", 512MiB, 1GiB, ...)") from None
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
        return Calibration(chk.int_(raw.get("batches", 8), sub("batches"), 1),
                           chk.int_(raw.get("batch_size", 1), sub("batch_size"), 1))
    if key == "segments":
        raw = chk.mapping(value, path, ("minimum_segment_size", "max_engines"))
        size = chk.int_(raw.get("minimum_segment_size", 3), sub("minimum_segment_size"), None)
        if size < 1 and size != -1:
            raise chk.fail(sub("minimum_segment_size"),
                           f"must be >= 1 (or -1: convert nothing), got {size}")
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
                raise chk.fail(f"{path}.profiles[{i}]", f"no dims for input(s) "
                               f"{', '.join(missing)}: build() feeds every input")
            profiles.append(dims)
        return DynamicShapes(strategy, profiles)
    if key == "bench":
        raw = chk.mapping(value, path, ("batch_sizes", "input_shapes"))
        sizes = [chk.int_(b, f"{path}.batch_sizes[{i}]", 1) for i, b in
                 enumerate(chk.list_(raw.get("batch_sizes", [1]), sub("batch_sizes"), True))]
        for spec in inputs.values():
            if spec.shape[0] != -1 and any(b != spec.shape[0] for b in sizes):
                raise chk.fail(sub("batch_sizes"), f"{sizes}, but the batch dim of input "
                               f"{spec.name} is fixed at {spec.shape[0]}")
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


def _view(chk: _Check, recipe: Recipe, override: Mapping[str, Any], prefix: str,
          device_class: Optional[str]) -> Dict[str, Any]:
    """The typed overridable fields of `recipe` with `override` applied, checked across
    fields for `device_class`. Errors name `prefix.<field>` (the override block)."""
    inputs = {s.name: s for s in recipe.inputs}
    view = {key: getattr(recipe, key) for key in OVERRIDABLE}
    for key, value in override.items():
        view[key] = _parse_field(chk, key, _merge(view[key], value), _join(prefix, key), inputs)
    if view["precision"] == "INT8" and view["calibration"] is None:
        raise chk.fail(_join(prefix, "precision"), "INT8 needs calibration: "
                       "{batches, batch_size}")
    memory, int8 = _board(device_class) if device_class else (None, True)
    if view["precision"] == "INT8" and not int8:
        raise chk.fail(_join(prefix, "precision"), f"{device_class} has no INT8 path in "
                       f"TensorRT; set devices.{device_class}.precision: FP16")
    if memory and view["workspace"] != "auto" and parse_size(view["workspace"]) >= memory:
        raise chk.fail(_join(prefix, "workspace"), f"{view['workspace']} is not below the "
                       f"{memory // 2**30} GiB memory of {device_class}")
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
    fields = {key: _parse_field(chk, key, data.get(key, DEFAULTS[key]), key, by_name)
              for key in OVERRIDABLE}
    tags = [chk.str_(t, f"tags[{i}]") for i, t in
            enumerate(chk.list_(data.get("tags", ["serve"]), "tags", nonempty=True))]
    recipe = Recipe(name=name, description=chk.str_(data["description"], "description"),
                    family=chk.str_(data["family"], "family", FAMILIES), inputs=inputs,
                    signature_key=chk.str_(data.get("signature_key", "serving_default"),
                                           "signature_key"), tags=tags, path=path, **fields)
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


# --------------------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML keeps the last silently)."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> Dict[Any, Any]:
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            continue
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def recipes_dir() -> Path:
    """Where named recipes live: $EDGE_RECIPES, else the repository's recipes/."""
    env = settings().recipes
    if env:
        return env
    # == Path(edge.__file__).parent.parent; this module's own path also holds when a
    # tests/edge directory shadows `edge` as a namespace package.
    return Path(__file__).resolve().parent.parent / "recipes"


def _recipe_files(directory: Path) -> List[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_recipe_file(path: Path) -> Recipe:
    """Read and validate one recipe file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}",
                          "Name a recipe (edge recipes ls) or an existing .yaml file.") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}: YAML syntax error{where}: {problem}", HINT) from None
    return parse_recipe(data, str(path), path)


def load_recipe(name_or_path: str) -> Recipe:
    """A recipe by name (a file in recipes_dir()) or by path to a .yaml file."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path or candidate.is_file():
        return load_recipe_file(candidate)
    directory = recipes_dir()
    for suffix in (".yaml", ".yml"):
        if (directory / (name_or_path + suffix)).is_file():
            return load_recipe_file(directory / (name_or_path + suffix))
    names = ", ".join(p.stem for p in _recipe_files(directory)) or "none"
    raise RecipeError(f"no recipe named {name_or_path!r} in {directory} (available: {names})",
                      "edge recipes ls")


def list_recipes() -> List[Recipe]:
    """Every recipe in recipes_dir(), by name; an invalid file raises RecipeError."""
    return [load_recipe_file(p) for p in _recipe_files(recipes_dir())]


def recipe_summary(recipe: Recipe) -> Dict[str, Any]:
    """One row of `edge recipes ls`."""
    dyn = recipe.dynamic_shapes
    return {"name": recipe.name, "family": recipe.family, "precision": recipe.precision,
            "dynamic": dyn is not None, "strategy": dyn.strategy if dyn else None,
            "devices": sorted(recipe.devices), "description": recipe.description,
            "path": str(recipe.path) if recipe.path else None}


# --------------------------------------------------------------------------- resolving


def _build_shapes(recipe: Recipe, view: Dict[str, Any]) -> List[Dict[str, List[int]]]:
    """Profiles as given; else one shape at the first bench batch size, if all else is
    static (bench.input_shapes may size dynamic dims). [] leaves engines to runtime."""
    if view["dynamic_shapes"] is not None:
        return [{k: list(v) for k, v in p.items()} for p in view["dynamic_shapes"].profiles]
    bench: Bench = view["bench"]
    shape: Dict[str, List[int]] = {}
    for spec in recipe.inputs:
        dims = [bench.batch_sizes[0]] + list(bench.input_shapes.get(spec.name, spec.shape)[1:])
        if any(d < 1 for d in dims):
            return []
        shape[spec.name] = dims
    return [shape]


def resolve(recipe: Recipe, device_class: Optional[str] = None) -> ResolvedRecipe:
    """The recipe's options for `device_class` (None: the recipe without overrides)."""
    if device_class is not None and device_class not in known_device_classes():
        raise RecipeError(f"unknown device class {device_class!r}",
                          f"Known classes: {', '.join(known_device_classes())}")
    override = recipe.devices.get(device_class, {}) if device_class else {}
    prefix = _join("devices", device_class) if override else ""
    view = _view(_Check(str(recipe.path or recipe.name)), recipe, override, prefix, device_class)
    calib: Optional[Calibration] = view["calibration"]
    dyn: Optional[DynamicShapes] = view["dynamic_shapes"]
    bench: Bench = view["bench"]
    default = ConvertOptions()
    options = ConvertOptions(
        precision=view["precision"],
        signature_key=recipe.signature_key,
        tags=list(recipe.tags),
        max_workspace_size_bytes=None if view["workspace"] == "auto"
        else parse_size(view["workspace"]),
        minimum_segment_size=view["segments"].minimum_segment_size,
        maximum_cached_engines=view["maximum_cached_engines"],
        use_calibration=calib is not None,
        allow_build_at_runtime=view["allow_build_at_runtime"],
        use_dynamic_shape=dyn is not None,
        dynamic_shape_profile_strategy=dyn.strategy if dyn else None,
        build_shapes=_build_shapes(recipe, view),
        max_engines=view["segments"].max_engines,
        op_denylist=list(view["op_denylist"]),
        calibration_batches=calib.batches if calib else default.calibration_batches,
        calibration_batch_size=calib.batch_size if calib else default.calibration_batch_size,
    )
    shapes = {k: list(v) for k, v in bench.input_shapes.items()}
    if dyn is not None:  # unsized dynamic dims: the first profile's
        for spec in recipe.inputs:
            if spec.name not in shapes and -1 in spec.shape[1:]:
                shapes[spec.name] = list(dyn.profiles[0][spec.name])
    return ResolvedRecipe(recipe=recipe, device_class=device_class, options=options,
                          workspace=view["workspace"], bench_batch_sizes=list(bench.batch_sizes),
                          bench_input_shapes=shapes,
                          applied_override=device_class if override else None,
                          overridden_fields=sorted(override))
