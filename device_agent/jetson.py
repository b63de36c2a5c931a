"""Jetson data tables and pure parsers: modules, L4T -> JetPack, device tree, nvpmodel.

Nothing here touches the file system; `device_agent.facts` reads the files and hands
their contents to these functions. Python 3.8 compatible, stdlib only.

Sources (tests/data/sysroots/PROVENANCE.md records where each test file comes from):
rbonghi/jetson_stats `jtop/core/jetson_variables.py` (MODULE_NAME_TABLE, NVIDIA_JETPACK,
CUDA_TABLE), dusty-nv/jetson-containers `jetson_containers/l4t_version.py`, NVIDIA's
JetPack archive pages, and the upstream Linux device trees for the compatible strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

# --------------------------------------------------------------------------- tables

#: SoC -> CUDA compute capability (jtop CUDA_TABLE; Thor is sm_110 since CUDA 13.0).
COMPUTE_CAPABILITY: Dict[str, str] = {
    "tegra210": "5.3",  # Nano, TX1 (Maxwell)
    "tegra186": "6.2",  # TX2 family (Pascal)
    "tegra194": "7.2",  # Xavier (Volta)
    "tegra234": "8.7",  # Orin (Ampere)
    "tegra264": "11.0",  # Thor (Blackwell)
}


@dataclass(frozen=True)
class Module:
    """One Jetson module variant. `memory_mb` is the nominal size (MemTotal is lower)."""

    name: str
    family: str
    soc: str
    compute_capability: str
    memory_mb: int
    parts: Tuple[str, ...]
    device_class: str


def _m(name: str, family: str, soc: str, gb: int, parts: Tuple[str, ...], slug: str) -> Module:
    return Module(name, family, soc, COMPUTE_CAPABILITY[soc], gb * 1024, parts, slug)


# Order matters where two variants tie on memory: the first one wins (Orin Nano before
# Orin NX for an 8 GB tegra234 board whose part number is unknown).
MODULES: Tuple[Module, ...] = (
    _m("Jetson Nano 2GB", "nano", "tegra210", 2, ("p3448-0003",), "nano-2gb"),
    _m("Jetson Nano 4GB", "nano", "tegra210", 4, ("p3448-0000", "p3448-0002"), "nano-4gb"),
    _m("Jetson TX1", "tx1", "tegra210", 4, ("p2180-1000",), "tx1-4gb"),
    _m("Jetson TX2 4GB", "tx2", "tegra186", 4, ("p3489-0888",), "tx2-4gb"),
    _m("Jetson TX2 8GB", "tx2", "tegra186", 8, ("p3310-1000", "p3489-0000"), "tx2-8gb"),
    _m("Jetson TX2 NX", "tx2-nx", "tegra186", 4, ("p3636-0001",), "tx2-nx-4gb"),
    _m(
        "Jetson Xavier NX 8GB",
        "xavier-nx",
        "tegra194",
        8,
        ("p3668-0000", "p3668-0001"),
        "xavier-nx-8gb",
    ),
    _m("Jetson Xavier NX 16GB", "xavier-nx", "tegra194", 16, ("p3668-0003",), "xavier-nx-16gb"),
    _m("Jetson AGX Xavier 8GB", "agx-xavier", "tegra194", 8, ("p2888-0006",), "agx-xavier-8gb"),
    _m("Jetson AGX Xavier 16GB", "agx-xavier", "tegra194", 16, ("p2888-0001",), "agx-xavier-16gb"),
    _m(
        "Jetson AGX Xavier 32GB",
        "agx-xavier",
        "tegra194",
        32,
        ("p2888-0004", "p2888-0003", "p2888-0008"),
        "agx-xavier-32gb",
    ),
    _m("Jetson AGX Xavier 64GB", "agx-xavier", "tegra194", 64, ("p2888-0005",), "agx-xavier-64gb"),
    _m("Jetson Orin Nano 4GB", "orin-nano", "tegra234", 4, ("p3767-0004",), "orin-nano-4gb"),
    _m(
        "Jetson Orin Nano 8GB",
        "orin-nano",
        "tegra234",
        8,
        ("p3767-0003", "p3767-0005"),
        "orin-nano-8gb",
    ),
    _m("Jetson Orin NX 8GB", "orin-nx", "tegra234", 8, ("p3767-0001",), "orin-nx-8gb"),
    _m("Jetson Orin NX 16GB", "orin-nx", "tegra234", 16, ("p3767-0000",), "orin-nx-16gb"),
    _m("Jetson AGX Orin 32GB", "agx-orin", "tegra234", 32, ("p3701-0004",), "agx-orin-32gb"),
    _m("Jetson AGX Orin 64GB", "agx-orin", "tegra234", 64, ("p3701-0005",), "agx-orin-64gb"),
    _m("Jetson AGX Thor 128GB", "agx-thor", "tegra264", 128, ("p3834-0008",), "thor-128gb"),
)

_BY_PART: Dict[str, Module] = {part: mod for mod in MODULES for part in mod.parts}

# Model-string patterns, most specific first. Production modules on custom carriers
# report other strings, which is why part numbers are tried before these.
_MODEL_PATTERNS: Tuple[Tuple[str, str], ...] = (
    (r"\bthor\b", "agx-thor"),
    (r"orin[\s_-]*nano", "orin-nano"),
    (r"orin[\s_-]*nx", "orin-nx"),
    (r"\borin\b", "agx-orin"),
    (r"xavier[\s_-]*nx", "xavier-nx"),
    (r"xavier|jetson-agx", "agx-xavier"),
    (r"tx2[\s_-]*nx|lanai", "tx2-nx"),
    (r"tx2|quill|storm|lightning", "tx2"),
    (r"tx1|jetson-cv", "tx1"),
    (r"\bnano\b", "nano"),
)

#: L4T release -> JetPack. Sources: jetson_stats NVIDIA_JETPACK, jetson-containers
#: l4t_version.py, NVIDIA JetPack archive (via the project's reference notes).
JETPACK_BY_L4T: Dict[str, str] = {
    # JetPack 4 (Ubuntu 18.04, Python 3.6)
    "32.1.0": "4.2",
    "32.2.0": "4.2.1",
    "32.2.1": "4.2.2",
    "32.2.3": "4.2.3",
    "32.3.1": "4.3",
    "32.4.2": "4.4 DP",
    "32.4.3": "4.4",
    "32.4.4": "4.4.1",
    "32.5.0": "4.5",
    "32.5.1": "4.5.1",
    "32.5.2": "4.5.1",
    "32.6.1": "4.6",
    "32.7.1": "4.6.1",
    "32.7.2": "4.6.2",
    "32.7.3": "4.6.3",
    "32.7.4": "4.6.4",
    "32.7.5": "4.6.5",
    "32.7.6": "4.6.6",
    # JetPack 5 (Ubuntu 20.04, Python 3.8)
    "34.1.0": "5.0 DP",
    "34.1.1": "5.0.1 DP",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "35.6.1": "5.1.5",
    # JetPack 6 (Ubuntu 22.04, Python 3.10)
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.2": "6.1",  # JetPack 6.1 rev. 1 (jtop: "6.1 (rev1)")
    "36.4.3": "6.2",
    "36.4.4": "6.2.1",
    "36.4.7": "6.2.1",
    "36.5.0": "6.2.2",
    # JetPack 7 (Ubuntu 24.04, Python 3.12)
    "38.2.0": "7.0",
    "38.2.1": "7.0",
    "38.2.2": "7.0",
    "38.4.0": "7.1",
    "39.2.0": "7.2",
}

# --------------------------------------------------------------------------- lookups


def device_classes() -> List[str]:
    """All device-class slugs recipes may name, in table order."""
    return [mod.device_class for mod in MODULES]


def find_module(key: str) -> Optional[Module]:
    """The module whose device class, name or part number is `key` (case-insensitive)."""
    wanted = key.strip().lower()
    for mod in MODULES:
        if wanted in (mod.device_class, mod.name.lower()) or wanted in mod.parts:
            return mod
    return None


def compute_capability_for(soc: Optional[str]) -> Optional[str]:
    """CUDA compute capability of a SoC name such as "tegra234" (None if unknown)."""
    return COMPUTE_CAPABILITY.get(soc) if soc else None


def _version_tuple(l4t: Optional[str]) -> Optional[Tuple[int, int, int]]:
    match = re.match(r"^\s*[Rr]?(\d+)(?:\.(\d+))?(?:\.(\d+))?", l4t or "")
    if not match:
        return None
    major, minor, patch = (int(g) if g else 0 for g in match.groups())
    return major, minor, patch


def normalize_l4t(l4t: Optional[str]) -> Optional[str]:
    """ "36.2" -> "36.2.0", "R35.3.1" -> "35.3.1"; None for text that is no version."""
    parts = _version_tuple(l4t)
    return "{}.{}.{}".format(*parts) if parts else None


def nearest_l4t(l4t: Optional[str]) -> Optional[str]:
    """The known L4T release used for `l4t`: itself, else the closest earlier known patch
    of the same major.minor, else the closest later one; None if that line is unknown."""
    wanted = _version_tuple(l4t)
    if wanted is None:
        return None
    exact = "{}.{}.{}".format(*wanted)
    if exact in JETPACK_BY_L4T:
        return exact
    same_line = [v for v in map(_version_tuple, JETPACK_BY_L4T) if v and v[:2] == wanted[:2]]
    if not same_line:
        return None
    earlier = [v for v in same_line if v <= wanted]
    chosen = max(earlier) if earlier else min(same_line)
    return "{}.{}.{}".format(*chosen)


def jetpack_for_l4t(l4t: Optional[str]) -> Optional[str]:
    """JetPack release of an L4T version, falling back to the nearest known release of
    the same major.minor (see `nearest_l4t`); None for an unknown major.minor."""
    known = nearest_l4t(l4t)
    return JETPACK_BY_L4T[known] if known else None


# --------------------------------------------------------------------------- parsers

_RELEASE_RE = re.compile(r"^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)", re.M)


def parse_nv_tegra_release(text: Optional[str]) -> Optional[str]:
    """L4T version from /etc/nv_tegra_release: "# R35 (release), REVISION: 3.1, ..." ->
    "35.3.1". None when no release line is present."""
    match = _RELEASE_RE.search(text or "")
    if not match:
        return None
    return normalize_l4t(f"{match.group(1)}.{match.group(2)}")


def _to_text(data: Union[bytes, str, None]) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data


def parse_dt_string(data: Union[bytes, str, None]) -> Optional[str]:
    """A NUL-terminated device-tree string property (e.g. `model`); None if empty."""
    text = _to_text(data).split("\0", 1)[0].strip()
    return text or None


def parse_dt_string_list(data: Union[bytes, str, None]) -> List[str]:
    """A NUL-separated device-tree string list (e.g. `compatible`)."""
    return [item.strip() for item in _to_text(data).split("\0") if item.strip()]


def soc_from_compatible(compatible: Sequence[str]) -> Optional[str]:
    """ "tegra234" from a compatible list ending in "nvidia,tegra234" (None if no Tegra)."""
    for entry in compatible:
        match = re.fullmatch(r"nvidia,(tegra\d{3})[a-z0-9]*", entry.strip())
        if match:
            return match.group(1)
    for entry in compatible:
        match = re.search(r"tegra(\d{3})", entry)
        if match:
            return "tegra" + match.group(1)
    return None


def part_numbers(compatible: Sequence[str], boardids: Union[bytes, str, None] = None) -> List[str]:
    """P-numbers such as "p3767-0005" found in the compatible list (module side of a
    "carrier+module" entry first) and in nvidia,boardids ("3767:0005"), in that order.
    A boardid without SKU ("3448") yields the bare board prefix "p3448"."""
    found: List[str] = []
    for entry in compatible:
        for segment in reversed(entry.split("+")):
            for board, sku in re.findall(r"p(\d{4})-(\d{4})", segment):
                found.append(f"p{board}-{sku}")
    for board, sku in re.findall(r"(\d{4})(?::(\d{4}))?", _to_text(boardids)):
        found.append(f"p{board}-{sku}" if sku else "p" + board)
    unique: List[str] = []
    for part in found:
        if part not in unique:
            unique.append(part)
    return unique


def family_from_model(model: Optional[str]) -> Optional[str]:
    """Module family ("orin-nano", "agx-xavier"...) named by a device-tree model string."""
    text = (model or "").lower()
    for pattern, family in _MODEL_PATTERNS:
        if re.search(pattern, text):
            return family
    return None


def pick_by_memory(candidates: Sequence[Module], mem_total_mb: Optional[int]) -> Optional[Module]:
    """The variant whose nominal memory is the smallest one >= MemTotal (MemTotal is
    always below nominal: 7620 MB on an 8 GB board). None when the variants differ and
    the memory is unknown."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates or not mem_total_mb:
        return None
    ordered = sorted(candidates, key=lambda mod: mod.memory_mb)  # stable: table order on ties
    for mod in ordered:
        if mod.memory_mb >= mem_total_mb:
            return mod
    return ordered[-1]


