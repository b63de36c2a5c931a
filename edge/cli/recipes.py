"""`edge recipes ls | show | validate`: conversion recipes (recipes/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import RecipeError
from ..recipes import list_recipes, load_recipe, load_recipe_file, recipe_summary, resolve
from ._utils import JsonOpt, console, print_json, typer_factory

app = typer_factory("Conversion recipes: list, show and validate them.")


def _text(value: Any) -> Text:
    """A table cell without rich markup ("[1, 128]" must print as written)."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = ", ".join(value) or "-"
    return Text("-" if value is None else str(value))


@app.command("ls")
def ls(json_out: JsonOpt = False) -> None:
    """List the recipes: name, family, precision, dynamic shapes, device overrides."""
    rows = [recipe_summary(r) for r in list_recipes()]
    if json_out:
        print_json(rows)
        return
    table = Table("name", "family", "precision", "dynamic", "device overrides",
                  title="recipes", title_justify="left")
    for row in rows:
        table.add_row(*(_text(v) for v in (row["name"], row["family"], row["precision"],
                                           row["strategy"] or "no", row["devices"])))
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Recipe name or path to a .yaml file.")],
    device_class: Annotated[Optional[str], typer.Option(
        "--device-class", "-d", help="Apply this device class's override (e.g. nano-4gb).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a recipe and the converter options it resolves to (for a device class)."""
    recipe = load_recipe(name)
    resolved = resolve(recipe, device_class)
    if json_out:
        print_json({"recipe": recipe.to_dict(), "resolved": resolved.to_dict()})
        return
    opts = resolved.options
    rows = [
        ("recipe", f"{recipe.name} ({recipe.path})"),
        ("description", recipe.description),
        ("device class", device_class or "(none)"),
        ("override", f"devices.{resolved.applied_override}: "
         + ", ".join(resolved.overridden_fields) if resolved.applied_override else "(none)"),
        ("precision", opts.precision),
        ("calibration", f"{opts.calibration_batches} batches x {opts.calibration_batch_size}"
         + ("" if opts.precision == "INT8" else " (used at INT8 only)")
         if opts.use_calibration else "none"),
        ("workspace", resolved.workspace),
        ("dynamic shapes", opts.dynamic_shape_profile_strategy or "no (implicit batch)"),
        ("build shapes", "; ".join(str(s) for s in opts.build_shapes) or "(at runtime)"),
        ("minimum_segment_size", opts.minimum_segment_size),
        ("max engines", opts.max_engines),
        ("maximum_cached_engines", opts.maximum_cached_engines),
        ("allow_build_at_runtime", opts.allow_build_at_runtime),
        ("op denylist", opts.op_denylist),
        ("bench batch sizes", resolved.bench_batch_sizes),
        ("bench input shapes", resolved.bench_input_shapes or "-"),
    ]
    table = Table("field", "value", title=f"recipe {recipe.name}", title_justify="left")
    for key, value in rows:
        table.add_row(key, _text(value))
    console.print(table)


def _expand(paths: List[Path]) -> List[Path]:
    out: List[Path] = []
    for path in paths:
        out.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir()
                   else [path])
    return out


@app.command("validate")
def validate(
    paths: Annotated[List[Path], typer.Argument(help="Recipe files (a directory: its "
                                                "*.yaml files).")],
) -> None:
    """Check recipe files against the schema; print OK per file, or the field and why."""
    files = _expand(paths)
    failed = 0
    for path in files:
        try:
            load_recipe_file(path)
        except RecipeError as exc:
            failed += 1
            typer.echo(f"FAIL {exc.message}")
        else:
            typer.echo(f"OK   {path}")
    if failed or not files:
        raise RecipeError(f"{failed} of {len(files)} recipe file(s) failed validation"
                          if files else "no recipe files found in the given directories",
                          "Fix the fields named above; the schema is in recipes/README.md.")
