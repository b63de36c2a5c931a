"""Recipes: shipped files, schema validation, precedence, resolution and the CLI."""

from __future__ import annotations

import copy
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import typer
import yaml
from typer.testing import CliRunner

from device_agent.backends import tftrt
from edge.cli import recipes as cli
from edge.cli._utils import typer_factory
from edge.core.errors import EdgeError, RecipeError
from edge.recipes.loader import list_recipes, load_recipe, recipes_dir
from edge.recipes.resolve import resolve
from edge.recipes.schema import (
    DEFAULTS,
    OVERRIDABLE,
    TOP_KEYS,
    ResolvedRecipe,
    known_device_classes,
    parse_size,
)

RECIPES_DIR = Path(__file__).resolve().parents[3] / "edge" / "recipes" / "builtin"
SHIPPED = sorted(p.stem for p in RECIPES_DIR.iterdir() if p.suffix in (".yaml", ".yml"))
CLASSES: List[Optional[str]] = [None, *known_device_classes()]


@pytest.fixture(autouse=True)
def _default_recipes_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_RECIPES", raising=False)


@pytest.fixture(scope="module")
def converter_signature() -> inspect.Signature:
    from tensorflow.python.compiler.tensorrt import trt_convert

    return inspect.signature(trt_convert.TrtGraphConverterV2.__init__)


def raw_yaml(name: str) -> Dict[str, Any]:
    return yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())


def effective(raw: Dict[str, Any], device_class: Optional[str], key: str) -> Any:
    """The documented precedence, computed independently from the YAML."""
    base = raw.get(key, DEFAULTS[key])
    block = (raw.get("devices") or {}).get(device_class) or {}
    if key not in block:
        return base
    if isinstance(base, dict) and isinstance(block[key], dict):
        return {**base, **block[key]}
    return block[key]


# --------------------------------------------------------------------------- shipped recipes


def test_required_recipes_are_shipped() -> None:
    assert {"mnist-mlp", "mobilenet-v2", "resnet50", "ssd-mobilenet-v2", "bert-base"} <= set(
        SHIPPED
    )
    for name in SHIPPED:
        devices = raw_yaml(name)["devices"]
        assert {"nano-4gb", "xavier-nx-8gb", "orin-nano-8gb", "agx-orin-64gb"} <= set(devices)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_recipe_binds_the_real_converter(
    name: str, converter_signature: inspect.Signature
) -> None:
    recipe = load_recipe(name)
    raw = raw_yaml(name)
    assert recipe.name == name and recipe.path == RECIPES_DIR / f"{name}.yaml"
    json.dumps(recipe.to_dict())
    for device_class in CLASSES:
        resolved = resolve(recipe, device_class)
        resolved.options.validate()
        kwargs = tftrt.converter_kwargs(resolved.options, "/m")
        converter_signature.bind(None, **kwargs)
        tftrt.trt_environment(resolved.options)
        json.dumps(resolved.to_dict())
        dyn = effective(raw, device_class, "dynamic_shapes")
        assert kwargs["use_dynamic_shape"] is (dyn is not None)
        if dyn is not None:
            assert kwargs["dynamic_shape_profile_strategy"] == dyn.get("strategy", "Range")
        names = [i["name"] for i in raw["inputs"]]
        for shape in resolved.options.build_shapes:
            assert list(shape) == names
            for spec in raw["inputs"]:
                assert len(shape[spec["name"]]) == len(spec["shape"])


def test_bert_follows_the_guide() -> None:
    raw = raw_yaml("bert-base")
    assert [(i["name"], i["dtype"], i["shape"]) for i in raw["inputs"]] == [
        ("input_ids", "int32", [-1, -1]),
        ("attention_mask", "int32", [-1, -1]),
        ("token_type_ids", "int32", [-1, -1]),
    ]
    resolved = resolve(load_recipe("bert-base"))
    assert resolved.options.dynamic_shape_profile_strategy == "Optimal"
    assert [{d[1] for d in s.values()} for s in resolved.options.build_shapes] == [{128}, {384}]
    assert [{d[0] for d in s.values()} for s in resolved.options.build_shapes] == [{1}, {1}]


def test_mnist_matches_the_guides_keras_model() -> None:
    raw = raw_yaml("mnist-mlp")
    assert raw["inputs"] == [{"name": "flatten_input", "dtype": "float32", "shape": [-1, 28, 28]}]
    resolved = resolve(load_recipe("mnist-mlp"))
    first = raw["bench"]["batch_sizes"][0]
    assert resolved.options.build_shapes == [{"flatten_input": [first, 28, 28]}]
    assert resolved.options.use_dynamic_shape is False


