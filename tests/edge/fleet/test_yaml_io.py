"""The inventory's YAML cache: an unchanged fleet.yaml is read without PyYAML, and the copy
is used only for exactly the text it was made from."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.core.paths import cache_dir
from edge.fleet import inventory as F
from edge.fleet import yaml_io

TEXT = "version: 1\ndevices:\n  orin: {host: 10.0.0.5, port: 2222, tags: [lab, orin]}\n"


def _cache() -> Path:
    return cache_dir() / "fleet-yaml.json"


def test_a_second_load_of_the_same_text_uses_the_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    first = yaml_io.load_inventory_text(TEXT)
    assert _cache().is_file()

    def no_yaml(*_: object, **__: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr("yaml.load", no_yaml)
    assert yaml_io.load_inventory_text(TEXT) == first
    with pytest.raises(AssertionError, match="parsed again"):  # another text is parsed
        yaml_io.load_inventory_text(TEXT + "# edited\n")


def test_an_edited_file_is_read_afresh(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(TEXT)
    assert F.Inventory.load(path).get("orin").port == 2222
    path.write_text(TEXT.replace("2222", "2223"))  # same size, maybe the same mtime
    assert F.Inventory.load(path).get("orin").port == 2223
    path.write_text(TEXT.replace("2222", "'x'"))
    with pytest.raises(F.FleetError, match="port"):  # the copy is checked as the file is
        F.Inventory.load(path)


@pytest.mark.parametrize(
    "kept",
    [
        "not json",
        json.dumps([1, 2]),
        json.dumps({"shape": 99, "text": TEXT, "data": {"version": 1}}),
        json.dumps({"shape": 1, "text": TEXT}),
    ],
)
def test_a_damaged_copy_is_not_believed(kept: str) -> None:
    _cache().parent.mkdir(parents=True, exist_ok=True)
    _cache().write_text(kept)
    assert yaml_io.load_inventory_text(TEXT)["devices"]["orin"]["port"] == 2222


def test_a_copy_with_hostile_fields_fails_as_the_file_would(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(TEXT)
    data = {"version": 1, "devices": {"orin": {"host": "a b; rm -rf /"}}}
    _cache().parent.mkdir(parents=True, exist_ok=True)
    _cache().write_text(json.dumps({"shape": 1, "text": TEXT, "data": data}))
    with pytest.raises(F.FleetError, match="host"):
        F.Inventory.load(path)


@pytest.mark.parametrize(
    "text",
    [
        "when: 2026-12-07\n",  # a date
        "blob: !!binary aGk=\n",  # bytes
        "1: one\n",  # a key JSON would make a string
        "yes: 1\n",  # YAML 1.1's boolean key
        "x: .nan\n",
    ],
)
def test_values_json_would_change_are_not_cached(text: str) -> None:
    assert isinstance(yaml_io.load_inventory_text(text), dict)
    assert not _cache().exists()


def test_dates_come_back_as_dates() -> None:
    assert yaml_io.load_inventory_text("when: 2026-12-07\n") == {"when": datetime.date(2026, 12, 7)}


def test_invalid_yaml_is_a_yaml_problem_with_its_place() -> None:
    with pytest.raises(yaml_io.YamlProblem) as info:
        yaml_io.load_inventory_text("devices:\n  a: [1, 2\n")
    assert info.value.line is not None and info.value.line >= 2
    assert not _cache().exists()


def test_an_unwritable_cache_is_only_a_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", lambda *_: (_ for _ in ()).throw(OSError(28, "full")))
    assert yaml_io.load_inventory_text(TEXT)["version"] == 1
    assert not _cache().exists()
    assert not list(_cache().parent.glob("*.tmp"))


def test_a_command_on_an_unchanged_inventory_loads_no_yaml(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(TEXT)
    code = (
        "import sys; from edge.fleet.inventory import Inventory; "
        f"Inventory.load({str(path)!r}); print('yaml' in sys.modules)"
    )
    env = {**os.environ}

    def run() -> str:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert run() == "True"  # the first load parses it
    assert run() == "False"
    path.write_text(TEXT + "# edited\n")
    assert run() == "True"
