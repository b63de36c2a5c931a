"""Fixtures of the device_agent tests: a model-like tree for the manifest and store tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

#: File names that a shell would take apart, and non-ASCII ones.
HOSTILE = [
    "with space.txt",
    "quote'single.txt",
    'quote"double.txt',
    "semi;colon.txt",
    "$(touch x)",
    "`touch x`",
    "ünïcödé-模型.bin",
    "-leading-dash",
]


def make_tree(root: Path) -> Dict[str, bytes]:
    """A SavedModel-like tree with nested dirs, hostile names and duplicate contents."""
    files = {
        "saved_model.pb": b"\x08\x01graph" * 1000,
        "variables/variables.index": b"index-bytes",
        "variables/variables.data-00000-of-00001": os.urandom(300_000),
        "assets/vocab.txt": b"same content\n",
        "assets/deep/er/copy.txt": b"same content\n",
        "fingerprint.pb": b"",
    }
    for i, name in enumerate(HOSTILE):
        files[f"assets/{name}"] = f"hostile {i}".encode()
    files["assets/dup-of-0"] = files[f"assets/{HOSTILE[0]}"]
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    os.chmod(root / "saved_model.pb", 0o755)
    (root / "empty-dir").mkdir()
    return files


@pytest.fixture
def hostile_names() -> List[str]:
    """The hostile file names `hostile_tree` holds under assets/."""
    return list(HOSTILE)


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Tuple[Path, Dict[str, bytes]]:
    """(directory, {relative path: bytes}) of a `make_tree` tree under tmp_path/model."""
    src = tmp_path / "model"
    return src, make_tree(src)
