"""The agent's own settings, read from `<root>/agent.json` on the device.

`sysroot` points the facts readers at another system root: for an agent running in a
container with the host's /etc and /proc/device-tree mounted under, say, /host.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import AgentError


@dataclass
class AgentConfig:
    sysroot: str = "/"


def load_config(root: str) -> AgentConfig:
    """Read `<root>/agent.json` (absent: defaults); a malformed file is an AgentError."""
    path = os.path.join(root, "agent.json")
    if not os.path.exists(path):
        return AgentConfig()
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or set(data) - {"sysroot"}:
            raise ValueError("expected an object with the key 'sysroot'")
        return AgentConfig(sysroot=str(data.get("sysroot", "/")))
    except ValueError as exc:
        raise AgentError(f"Bad agent config {path}: {exc}", "Fix or remove that file.") from exc
