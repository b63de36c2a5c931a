"""Tables of conversion recipes: the list, and one recipe resolved for a device class.

Cells are `Text`, never markup: "[1, 128]" in a recipe must print as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from edge.recipes.loader import recipe_summary
from edge.recipes.schema import Recipe, ResolvedRecipe
from edge.views.layout import FitTable


def _text(value: Any) -> Text:
    """A table cell without rich markup; a list of strings is joined with commas."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        value = ", ".join(value) or "-"
    return Text("-" if value is None else str(value))


def recipes_table(recipes: Sequence[Recipe]) -> Table:
    """`edge recipes ls`: name, family, precision, dynamic shapes, device overrides."""
    table = FitTable(title="recipes", title_justify="left")
    table.column("name").column("family", drop=1).column("precision").column("dynamic", drop=2)
    table.column("device overrides", "text")
    for row in map(recipe_summary, recipes):
        table.add_row(
            *(
                _text(v)
                for v in (
                    row["name"],
                    row["family"],
                    row["precision"],
                    row["strategy"] or "no",
                    row["devices"],
                )
            )
        )
    return table


def recipe_table(resolved: ResolvedRecipe) -> Table:
    """`edge recipes show`: a recipe and the converter options it resolved to."""
    recipe, opts = resolved.recipe, resolved.options
    rows = [
        ("recipe", f"{recipe.name} ({recipe.path})"),
        ("description", recipe.description),
        ("device class", resolved.device_class or "(none)"),
        (
            "override",
            f"devices.{resolved.applied_override}: " + ", ".join(resolved.overridden_fields)
            if resolved.applied_override
            else "(none)",
        ),
        ("precision", opts.precision),
        (
            "calibration",
            f"{opts.calibration_batches} batches x {opts.calibration_batch_size}"
            + ("" if opts.precision == "INT8" else " (used at INT8 only)")
            if opts.use_calibration
            else "none",
        ),
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
    table = FitTable(title=f"recipe {recipe.name}", title_justify="left")
    table.column("field").column("value", "text")
    for key, value in rows:
        table.add_row(key, _text(value))
    return table