def identify_module(
    model: Optional[str],
    compatible: Sequence[str],
    boardids: Union[bytes, str, None] = None,
    mem_total_mb: Optional[int] = None,
) -> Optional[Module]:
    """Identify the module: exact part number, else board prefix + memory, else the
    model string + memory, else SoC + memory. None if nothing matches."""
    parts = part_numbers(compatible, boardids)
    for part in parts:
        if part in _BY_PART:
            return _BY_PART[part]
    for part in parts:
        prefix = part.split("-")[0] + "-"
        same_board = [mod for mod in MODULES if any(p.startswith(prefix) for p in mod.parts)]
        chosen = pick_by_memory(same_board, mem_total_mb)
        if chosen:
            return chosen
    family = family_from_model(model)
    if family:
        chosen = pick_by_memory([mod for mod in MODULES if mod.family == family], mem_total_mb)
        if chosen:
            return chosen
    soc = soc_from_compatible(compatible)
    if soc:
        return pick_by_memory([mod for mod in MODULES if mod.soc == soc], mem_total_mb)
    return None


# --------------------------------------------------------------------------- nvpmodel

_POWER_MODEL_RE = re.compile(r"^\s*<\s*POWER_MODEL\b([^>]*)>", re.M)
_ATTR_RE = re.compile(r"(\w+)\s*=\s*([^\s>]+)")


