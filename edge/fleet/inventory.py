"""The fleet inventory (fleet.yaml): devices by name and target resolution.

Format: `version: 1` and `devices: {NAME: {host, port, user, key, python, root, tags, jump}}`.
`local` (this machine) is built in and never stored; `all` selects every stored device.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from device_agent.durable import atomic_write
from edge.core.errors import DeviceError, EdgeError
from edge.core.paths import config_dir
from edge.core.settings import settings
from edge.fleet.devices import LOCAL, Device, local_device
from edge.fleet.yaml_io import YamlProblem, dump, keep, load_inventory_text

VERSION = 1
ALL = "all"
RESERVED = frozenset({LOCAL, ALL})
FIELDS = ("host", "port", "user", "key", "python", "root", "tags", "jump")
_HOP_RE = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*@)?[A-Za-z0-9_\[][A-Za-z0-9._:\[\]-]*\Z")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
ADD_HINT = "edge fleet add NAME --host HOST"
HEADER = "# jetson-edge fleet inventory; `edge fleet add | rm | import` edit this file.\n"


class FleetError(EdgeError):
    """The fleet inventory file, an edit to it, or an imported inventory is invalid."""


class _FieldError(ValueError):
    """One device field is invalid (wrapped into a FleetError that names where)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def inventory_path() -> Path:
    """$EDGE_FLEET if set, else ./fleet.yaml if present, else the config dir's fleet.yaml."""
    value = settings().fleet
    if value:
        return value
    here = Path.cwd() / "fleet.yaml"
    return here if here.is_file() else config_dir() / "fleet.yaml"


def known_hosts_path() -> Path:
    """The fleet's own known_hosts: $EDGE_KNOWN_HOSTS, else the config dir's known_hosts."""
    return settings().known_hosts or config_dir() / "known_hosts"


# ------------------------------------------------------------------ validation


def _word(value: Any, field: str, required: bool = False) -> str | None:
    """A host or user: one word that cannot be read as an ssh option."""
    if value is None or value == "":
        if required:
            raise _FieldError(field, "is required")
        return None
    if not isinstance(value, str):
        raise _FieldError(field, f"must be a string, got {value!r}")
    if value.startswith("-") or any(c.isspace() for c in value) or "@" in value:
        raise _FieldError(
            field, f"must be one word not starting with '-' (no spaces or '@'), got {value!r}"
        )
    return value


def _text(value: Any, field: str, default: str | None = None) -> str | None:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or "\n" in value or "\0" in value:
        raise _FieldError(field, f"must be a one-line string, got {value!r}")
    return value


