"""What each JetPack ships that the TensorRT backends depend on (shared part: stdlib only).

The table is the issue's and the project's reference notes' (NVIDIA's JetPack archive
and release notes, jetson-containers' l4t_version.py, the TensorRT 11.4 Jetson migration
page). `--board CLASS --jetpack X.Y[.Z]` plans from it, as that board would.

| JetPack | TensorRT | CUDA | Python | NVIDIA TensorFlow wheel (TF-TRT) |
|---|---|---|---|---|
| 4.6.x | 8.2.1 | 10.2 | 3.6 | the agent cannot run (Python 3.6) |
| 5.1.x | 8.5.2 | 11.4 | 3.8 | 2.12/2.15+nv23, linked against TensorRT 8.5: loads |
| 6.0 | 8.6.2 | 12.2 | 3.10 | 2.16.1+nv24.06, TensorRT 8.6: loads |
| 6.1 | 10.3 | 12.6 | 3.10 | 2.16.1+nv24.08, linked against 8.6: does not load |
| 6.2 | 10.3 | 12.6 | 3.10 | none |
| 7.0 / 7.1 / 7.2.0-7.2.1 | 10.13 | 13.0 | 3.12 | none |
| 7.2.2+ | 11.4 | 13.x | 3.12 | none |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .errors import AgentError
from .jetson import Module, find_module


@dataclass(frozen=True)
class JetpackStack:
    """One JetPack line: from `first` (inclusive) up to the next line's `first`."""

    first: Tuple[int, ...]
    tensorrt: str  # major.minor.patch.build, as the Python module reports it
    cuda: str
    python: str
    tftrt: Optional[str]  # why TF-TRT loads, or None where it does not
    no_tftrt: str = ""  # why not, where it does not


STACKS: Tuple[JetpackStack, ...] = (
    JetpackStack((4, 6), "8.2.1.8", "10.2", "3.6", None, "Python 3.6"),
    JetpackStack(
        (5, 1),
        "8.5.2.2",
        "11.4",
        "3.8",
        "NVIDIA's TensorFlow wheel for JetPack 5.1 is linked against TensorRT 8.5",
    ),
    JetpackStack(
        (6, 0),
        "8.6.2.3",
        "12.2",
        "3.10",
        "NVIDIA's TensorFlow 2.16.1+nv24.06 wheel is linked against TensorRT 8.6",
    ),
    JetpackStack(
        (6, 1),
        "10.3.0.30",
        "12.6",
        "3.10",
        None,
        "TensorFlow 2.16.1+nv24.08, the last NVIDIA wheel, is linked against TensorRT 8.6 "
        "and the board has 10.3",
    ),
    JetpackStack((6, 2), "10.3.0.30", "12.6", "3.10", None, "JetPack 6.2 has no TensorFlow wheel"),
    JetpackStack((7, 0), "10.13.3.9", "13.0", "3.12", None, "JetPack 7 has no TensorFlow wheel"),
    JetpackStack((7, 2, 2), "11.4.1.0", "13.0", "3.12", None, "JetPack 7 has no TensorFlow wheel"),
)

#: The oldest JetPack the agent runs on (Python 3.8).
OLDEST = (5, 1)

#: DLA cores per module family (an 8 GB Orin NX has one); Thor, Orin Nano and the
#: Maxwell/Pascal boards have none.
DLA_CORES: Dict[str, int] = {"xavier-nx": 2, "agx-xavier": 2, "orin-nx": 2, "agx-orin": 2}
_DLA_BY_CLASS: Dict[str, int] = {"orin-nx-8gb": 1}


def parse_jetpack(text: str) -> Tuple[int, ...]:
    """'6.2' / '7.2.2' / '6.1 (rev1)' -> (6, 2) / (7, 2, 2) / (6, 1)."""
    m = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if m is None:
        raise AgentError(
            f"Unknown JetPack version {text!r}.", "Give it as X.Y or X.Y.Z, e.g. --jetpack 6.2"
        )
    return tuple(int(g) for g in m.groups() if g is not None)


def stack_for(jetpack: str) -> JetpackStack:
    """The JetPack line of `jetpack` (AgentError for one the agent cannot run on)."""
    wanted = parse_jetpack(jetpack)
    if wanted < STACKS[0].first:
        raise AgentError(
            f"JetPack {jetpack} is older than any line the agent knows.",
            "The agent needs JetPack 5.1 or newer (Python 3.8).",
        )
    stack = [s for s in STACKS if s.first <= wanted][-1]
    if wanted < OLDEST:
        raise AgentError(
            f"JetPack {jetpack} has Python {stack.python}; the agent needs Python 3.8 or newer.",
            "Jetson Nano, TX1 and TX2 stop at JetPack 4.6: the agent cannot run there. "
            "Use an Xavier, Orin or Thor board with JetPack 5.1 or newer.",
        )
    return stack


def dla_cores(module: Module) -> int:
    """DLA cores of a module (0 for none)."""
    return _DLA_BY_CLASS.get(module.device_class, DLA_CORES.get(module.family, 0))


def board(name: str) -> Module:
    """The module a `--board` names (a device class such as orin-nano-8gb)."""
    module = find_module(name)
    if module is None:
        raise AgentError(
            f"Unknown board {name!r}.",
            "Name a device class such as orin-nano-8gb, agx-orin-64gb or thor-128gb "
            "(edge fleet boards lists them).",
        )
    return module


def jetpack_supports(module: Module, jetpack: str) -> Optional[str]:
    """Why `module` cannot run `jetpack` (None when it can)."""
    wanted = parse_jetpack(jetpack)
    if module.soc in ("tegra210", "tegra186") and wanted >= (5, 0):
        return f"{module.name} stops at JetPack 4.6"
    if module.soc == "tegra194" and wanted >= (6, 0):
        return f"{module.name} stops at JetPack 5.1"
    if module.soc == "tegra264" and wanted < (7, 0):
        return f"{module.name} needs JetPack 7"
    if module.soc == "tegra234" and (7, 0) <= wanted < (7, 2):
        return f"{module.name} runs JetPack 7 from 7.2 (7.0 and 7.1 are Thor's)"
    return None
