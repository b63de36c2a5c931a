"""Conversion recipes: YAML files (model family x device class) that resolve to
converter options.

`schema` (fields, defaults, the typed recipe, sizes), `parse` (validation), `loader`
(files and the recipes directory) and `resolve` (a recipe for one device class).
"""