def _port(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _FieldError("port", f"must be an integer 1..65535, got {value!r}")
    return value


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise _FieldError("tags", f"must be a list of strings, got {value!r}")
    for tag in value:
        if not isinstance(tag, str) or not NAME_RE.match(tag):
            raise _FieldError("tags", f"each tag must match {NAME_RE.pattern[:-2]}, got {tag!r}")
    return list(dict.fromkeys(value))


def _jump(value: Any) -> str | None:
    """A ProxyJump list: `[user@]host[:port]` hops, comma-separated (or `none`)."""
    if value is None or value == "":
        return None
    hops = value.split(",") if isinstance(value, str) else [None]
    if not all(isinstance(h, str) and _HOP_RE.match(h) for h in hops):
        raise _FieldError(
            "jump", f"must be [user@]host[:port] hops, comma-separated, got {value!r}"
        )
    return str(value)


def make_device(
    name: Any,
    host: Any = None,
    port: Any = None,
    user: Any = None,
    key: Any = None,
    python: Any = None,
    root: Any = None,
    tags: Any = None,
    jump: Any = None,
) -> Device:
    """Validate and normalize the fields of an inventory device (raises _FieldError)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _FieldError("name", f"must match {NAME_RE.pattern[:-2]}, got {name!r}")
    if name in RESERVED:
        raise _FieldError(
            "name", f"{name!r} is reserved (`local` is this machine, `all` selects every device)"
        )
    return Device(
        name=name,
        host=_word(host, "host", required=True),
        port=_port(port),
        user=_word(user, "user"),
        key=_text(key, "key"),
        python=_text(python, "python", "python3") or "python3",
        root=_text(root, "root", "~/.edge") or "~/.edge",
        tags=_tags(tags),
        jump=_jump(jump),
    )


def device_to_dict(device: Device) -> dict[str, Any]:
    """Every field of a device, name included (the `--json` shape)."""
    return dataclasses.asdict(device)


def _stored_fields(device: Device) -> dict[str, Any]:
    data = {k: getattr(device, k) for k in FIELDS}
    return {k: v for k, v in data.items() if v is not None and v != []}


# ------------------------------------------------------------------ the file


def _parse_inventory(text: str, path: Path) -> list[Device]:
    def bad(where: str, reason: str) -> FleetError:
        return FleetError(
            f"fleet inventory {path}: {where}: {reason}",
            f"Fix {where} in {path}, or rewrite the device: {ADD_HINT} --replace",
        )

    try:
        data = load_inventory_text(text)
    except YamlProblem as exc:
        where = f"line {exc.line}, column {exc.column}" if exc.line else "YAML"
        raise bad(where, f"not valid YAML ({exc.problem})") from None
    if data is None:
        return []
    if not isinstance(data, dict):
        raise bad("top level", "must be a mapping with `version` and `devices`")
    for key in data:
        if key not in ("version", "devices"):
            raise bad(str(key), "unknown key (the file has `version` and `devices`)")
    if data.get("version", VERSION) != VERSION:
        raise bad("version", f"unsupported version {data['version']!r} (edge reads {VERSION})")
    entries = data.get("devices") or {}
    if not isinstance(entries, dict):
        raise bad("devices", "must be a mapping of device name -> fields")
    devices = []
    for name, fields in entries.items():
        where = f"devices.{name}"
        if not isinstance(fields, dict):
            raise bad(where, f"must be a mapping of fields ({', '.join(FIELDS)})")
        kwargs = {str(k): v for k, v in fields.items()}
        for key in kwargs:
            if key not in FIELDS:
                raise bad(f"{where}.{key}", f"unknown field (known: {', '.join(FIELDS)})")
        try:
            devices.append(make_device(str(name), **kwargs))
        except _FieldError as exc:
            raise bad(f"{where}.{exc.field}", exc.reason) from None
    return devices


def _atomic_write(path: Path, text: str) -> None:
    """Replace the inventory file atomically (its mode kept), as a FleetError on failure."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(str(path), text)
    except OSError as exc:
        raise FleetError(
            f"cannot write the fleet inventory {path}: {exc.strerror or exc}",
            "Check the directory's permissions, or point EDGE_FLEET elsewhere.",
        ) from None


class Inventory:
    """The devices of one inventory file (edits are in memory until save())."""

    def __init__(self, path: Path, devices: Iterable[Device] = ()) -> None:
        self.path = Path(path)
        self._devices: dict[str, Device] = {d.name: d for d in devices}

    @classmethod
    def load(cls, path: Path | None = None) -> Inventory:
        """Read the inventory (default: inventory_path()); a missing file is empty."""
        path = Path(path) if path is not None else inventory_path()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except OSError as exc:
            raise FleetError(
                f"cannot read the fleet inventory {path}: {exc.strerror or exc}",
                "Check the file, or point EDGE_FLEET at another one.",
            ) from None
        return cls(path, _parse_inventory(text, path))

    def save(self) -> None:
        """Write the inventory atomically."""
        data = {"version": VERSION, "devices": {d.name: _stored_fields(d) for d in self.devices()}}
        text = HEADER + dump(data)
        _atomic_write(self.path, text)
        keep(text, data)  # what the next command reads, without PyYAML

    def __contains__(self, name: object) -> bool:
        return name in self._devices

    def __len__(self) -> int:
        return len(self._devices)

    def devices(self) -> list[Device]:
        """The stored devices, sorted by name (`local` is not among them)."""
        return [self._devices[n] for n in sorted(self._devices)]

    def tags(self) -> list[str]:
        """Every tag used in the inventory, sorted."""
        return sorted({t for d in self._devices.values() for t in d.tags})

    def add(self, device: Device, replace: bool = False) -> Device:
        """Validate and store a device; an existing name needs replace=True."""
        fields = {k: getattr(device, k) for k in FIELDS}
        try:
            checked = make_device(device.name, **fields)
        except _FieldError as exc:
            raise FleetError(
                f"invalid device {device.name!r}: {exc.field}: {exc.reason}",
                f"Usage: {ADD_HINT} [--port P] [--user U] [--key FILE] [--tag T]",
            ) from None
        if checked.name in self._devices and not replace:
            raise FleetError(
                f"device {checked.name!r} is already in the fleet inventory {self.path}",
                f"Pass --replace to overwrite it, or: edge fleet rm {checked.name}",
            )
        self._devices[checked.name] = checked
        return checked

    def remove(self, name: str) -> Device:
        """Drop a stored device and return it."""
        if name in RESERVED:
            raise FleetError(
                f"{name!r} is built in and cannot be removed.",
                "`edge fleet rm` takes the names of stored devices: edge fleet ls",
            )
        if name not in self._devices:
            raise self._unknown(name)
        return self._devices.pop(name)

    def get(self, name: str) -> Device:
        """A stored device by name (`local` gives the built-in one); unknown -> DeviceError."""
        if name == LOCAL:
            return local_device()
        if name not in self._devices:
            raise self._unknown(name)
        return self._devices[name]

    def import_devices(
        self, devices: Iterable[Device], replace: bool = False
    ) -> tuple[list[str], list[str]]:
        """Add devices; names already stored are skipped unless replace. -> (added, skipped)."""
        added: list[str] = []
        skipped: list[str] = []
        for device in devices:
            if device.name in self._devices and not replace:
                skipped.append(device.name)
            else:
                self.add(device, replace=True)
                added.append(device.name)
        return added, skipped

    def resolve(self, targets: str) -> list[Device]:
        """Comma-separated names, tag:NAME, all, local -> devices (deduplicated, in order)."""
        tokens = [t.strip() for t in targets.split(",") if t.strip()]
        if not tokens:
            raise DeviceError(
                "No target devices given.", "Pass --to local, device names, tag:NAME or all."
            )
        selected: dict[str, Device] = {}
        for token in tokens:
            for device in self._select(token):
                selected.setdefault(device.name, device)
        return list(selected.values())

    def _select(self, token: str) -> list[Device]:
        if token == ALL:
            if not self._devices:
                raise DeviceError(
                    f"`all` selects no device: the fleet inventory {self.path} is empty.",
                    f"Add devices first: {ADD_HINT} (or edge fleet import FILE), "
                    "or use --to local.",
                )
            return self.devices()
        if token.startswith("tag:"):
            tag = token[4:].strip()
            found = [d for d in self.devices() if tag and tag in d.tags]
            if not found:
                raise DeviceError(
                    f"No device has the tag {tag!r}.",
                    f"Known tags: {', '.join(self.tags()) or '(none)'}. Tag a "
                    f"device with: {ADD_HINT} --tag TAG --replace",
                )
            return found
        return [self.get(token)]

    def _unknown(self, name: str) -> DeviceError:
        known = ", ".join(sorted(self._devices)) or "(none yet)"
        return DeviceError(
            f"Unknown device {name!r} (not in the fleet inventory {self.path}).",
            f"Register it: {ADD_HINT} (here: edge fleet add {name} --host HOST). "
            f"Known devices: {known}; `local` is this machine.",
        )
