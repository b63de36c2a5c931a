"""The recipe schema: its fields and defaults, the typed recipe, sizes and device classes.

Precedence, lowest first: built-in defaults < recipe < recipe's `devices.<class>` block <
CLI flags (the caller applies those last). Schema: `recipes/README.md`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from device_agent.jetson import device_classes
from device_agent.protocol import ConvertOptions
from edge.core.errors import RecipeError

FAMILIES = ("classification", "detection", "segmentation", "nlp", "speech", "other")
DTYPES = (
    "float32",
    "float16",
    "bfloat16",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
    "string",
)
REQUIRED = ("name", "description", "family", "inputs")
# The fields a `devices.<class>` block may override, with their built-in defaults.
DEFAULTS: Dict[str, Any] = {
    "precision": "FP32",
    "calibration": None,
    "dynamic_shapes": None,
    "segments": {"minimum_segment_size": 3, "max_engines": None},
    "workspace": "auto",
    "op_denylist": [],
    "maximum_cached_engines": 1,
    "allow_build_at_runtime": True,
    "bench": {"batch_sizes": [1], "input_shapes": {}},
}
OVERRIDABLE = tuple(DEFAULTS)
TOP_KEYS = REQUIRED + OVERRIDABLE + ("signature_key", "tags", "devices")
HINT = "The schema is in recipes/README.md; check a file with `edge recipes validate FILE`."
SIZE_HINT = "Sizes look like 512MiB, 1GiB, 256MB or 1073741824 (bytes)."
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


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
