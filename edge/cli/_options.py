"""Parsing helpers for option values shared by convert and bench."""

from __future__ import annotations

import re

from edge.core.errors import EdgeError


def parse_dims(text: str, what: str) -> list[int]:
    """'1,28,28' or '1x28x28' -> [1, 28, 28]."""
    parts = [p for p in re.split(r"[,x]", text.strip()) if p.strip()]
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if not dims or any(d < 1 for d in dims):
        raise EdgeError(
            f"Bad dimensions {text!r} for {what}.",
            "Give positive integers, e.g. --input-shape input_ids=1,128",
        )
    return dims


def parse_input_shapes(values: list[str]) -> list[dict[str, list[int]]]:
    """--input-shape NAME=DIMS entries -> profiles. A name seen again starts a new profile,
    so `a=1,128 b=1,128 a=1,384 b=1,384` gives two profiles of two inputs."""
    profiles: list[dict[str, list[int]]] = []
    for value in values:
        name, sep, dims = value.partition("=")
        if not sep or not name.strip():
            raise EdgeError(
                f"Bad --input-shape {value!r}.", "Use NAME=DIMS, e.g. --input-shape input_ids=1,128"
            )
        name = name.strip()
        if not profiles or name in profiles[-1]:
            profiles.append({})
        profiles[-1][name] = parse_dims(dims, name)
    return profiles


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise EdgeError(f"Bad {what} {text!r}.", f"Give positive integers, e.g. --{what} 1,8,32")
    return values
