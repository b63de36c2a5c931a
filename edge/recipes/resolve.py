"""Resolve a recipe against a device class: the `ConvertOptions` and bench settings a
convert or bench job is given."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from device_agent.protocol import ConvertOptions
from edge.core.errors import RecipeError
from edge.recipes.parse import effective_fields
from edge.recipes.schema import (
    Bench,
    Calibration,
    DynamicShapes,
    Recipe,
    ResolvedRecipe,
    known_device_classes,
    parse_size,
)


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
        raise RecipeError(
            f"unknown device class {device_class!r}",
            f"Known classes: {', '.join(known_device_classes())}",
        )
    override = recipe.devices.get(device_class, {}) if device_class else {}
    view = effective_fields(recipe, device_class)
    calib: Optional[Calibration] = view["calibration"]
    dyn: Optional[DynamicShapes] = view["dynamic_shapes"]
    bench: Bench = view["bench"]
    default = ConvertOptions()
    options = ConvertOptions(
        precision=view["precision"],
        signature_key=recipe.signature_key,
        tags=list(recipe.tags),
        max_workspace_size_bytes=None
        if view["workspace"] == "auto"
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
    return ResolvedRecipe(
        recipe=recipe,
        device_class=device_class,
        options=options,
        workspace=view["workspace"],
        bench_batch_sizes=list(bench.batch_sizes),
        bench_input_shapes=shapes,
        applied_override=device_class if override else None,
        overridden_fields=sorted(override),
    )