def parse_nvpmodel_status(text: Optional[str]) -> Optional[int]:
    """Mode id from /var/lib/nvpmodel/status ("pmode:0002 fmode:quiet" -> 2)."""
    match = re.search(r"pmode:\s*(\d+)", text or "")
    return int(match.group(1)) if match else None


def parse_nvpmodel_conf(text: Optional[str]) -> Dict[int, str]:
    """Mode id -> name from /etc/nvpmodel.conf "< POWER_MODEL ID=0 NAME=MAXN >" lines."""
    modes: Dict[int, str] = {}
    for match in _POWER_MODEL_RE.finditer(text or ""):
        attrs = {key.upper(): value for key, value in _ATTR_RE.findall(match.group(1))}
        if attrs.get("ID", "").isdigit() and "NAME" in attrs:
            modes[int(attrs["ID"])] = attrs["NAME"]
    return modes


def nvpmodel_name(status_text: Optional[str], conf_text: Optional[str]) -> Optional[str]:
    """Name of the active power mode ("MAXN_SUPER"); "mode N" when the conf does not name
    it; None when there is no status file (no nvpmodel on this host)."""
    mode = parse_nvpmodel_status(status_text)
    if mode is None:
        return None
    return parse_nvpmodel_conf(conf_text).get(mode, f"mode {mode}")


# --------------------------------------------------------------------------- jetson_clocks

# The GPU's devfreq node, by SoC: gp10b (TX2), gv11b (Xavier), ga10b (Orin on JetPack 5),
# gpu (Orin on JetPack 6, e.g. 17000000.gpu), gb10b (Thor); Nano's is 57000000.gpu.
GPU_DEVFREQ_RE = re.compile(r"\.(gp10b|gv11b|ga10b|gb10b|gpu)$")


def parse_freq(text: Optional[str]) -> Optional[int]:
    """A sysfs frequency file ("1190400\\n") as an int; None when absent or not a number."""
    value = (text or "").strip()
    return int(value) if value.isdigit() else None


def clocks_pinned(pairs: Sequence[Tuple[Optional[int], Optional[int]]]) -> Optional[bool]:
    """Whether jetson_clocks is in effect: it pins the minimum frequency of every CPU and of
    the GPU to their maximum. `pairs` are (min, max) of each; unreadable pairs are left out.
    None when no pair could be read (not a Jetson, or no cpufreq/devfreq in this kernel)."""
    known = [(lo, hi) for lo, hi in pairs if lo is not None and hi is not None]
    if not known:
        return None
    return all(lo == hi for lo, hi in known)
