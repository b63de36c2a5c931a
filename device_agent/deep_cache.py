"""The deep probe's answer, kept on the device while its software stack stays the same.

`info --deep` imports TensorFlow (seconds on a board) to learn what never changes between
two probes unless something is installed or removed: TF-TRT's TensorRT versions and which
backends can run. The answer is kept in `<root>/cache/deep-probe.json` under a key made of
everything it depends on, read without importing anything: this agent build, the Python,
the distributions on sys.path and the directories' own mtimes (a package added or removed),
dpkg's status file (apt: TensorRT, CUDA), L4T's release file, CUDA's version file,
trtexec, PATH and LD_LIBRARY_PATH. Any change there, or a damaged file, means a fresh
probe. Stdlib only, Python 3.8.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from .capabilities import CUDA_ROOTS, TRTEXEC_PATHS
from .durable import atomic_write
from .trt_types import Capabilities

STAMPED = (
    "/var/lib/dpkg/status",
    "/etc/nv_tegra_release",
    *(os.path.join(r, v) for r in CUDA_ROOTS for v in ("version.json", "version.txt")),
    *TRTEXEC_PATHS,
)
Deep = Tuple[Optional[bool], Optional[str], Optional[str], Capabilities]


def _stamp(path: str) -> List[Any]:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_mtime_ns, st.st_size]


def stack_key(installed: Dict[str, str]) -> str:
    """What the deep probe's answer depends on, as one canonical JSON text. It is stored
    and compared whole rather than hashed: hashlib's import alone is ~3 ms of each start."""
    parts: Dict[str, Any] = {
        "agent": os.path.abspath(__file__),  # the unpacked build's own directory
        "python": [sys.executable, sys.version],
        "dists": sorted(installed.items()),
        "paths": [_stamp(p or ".") for p in sys.path],
        "files": [_stamp(p) for p in STAMPED],
        "env": [os.environ.get(k) for k in ("PATH", "LD_LIBRARY_PATH", "CUDA_HOME")],
    }
    return json.dumps(parts, sort_keys=True)


def cached_deep(root: str, installed: Dict[str, str], probe: Callable[[], Deep]) -> Deep:
    """The deep probe's answer for this stack: from the cache under `root` when the key
    matches, else from `probe()`, which is then kept."""
    path = os.path.join(root, "cache", "deep-probe.json")
    key = stack_key(installed)
    try:
        with open(path) as f:
            data = json.load(f)
        if data["key"] == key:
            enabled, linked, loaded = data["tensorrt"]
            caps = Capabilities.from_dict(data["capabilities"])
            if enabled in (None, True, False) and all(
                v is None or isinstance(v, str) for v in (linked, loaded)
            ):
                return enabled, linked, loaded, caps
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # none yet, or damaged: probe afresh
    enabled, linked, loaded, caps = probe()
    record = {"key": key, "tensorrt": [enabled, linked, loaded], "capabilities": caps.to_dict()}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(record).encode())
    except OSError:
        pass  # a read-only or full disk: the answer stands, uncached
    return enabled, linked, loaded, caps
