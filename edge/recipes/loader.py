"""Recipe files: the strict YAML loader, the recipes directory, and loading by name or path.

Host side only: no TensorFlow, no Typer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List

import yaml

from edge.core.errors import RecipeError
from edge.core.settings import settings
from edge.recipes.parse import parse_recipe
from edge.recipes.schema import HINT, Recipe


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
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def builtin_recipes_dir() -> Path:
    """The recipes shipped inside the package (package data, so a wheel install has them)."""
    # This module's own path, not edge.__file__ (a tests/edge directory can shadow `edge` as
    # a namespace package) nor importlib.resources (it may hand back a non-Path Traversable).
    return Path(__file__).resolve().parent / "builtin"


def recipes_dir() -> Path:
    """Where named recipes live: $EDGE_RECIPES, else the built-in ones (edge/recipes/builtin)."""
    env = settings().recipes
    if env:
        return env
    return builtin_recipes_dir()


def _recipe_files(directory: Path) -> List[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_recipe_file(path: Path) -> Recipe:
    """Read and validate one recipe file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(
            f"{path}: cannot read recipe: {exc.strerror or exc}",
            "Name a recipe (edge recipes ls) or an existing .yaml file.",
        ) from None
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
    raise RecipeError(
        f"no recipe named {name_or_path!r} in {directory} (available: {names})", "edge recipes ls"
    )


def list_recipes() -> List[Recipe]:
    """Every recipe in recipes_dir(), by name; an invalid file raises RecipeError."""
    return [load_recipe_file(p) for p in _recipe_files(recipes_dir())]


def recipe_summary(recipe: Recipe) -> Dict[str, Any]:
    """One row of `edge recipes ls`."""
    dyn = recipe.dynamic_shapes
    return {
        "name": recipe.name,
        "family": recipe.family,
        "precision": recipe.precision,
        "dynamic": dyn is not None,
        "strategy": dyn.strategy if dyn else None,
        "devices": sorted(recipe.devices),
        "description": recipe.description,
        "path": str(recipe.path) if recipe.path else None,
    }