# --------------------------------------------------------------------------- precedence


def projections(res: ResolvedRecipe) -> Dict[str, Any]:
    """What each recipe field turns into in a resolved recipe."""
    o = res.options
    return {
        "precision": o.precision,
        "calibration": (o.use_calibration, o.calibration_batches, o.calibration_batch_size),
        "dynamic_shapes": (
            o.use_dynamic_shape,
            o.dynamic_shape_profile_strategy,
            o.build_shapes if o.use_dynamic_shape else None,
        ),
        "segments": (o.minimum_segment_size, o.max_engines),
        "workspace": (res.workspace, o.max_workspace_size_bytes),
        "op_denylist": o.op_denylist,
        "maximum_cached_engines": o.maximum_cached_engines,
        "allow_build_at_runtime": o.allow_build_at_runtime,
        "bench": (res.bench_batch_sizes, res.bench_input_shapes),
    }


def expected(
    raw: Dict[str, Any], device_class: Optional[str], key: str, res: ResolvedRecipe
) -> Any:
    """The projection of `key`, derived from the YAML alone."""
    value = effective(raw, device_class, key)
    if key == "calibration":
        return (
            (False, 8, 1)
            if value is None
            else (True, value.get("batches", 8), value.get("batch_size", 1))
        )
    if key == "dynamic_shapes":
        return (
            (False, None, None)
            if value is None
            else (True, value.get("strategy", "Range"), value["profiles"])
        )
    if key == "segments":
        return value.get("minimum_segment_size", 3), value.get("max_engines")
    if key == "workspace":
        return str(value), None if value == "auto" else parse_size(value)
    if key == "bench":
        return value.get("batch_sizes", [1]), res.bench_input_shapes  # shapes: checked below
    return value


@pytest.mark.parametrize("name", SHIPPED)
def test_override_changes_exactly_the_fields_it_names(name: str) -> None:
    raw = raw_yaml(name)
    recipe = load_recipe(name)
    base = resolve(recipe, None)
    base_view = projections(base)
    for key in OVERRIDABLE:
        assert base_view[key] == expected(raw, None, key, base), key
    for device_class in known_device_classes():
        block = raw["devices"].get(device_class)
        res = resolve(recipe, device_class)
        if block is None:
            assert res.applied_override is None and res.options == base.options
            continue
        assert res.applied_override == device_class
        assert res.overridden_fields == sorted(block)
        view = projections(res)
        for key in OVERRIDABLE:
            if key in block:
                assert view[key] == expected(raw, device_class, key, res), (device_class, key)
            else:
                assert view[key] == base_view[key], (device_class, key)
        if "input_shapes" in effective(raw, device_class, "bench"):
            assert set(effective(raw, device_class, "bench")["input_shapes"]) <= set(
                res.bench_input_shapes
            )


def write(tmp_path: Path, data: Any, name: str = "custom") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


BASE: Dict[str, Any] = {
    "name": "custom",
    "description": "a small NLP recipe for the tests",
    "family": "nlp",
    "inputs": [
        {"name": "input_ids", "dtype": "int32", "shape": [-1, -1]},
        {"name": "attention_mask", "dtype": "int32", "shape": [-1, -1]},
    ],
    "precision": "FP16",
    "calibration": {"batches": 4, "batch_size": 2},
    "dynamic_shapes": {
        "strategy": "Optimal",
        "profiles": [
            {"input_ids": [1, 128], "attention_mask": [1, 128]},
            {"input_ids": [1, 384], "attention_mask": [1, 384]},
        ],
    },
    "bench": {"batch_sizes": [1, 2], "input_shapes": {"input_ids": [1, 64]}},
}


