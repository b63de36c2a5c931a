"""The build summary from TensorRT's engine inspector JSON
(`IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`).

The documented shape (TensorRT developer guide, "Engine Inspector"; the same on 8.x and
10.x) is `{"Layers": [...], "Bindings": [...]}` (11.x: "I/O Tensors" for "Bindings").
At ProfilingVerbosity.DETAILED each layer is a dict:
`{"Name", "LayerType", "Inputs": [{"Name", "Dimensions", "Format/Datatype"}], "Outputs": [...],
"TacticName", ...}`; at LAYER_NAMES_ONLY each layer is just its name (a string). A layer's
precision is read from its first output's "Format/Datatype" ("Row major linear FP32",
"Channel major FP16 format where channel % 2 == 0", "Row major Int8 ..."), and a layer runs
on the DLA when its LayerType (or tactic) says DLA.

The JSON comes from the device: it is treated as untrusted (junk gives an empty summary).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

#: precision word in a Format/Datatype string -> the summary's name
_PRECISION = [
    (re.compile(r"\bFP32\b|\bfloat\b|\bFloat\b", re.I), "fp32"),
    (re.compile(r"\bFP16\b|\bHalf\b", re.I), "fp16"),
    (re.compile(r"\bBF16\b", re.I), "bf16"),
    (re.compile(r"\bInt8\b", re.I), "int8"),
    (re.compile(r"\bFP8\b", re.I), "fp8"),
    (re.compile(r"\bInt4\b", re.I), "int4"),
    (re.compile(r"\bInt32\b", re.I), "int32"),
    (re.compile(r"\bInt64\b", re.I), "int64"),
    (re.compile(r"\bBool\b", re.I), "bool"),
]
_MAX_LAYERS = 1_000_000


@dataclass(frozen=True)
class LayerInfo:
    """One engine layer: precision None where the inspector gave no datatype."""

    name: str
    type: Optional[str]
    precision: Optional[str]
    on_dla: bool


def _precision(fmt: Any) -> Optional[str]:
    if not isinstance(fmt, str):
        return None
    for pattern, name in _PRECISION:
        if pattern.search(fmt):
            return name
    return None


def _layer(entry: Any) -> Optional[LayerInfo]:
    if isinstance(entry, str):
        return LayerInfo(entry, None, None, False)
    if not isinstance(entry, dict):
        return None
    name = entry.get("Name")
    if not isinstance(name, str):
        return None
    kind = entry.get("LayerType")
    kind = kind if isinstance(kind, str) else None
    precision = None
    outputs = entry.get("Outputs")
    if isinstance(outputs, list):
        for out in outputs:
            if isinstance(out, dict):
                precision = _precision(out.get("Format/Datatype"))
                if precision:
                    break
    tactic = entry.get("TacticName")
    on_dla = "DLA" in (kind or "").upper() or (isinstance(tactic, str) and "DLA" in tactic.upper())
    return LayerInfo(name, kind, precision, on_dla)


def layers(json_text: Any) -> List[LayerInfo]:
    """Every layer the inspector JSON lists ([] for anything that is not its format)."""
    if isinstance(json_text, (bytes, bytearray)):
        try:
            json_text = json_text.decode("utf-8")
        except UnicodeDecodeError:
            return []
    if not isinstance(json_text, str):
        return []
    try:
        doc = json.loads(json_text)
    except (ValueError, RecursionError):
        return []
    entries = doc.get("Layers") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        return []
    out = []
    for entry in entries[:_MAX_LAYERS]:
        info = _layer(entry)
        if info is not None:
            out.append(info)
    return out


def summarize(json_text: Any, precision: str) -> Dict[str, Any]:
    """{layers_total, layers_at_precision, layers_on_dla, layers: [...]} for the requested
    precision ("fp32"/"fp16"/"int8", any case). Empty counts for junk input."""
    wanted = str(precision).lower()
    found = layers(json_text)
    return {
        "layers_total": len(found),
        "layers_at_precision": sum(1 for x in found if x.precision == wanted),
        "layers_on_dla": sum(1 for x in found if x.on_dla),
        "layers": [
            {"name": x.name, "type": x.type, "precision": x.precision, "on_dla": x.on_dla}
            for x in found
        ],
    }
