"""Where the host keeps its files. EDGE_HOME moves all of them (tests use it)."""

from __future__ import annotations

from pathlib import Path

import platformdirs

from edge.core.settings import settings


def edge_home() -> Path | None:
    return settings().home


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
    return settings().local_root or data_dir() / "local-device"
