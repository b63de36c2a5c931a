"""`edge recipes ls | show | validate`: conversion recipes (edge/recipes/builtin/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from edge.cli._utils import JsonOpt, console, print_json, typer_factory
from edge.core.errors import RecipeError
from edge.recipes.loader import list_recipes, load_recipe, load_recipe_file, recipe_summary
from edge.recipes.resolve import resolve
from edge.views.recipes import recipe_table, recipes_table

app = typer_factory("Conversion recipes: list, show and validate them.")


@app.command("ls")
def ls(json_out: JsonOpt = False) -> None:
    """List the recipes: name, family, precision, dynamic shapes, device overrides."""
    recipes = list_recipes()
    if json_out:
        print_json([recipe_summary(r) for r in recipes])
        return
    console.print(recipes_table(recipes))


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Recipe name or path to a .yaml file.")],
    device_class: Annotated[
        Optional[str],
        typer.Option(
            "--device-class", "-d", help="Apply this device class's override (e.g. nano-4gb)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a recipe and the converter options it resolves to (for a device class)."""
    recipe = load_recipe(name)
    resolved = resolve(recipe, device_class)
    if json_out:
        print_json({"recipe": recipe.to_dict(), "resolved": resolved.to_dict()})
        return
    console.print(recipe_table(resolved))


def _expand(paths: List[Path]) -> List[Path]:
    out: List[Path] = []
    for path in paths:
        out.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path])
    return out


@app.command("validate")
def validate(
    paths: Annotated[
        List[Path], typer.Argument(help="Recipe files (a directory: its *.yaml files).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Check recipe files against the schema; print OK per file, or the field and why."""
    files = _expand(paths)
    failed = 0
    rows = []
    for path in files:
        try:
            load_recipe_file(path)
        except RecipeError as exc:
            failed += 1
            rows.append({"file": str(path), "ok": False, "error": exc.message})
            if not json_out:
                typer.echo(f"FAIL {exc.message}")
        else:
            rows.append({"file": str(path), "ok": True, "error": None})
            if not json_out:
                typer.echo(f"OK   {path}")
    if json_out:
        print_json(rows)
        if failed or not files:
            raise typer.Exit(1)
    if failed or not files:
        raise RecipeError(
            f"{failed} of {len(files)} recipe file(s) failed validation"
            if files
            else "no recipe files found in the given directories",
            "Fix the fields named above; the schema is in edge/recipes/builtin/README.md.",
        )
