"""Where the host keeps its files. EDGE_HOME moves all of them (tests use it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def edge_home() -> Path | None:
    value = os.environ.get("EDGE_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    home = edge_home()
    return home / "data" if home else Path(platformdirs.user_data_dir("jetson-edge"))


def cache_dir() -> Path:
    home = edge_home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir("jetson-edge"))


def config_dir() -> Path:
    home = edge_home()
    return home / "config" if home else Path(platformdirs.user_config_dir("jetson-edge"))


def local_device_root() -> Path:
    """The device root of the built-in `local` device."""
    value = os.environ.get("EDGE_LOCAL_ROOT")
    return Path(value).expanduser() if value else data_dir() / "local-device"