def test_partial_overrides_merge_one_level(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["devices"] = {
        "nano-4gb": {
            "bench": {"batch_sizes": [4]},
            "calibration": None,
            "dynamic_shapes": {"strategy": "Range"},
        }
    }
    recipe = load_recipe(str(write(tmp_path, data)))
    res = resolve(recipe, "nano-4gb")
    assert res.bench_batch_sizes == [4]
    # input_ids from the recipe's bench; attention_mask from the first profile.
    assert res.bench_input_shapes == {"input_ids": [1, 64], "attention_mask": [1, 128]}
    assert res.options.use_calibration is False
    assert res.options.dynamic_shape_profile_strategy == "Range"
    assert res.options.build_shapes == BASE["dynamic_shapes"]["profiles"]
    assert resolve(recipe, "nano-2gb").applied_override is None


def test_static_recipe_build_shapes(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["dynamic_shapes"] = None
    data["bench"] = {"batch_sizes": [8, 1]}
    res = resolve(load_recipe(str(write(tmp_path, data))))
    assert res.options.build_shapes == []  # the sequence length is unknown
    data["bench"]["input_shapes"] = {"input_ids": [1, 32], "attention_mask": [1, 32]}
    res = resolve(load_recipe(str(write(tmp_path, data))))
    assert res.options.build_shapes == [{"input_ids": [8, 32], "attention_mask": [8, 32]}]


def test_workspace_sizes_and_auto(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["workspace"] = 1073741824
    data["devices"] = {"xavier-nx-8gb": {"workspace": "auto"}}
    recipe = load_recipe(str(write(tmp_path, data)))
    assert resolve(recipe).options.max_workspace_size_bytes == 2**30
    assert resolve(recipe, "xavier-nx-8gb").options.max_workspace_size_bytes is None
    assert "max_workspace_size_bytes" not in tftrt.converter_kwargs(
        resolve(recipe, "xavier-nx-8gb").options, "/m"
    )


def test_resolve_rejects_an_unknown_device_class() -> None:
    with pytest.raises(RecipeError, match="nano-5gb"):
        resolve(load_recipe("resnet50"), "nano-5gb")


# --------------------------------------------------------------------------- bad recipes


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return mutate


def _drop(key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data.pop(key)


IMAGE = [{"name": "image", "dtype": "uint8", "shape": [1, -1, -1, 3]}]
BAD: List[Tuple[str, Callable[[Dict[str, Any]], None], str]] = [
    ("unknown top-level key", _set("colour", "red"), "colour"),
    ("unknown nested key", _set("segments.foo", 1), "segments.foo"),
    ("missing required field", _drop("inputs"), "inputs"),
    ("name differs from file", _set("name", "other"), "name"),
    ("bad family", _set("family", "vision"), "family"),
    (
        "bad dtype",
        _set("inputs", [{"name": "x", "dtype": "f32", "shape": [-1]}]),
        "inputs[0].dtype",
    ),
    (
        "zero dim",
        _set("inputs", [{"name": "x", "dtype": "float32", "shape": [-1, 0]}]),
        "inputs[0].shape[1]",
    ),
    ("string for int", _set("maximum_cached_engines", "two"), "maximum_cached_engines"),
    ("string for bool", _set("allow_build_at_runtime", "yes"), "allow_build_at_runtime"),
    ("bad precision", _set("precision", "FP8"), "precision"),
    ("bad strategy", _set("dynamic_shapes.strategy", "Fastest"), "dynamic_shapes.strategy"),
    (
        "negative segment size",
        _set("segments.minimum_segment_size", -5),
        "segments.minimum_segment_size",
    ),
    ("zero max engines", _set("segments.max_engines", 0), "segments.max_engines"),
    ("negative batch size", _set("bench.batch_sizes", [1, -2]), "bench.batch_sizes[1]"),
    ("zero calibration batches", _set("calibration.batches", 0), "calibration.batches"),
    ("bad size", _set("workspace", "512 parsecs"), "workspace"),
    ("negative size", _set("workspace", -1), "workspace"),
    ("bad op type", _set("op_denylist", ["Conv 2D"]), "op_denylist[0]"),
    (
        "profile names an unknown input",
        _set(
            "dynamic_shapes.profiles",
            [{"input_ids": [1, 8], "attention_mask": [1, 8], "pixels": [1, 8]}],
        ),
        "dynamic_shapes.profiles[0].pixels",
    ),
    (
        "profile rank mismatch",
        _set("dynamic_shapes.profiles", [{"input_ids": [1, 8, 1], "attention_mask": [1, 8]}]),
        "dynamic_shapes.profiles[0].input_ids",
    ),
    (
        "profile misses an input",
        _set("dynamic_shapes.profiles", [{"input_ids": [1, 8]}]),
        "dynamic_shapes.profiles[0]",
    ),
    ("empty profiles", _set("dynamic_shapes.profiles", []), "dynamic_shapes.profiles"),
    (
        "bench shape for an unknown input",
        _set("bench.input_shapes", {"ids": [1, 8]}),
        "bench.input_shapes.ids",
    ),
    (
        "bench shape rank mismatch",
        _set("bench.input_shapes", {"input_ids": [8]}),
        "bench.input_shapes.input_ids",
    ),
    (
        "INT8 without calibration",
        lambda d: d.update(precision="INT8", calibration=None),
        "precision",
    ),
    (
        "unknown device class",
        _set("devices", {"nano-5gb": {"precision": "FP16"}}),
        "devices.nano-5gb",
    ),
    (
        "non-overridable field",
        _set("devices", {"nano-4gb": {"inputs": []}}),
        "devices.nano-4gb.inputs",
    ),
    (
        "unknown field in a device block",
        _set("devices", {"nano-4gb": {"speed": 1}}),
        "devices.nano-4gb.speed",
    ),
    (
        "bad size in a device block",
        _set("devices", {"nano-4gb": {"workspace": "lots"}}),
        "devices.nano-4gb.workspace",
    ),
    (
        "negative batch in a device block",
        _set("devices", {"nano-4gb": {"bench": {"batch_sizes": [-1]}}}),
        "devices.nano-4gb.bench.batch_sizes[0]",
    ),
    (
        "bad strategy in a device block",
        _set("devices", {"agx-orin-64gb": {"dynamic_shapes": {"strategy": "Best"}}}),
        "devices.agx-orin-64gb.dynamic_shapes.strategy",
    ),
    (
        "INT8 on a board without INT8",
        _set("devices", {"nano-4gb": {"precision": "INT8"}}),
        "devices.nano-4gb.precision",
    ),
    (
        "workspace above board memory",
        _set("devices", {"nano-2gb": {"workspace": "4GiB"}}),
        "devices.nano-2gb.workspace",
    ),
    ("device block is not a mapping", _set("devices", {"nano-4gb": "FP16"}), "devices.nano-4gb"),
    (
        "batch size against a fixed batch dim",
        lambda d: d.update(inputs=IMAGE, dynamic_shapes=None, bench={"batch_sizes": [1, 8]}),
        "bench.batch_sizes",
    ),
    (
        "profile against a fixed dim",
        lambda d: d.update(
            inputs=IMAGE, bench={}, dynamic_shapes={"profiles": [{"image": [1, 320, 320, 4]}]}
        ),
        "dynamic_shapes.profiles[0].image[3]",
    ),
]


def test_the_base_of_the_bad_recipes_is_good(tmp_path: Path) -> None:
    load_recipe(str(write(tmp_path, BASE)))


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_recipe_is_rejected_with_its_field(
    tmp_path: Path, case: Tuple[str, Callable[[Dict[str, Any]], None], str]
) -> None:
    _, mutate, field_path = case
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as info:
        load_recipe(str(path))
    assert info.value.message.startswith(f"{path}: {field_path}: "), info.value.message
    assert info.value.hint


@pytest.mark.parametrize(
    "text, line",
    [
        ("name: custom\ninputs: [\n  {name: x\ndescription: d\n", 4),
        ("name: custom\nprecision: FP16\nprecision: FP32\n", 3),  # duplicate key
        ("name: custom\n\tfamily: nlp\n", 2),
    ],
)
def test_yaml_errors_name_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError, match=rf"^{path}: YAML syntax error at line {line}\b"):
        load_recipe(str(path))


def test_a_document_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(str(path))


# --------------------------------------------------------------------------- sizes, names


@pytest.mark.parametrize(
    "text, size",
    [
        ("512MiB", 512 * 2**20),
        ("1GiB", 2**30),
        ("256MB", 256 * 10**6),
        ("1073741824", 2**30),
        (4096, 4096),
        ("1.5GiB", 3 * 2**29),
        ("2 gib", 2 * 2**30),
        ("64KiB", 65536),
        ("1TB", 10**12),
        ("100B", 100),
    ],
)
def test_parse_size(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "abc", "-1GiB", "0", "1.3B", "12XB", "1e9", True, "GiB"])
def test_parse_size_rejects(text: Any) -> None:
    with pytest.raises(RecipeError, match="bad size"):
        parse_size(text)


def test_unknown_recipe_name_lists_the_available_ones() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe("no-such-recipe")
    for name in SHIPPED:
        assert name in info.value.message
    assert info.value.hint == "edge recipes ls"


def test_recipes_dir_follows_edge_recipes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert recipes_dir() == RECIPES_DIR
    write(tmp_path, BASE)
    monkeypatch.setenv("EDGE_RECIPES", str(tmp_path))
    assert recipes_dir() == tmp_path
    assert [r.name for r in list_recipes()] == ["custom"]
    assert load_recipe("custom").path == tmp_path / "custom.yaml"


def test_readme_documents_every_field() -> None:
    readme = (RECIPES_DIR / "README.md").read_text()
    fields = list(TOP_KEYS) + [
        "batches",
        "batch_size",
        "strategy",
        "profiles",
        "minimum_segment_size",
        "max_engines",
        "batch_sizes",
        "input_shapes",
    ]
    for name in fields:
        assert f"`{name}`" in readme or f"`{name}." in readme or f".{name}`" in readme, name


# --------------------------------------------------------------------------- CLI


def _root_app() -> typer.Typer:
    try:
        from edge.cli.main import app
    except Exception:  # another command group is mid-edit: wrap ours like main does
        app = typer_factory("edge")
        app.add_typer(cli.app, name="recipes")
    return app


def edge_recipes(*args: str) -> Tuple[int, str]:
    """`edge recipes ARGS` with main()'s mapping: an EdgeError is exit 1, message, hint."""
    result = CliRunner().invoke(_root_app(), ["recipes", *args])
    output, code = result.output, result.exit_code
    if isinstance(result.exception, EdgeError):
        output += f"error: {result.exception.message}\nhint: {result.exception.hint}\n"
        code = 1
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return code, output


def test_cli_ls_json_lists_every_file() -> None:
    code, out = edge_recipes("ls", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == SHIPPED
    bert = next(r for r in rows if r["name"] == "bert-base")
    assert bert["dynamic"] is True and bert["strategy"] == "Optimal"
    code, out = edge_recipes("ls")
    assert code == 0 and all(name in out for name in SHIPPED)


def test_cli_show_bert_json_has_the_two_profiles() -> None:
    code, out = edge_recipes("show", "bert-base", "--json")
    assert code == 0
    data = json.loads(out)
    profiles = raw_yaml("bert-base")["dynamic_shapes"]["profiles"]
    shapes = data["resolved"]["options"]["build_shapes"]
    assert shapes == profiles and len(shapes) == 2
    assert sorted(s["input_ids"][1] for s in shapes) == [128, 384]
    assert data["recipe"]["name"] == "bert-base" and data["resolved"]["applied_override"] is None


def test_cli_show_device_class() -> None:
    code, out = edge_recipes("show", "bert-base", "--device-class", "nano-4gb", "--json")
    assert code == 0
    resolved = json.loads(out)["resolved"]
    block = raw_yaml("bert-base")["devices"]["nano-4gb"]
    assert resolved["applied_override"] == "nano-4gb"
    assert resolved["workspace"] == block["workspace"]
    assert resolved["options"]["build_shapes"] == block["dynamic_shapes"]["profiles"]
    code, out = edge_recipes("show", "resnet50", "-d", "agx-orin-64gb")
    assert code == 0 and "INT8" in out and "devices.agx-orin-64gb" in out
    code, out = edge_recipes("show", "resnet50", "-d", "nano-5gb")
    assert code == 1 and "unknown device class" in out


def test_cli_show_unknown_recipe_exits_1() -> None:
    code, out = edge_recipes("show", "no-such-recipe")
    assert code == 1 and "bert-base" in out and "edge recipes ls" in out


def test_cli_validate(tmp_path: Path) -> None:
    good = write(tmp_path, BASE)
    code, out = edge_recipes("validate", str(good), str(RECIPES_DIR))
    assert code == 0, out
    assert out.count("OK") == 1 + len(SHIPPED)
    bad = copy.deepcopy(BASE)
    bad["devices"] = {"nano-4gb": {"workspace": "lots"}}
    bad_path = write(tmp_path, bad)
    code, out = edge_recipes("validate", str(bad_path))
    assert code == 1
    assert "devices.nano-4gb.workspace" in out and "FAIL" in out
    (tmp_path / "broken.yaml").write_text("name: [\n")
    code, out = edge_recipes("validate", str(tmp_path / "broken.yaml"))
    assert code == 1 and "line" in out


def test_main_entry_point_maps_recipe_errors_to_exit_1(tmp_path: Path) -> None:
    """The real console entry point, in a fresh interpreter run from the repository."""
    bad = copy.deepcopy(BASE)
    bad["segments"] = {"minimum_segment_size": -5}
    script = "import sys; from edge.cli.main import main; sys.argv[0] = 'edge'; main()"
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_RECIPES", "EDGE_DEBUG")}

    def edge(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, "recipes", *args],
            text=True,
            capture_output=True,
            cwd=RECIPES_DIR.parents[2],  # the repository root
            env=env,
            timeout=120,
        )

    proc = edge("show", "no-such-recipe")
    assert proc.returncode == 1
    assert "no-such-recipe" in proc.stderr and "hint: edge recipes ls" in proc.stderr
    proc = edge("validate", str(write(tmp_path, bad)))
    assert proc.returncode == 1
    assert "segments.minimum_segment_size" in proc.stdout
    assert "failed validation" in proc.stderr
