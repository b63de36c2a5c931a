"""Import an Ansible inventory as fleet devices; groups become tags.

`ansible-inventory --list` reads it where Ansible is installed (every format, vault,
plugins, group_vars/ and host_vars/); else the built-in reader takes YAML, INI and that
command's JSON output, with group_vars/ and host_vars/ next to the file.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.fleet.ansible_vars import (
    APPLIED,
    SSH_ARGS,
    VAULT_HEADER,
    ImportWarning,
    VarsLoader,
    Vaulted,
    Warnings,
    classify,
    jump_from_args,
    load_vars_dir,
    unwrap,
    vault_error,
)
from edge.fleet.devices import Device
from edge.fleet.inventory import ALL, FleetError, _FieldError, make_device

INSTALL_HINT = "Install Ansible: pip install 'ansible-core>=2.17'."
_RANGE = re.compile(r"\[([0-9]+|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")
_HOST_PORT = re.compile(r"([^:\[\]]*(?:\[[^\]]*\][^:\[\]]*)*):([0-9]+)")
_SECTION = re.compile(r"\[([^:\]\s]+)(?::(\w+))?\]\s*(?:[#;].*)?")
_PLAIN_LINE = re.compile(r"[!$-&(-\[\]-~ ]*")  # printable ASCII without quotes, \\ or #


def expand_host_pattern(pattern: str) -> list[str]:
    """Ansible host ranges: jetson[01:03] -> jetson01..03 (also [a:c] and [0:10:2])."""
    match = _RANGE.search(pattern)
    if not match:
        return [pattern]
    beg, end, step = match.group(1), match.group(2), int(match.group(3) or 1)
    if beg.isdigit() != end.isdigit() or step < 1:
        raise ValueError(f"bad host range {match.group(0)!r}")
    if beg.isdigit():
        width = len(beg) if len(beg) > 1 and beg.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(beg), int(end) + 1, step)]
    else:
        values = [chr(c) for c in range(ord(beg), ord(end) + 1, step)]
    if not values:
        raise ValueError(f"empty host range {match.group(0)!r}")
    head = pattern[: match.start()]
    return [head + v + rest for v in values for rest in expand_host_pattern(pattern[match.end() :])]


class InventoryModel:
    """Groups, hosts and vars of one Ansible inventory, resolved the way Ansible does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Ordered sets (dicts of None) and a host -> groups index: membership tests and
        # each host's groups cost O(1), so an import is linear in the hosts (not quadratic).
        self.group_hosts: dict[str, dict[str, None]] = {}
        self.host_groups: dict[str, dict[str, None]] = {}
        self.group_vars: dict[str, dict[str, Any]] = {}
        self.children: dict[str, set[str]] = {}
        self.host_vars: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, set[str]] = {}
        # group_vars/ and host_vars/ files: above the inventory's own vars of each kind
        self.file_group_vars: dict[str, dict[str, Any]] = {}
        self.file_host_vars: dict[str, dict[str, Any]] = {}
        self.warnings = Warnings()

    def bad(self, where: str, reason: str) -> FleetError:
        return FleetError(
            f"Ansible inventory {self.path}: {where}: {reason}",
            "The formats are in Ansible's inventory guide (YAML or INI).",
        )

    def group(self, name: str) -> None:
        self.group_hosts.setdefault(name, {})
        self.group_vars.setdefault(name, {})
        self.children.setdefault(name, set())

    def hosts(self, group: str, pattern: str, hvars: dict[str, Any], where: str) -> None:
        self.group(group)
        match = _HOST_PORT.fullmatch(pattern)
        if match:
            pattern, hvars = match.group(1), {"ansible_port": match.group(2), **hvars}
        try:
            names = expand_host_pattern(pattern)
        except ValueError as exc:
            raise self.bad(where, str(exc)) from None
        for name in names:
            self.group_hosts[group][name] = None
            self.host_groups.setdefault(name, {})[group] = None
            self.host_vars.setdefault(name, {}).update(hvars)

    def parse_json(self, data: dict[Any, Any]) -> None:
        """`ansible-inventory --list` output (or a script's): groups with `hosts`,
        `children` and `vars`, host vars in `_meta.hostvars`; names are literal."""
        meta = data.get("_meta") or {}
        for name, body in data.items():
            if name == "_meta":
                continue
            self.group(str(name))
            if isinstance(body, list):
                body = {"hosts": body}
            if not isinstance(body, dict):
                raise self.bad(str(name), f"must be a group object, got {body!r}")
            for host in body.get("hosts") or []:
                self.group_hosts[str(name)][str(host)] = None
                self.host_groups.setdefault(str(host), {})[str(name)] = None
                self.host_vars.setdefault(str(host), {})
            for child in body.get("children") or []:
                self.group(str(child))
                self.children[str(name)].add(str(child))
            self.group_vars[str(name)].update(unwrap(body.get("vars") or {}))
        hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
        for host, hvars in (hostvars or {}).items():
            if not isinstance(hvars, dict):
                raise self.bad(f"_meta.hostvars.{host}", "must be a mapping of variables")
            self.host_vars.setdefault(str(host), {}).update(unwrap(hvars))

    def read_vars_dirs(self) -> None:
        """group_vars/ and host_vars/ next to the inventory, as Ansible reads them."""
        base = self.path.parent
        self.file_group_vars = load_vars_dir(base / "group_vars", [ALL, *self.group_hosts])
        self.file_host_vars = load_vars_dir(base / "host_vars", self.host_vars)

    def parse_yaml(self, data: dict[Any, Any]) -> None:
        for name, body in data.items():
            self._yaml_group(str(name), body, str(name))

    def _mapping(self, value: Any, where: str) -> dict[Any, Any]:
        if value is None or value == []:
            return {}
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return dict.fromkeys(value)  # a list of host names
        if not isinstance(value, dict):
            raise self.bad(where, f"must be a mapping, got {value!r}")
        return value

    def _yaml_group(self, name: str, body: Any, where: str) -> None:
        self.group(name)
        body = self._mapping(body, where)
        for key in body:
            if key not in ("hosts", "vars", "children"):
                raise self.bad(f"{where}.{key}", "unknown key (a group has hosts, vars, children)")
        for pattern, hvars in self._mapping(body.get("hosts"), f"{where}.hosts").items():
            at = f"{where}.hosts.{pattern}"
            self.hosts(name, str(pattern), self._mapping(hvars, at), at)
        self.group_vars[name].update(self._mapping(body.get("vars"), f"{where}.vars"))
        children = self._mapping(body.get("children"), f"{where}.children")
        for child, child_body in children.items():
            self.children[name].add(str(child))
            self._yaml_group(str(child), child_body, f"{where}.children.{child}")

    def parse_ini(self, text: str) -> None:
        section, kind = "ungrouped", "hosts"
        for lineno, raw in enumerate(text.splitlines(), 1):
            line, where = raw.strip(), f"line {lineno}"
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                match = _SECTION.fullmatch(line)
                if not match or (match.group(2) or "hosts") not in ("hosts", "vars", "children"):
                    raise self.bad(where, f"bad section header {line!r}")
                section, kind = match.group(1), match.group(2) or "hosts"
                self.group(section)
                continue
            if kind == "vars":
                key, sep, value = line.partition("=")
                if not sep or not key.strip():
                    raise self.bad(where, f"expected key=value in [{section}:vars], got {line!r}")
                value = value.strip()
                if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
                    value = value[1:-1]
                self.group_vars[section][key.strip()] = value
                continue
            try:  # shlex is slow; a line without quotes, escapes or comments is split()
                tokens = (
                    line.split()
                    if _PLAIN_LINE.fullmatch(line)
                    else shlex.split(line, comments=True)
                )
            except ValueError as exc:
                raise self.bad(where, f"{exc} in {line!r}") from None
            if not tokens:
                continue
            if kind == "children":
                self.group(tokens[0])
                self.children[section].add(tokens[0])
                continue
            hvars: dict[str, Any] = {}
            for token in tokens[1:]:
                key, sep, value = token.partition("=")
                if not sep:
                    raise self.bad(where, f"expected key=value after the host, got {token!r}")
                hvars[key] = value
            self.hosts(section, tokens[0], hvars, where)

    def _depths(self) -> dict[str, int]:
        """Each group's depth below `all` (longest path); child groups' vars win."""
        parents: dict[str, set[str]] = {g: set() for g in self.children}
        for group, kids in self.children.items():
            for kid in kids:
                parents.setdefault(kid, set()).add(group)
        depths: dict[str, int] = {}

        def depth(group: str, seen: frozenset[str]) -> int:
            if group in seen:
                raise self.bad(f"group {group}", "is its own descendant (a children cycle)")
            if group not in depths:
                ups = [p for p in parents.get(group, ()) if p != ALL]
                depths[group] = (
                    0
                    if group == ALL
                    else 1 + max((depth(p, seen | {group}) for p in ups), default=0)
                )
            return depths[group]

        for group in parents:
            depth(group, frozenset())
        self.parents = parents
        return depths

    def devices(self) -> list[Device]:
        depths = self._depths()
        ancestors: dict[frozenset[str], tuple[list[str], dict[str, Any]]] = {}
        devices = []
        for host in self.host_vars:
            direct = frozenset(self.host_groups.get(host, ()))
            if direct not in ancestors:  # hosts share a few group sets: resolve each once
                groups = {ALL}
                todo = list(direct)
                while todo:
                    group = todo.pop()
                    if group not in groups:
                        groups.add(group)
                        todo.extend(self.parents.get(group, ()))
                group_vars: dict[str, Any] = {}
                ordered = sorted(groups, key=lambda g: (depths.get(g, 0), g))
                for layer in (self.group_vars, self.file_group_vars):
                    for group in ordered:
                        group_vars.update(layer.get(group, {}))
                ancestors[direct] = (sorted(groups - {ALL, "ungrouped"}), group_vars)
            tags, group_vars = ancestors[direct]
            merged = dict(group_vars)
            merged.update(self.host_vars[host])
            merged.update(self.file_host_vars.get(host, {}))
            devices.append(self._device(host, merged, list(tags)))
        return devices

    def _jump(self, host: str, hvars: dict[str, Any]) -> str | None:
        jump = None
        for var in SSH_ARGS:
            value = hvars.get(var)
            if isinstance(value, str) and value.strip():
                found, rest = jump_from_args(value)
                jump = found or jump
                for option in rest:
                    self.warnings.add(host, var, f"{option!r} not applied by edge")
        return jump

    def _device(self, host: str, hvars: dict[str, Any], tags: list[str]) -> Device:
        classify(host, hvars, self.warnings)
        fields: dict[str, Any] = {}
        for field_name, names in APPLIED.items():
            for var in names:
                value = hvars.get(var)
                if value is None or value == "" or isinstance(value, Vaulted):
                    continue
                if isinstance(value, str) and "{{" in value:
                    raise self.bad(
                        f"host {host}: {var}",
                        f"{value!r} is a Jinja template, "
                        "which edge cannot evaluate; set the value itself",
                    )
                fields[field_name] = (
                    value if field_name == "port" or isinstance(value, str) else str(value)
                )
                break
        if str(fields.get("python", "")).startswith("auto"):
            fields.pop("python")  # auto / auto_silent / auto_legacy: our default python3
        try:
            return make_device(
                host,
                fields.get("host", host),
                fields.get("port"),
                fields.get("user"),
                fields.get("key"),
                fields.get("python"),
                None,
                tags,
                self._jump(host, hvars),
            )
        except _FieldError as exc:
            raise self.bad(f"host {host}", f"{exc.field}: {exc.reason}") from None


def _yaml_inventory(text: str, path: Path) -> dict[Any, Any] | None:
    """The parsed YAML if it looks like an Ansible YAML inventory, else None (try INI)."""
    first = next(
        (ln.strip() for ln in text.splitlines() if ln.strip() and ln.lstrip()[0] not in "#;"), ""
    )
    if first.startswith("["):  # an INI section header; no YAML inventory starts so
        return None
    try:
        data = yaml.load(text, Loader=VarsLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict) or not data:
        return None
    if isinstance(data.get("plugin"), str):
        raise FleetError(
            f"{path} configures the Ansible inventory plugin {data['plugin']!r}: only Ansible "
            "can run it, and it is not installed.",
            f"{INSTALL_HINT} Then: edge fleet import {shlex.quote(str(path))}",
        )
    if not all(v is None or isinstance(v, dict) for v in data.values()):
        return None
    keys = {"hosts", "children", "vars"}
    return data if any(isinstance(v, dict) and keys & set(v) for v in data.values()) else None


def json_inventory(text: str) -> dict[Any, Any] | None:
    """`ansible-inventory --list` output (a JSON object), else None."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@dataclass
class Imported:
    """The devices of an Ansible inventory, what was not applied, and which reader read it."""

    devices: list[Device]
    warnings: list[ImportWarning] = field(default_factory=list)
    reader: str = "built-in"


def read_inventory_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetError(
            f"cannot read the Ansible inventory {path}: {getattr(exc, 'strerror', None) or exc}",
            "Pass an inventory file (YAML, INI or ansible-inventory --list JSON): "
            "edge fleet import hosts.ini",
        ) from None


def finish_import(model: InventoryModel, reader: str) -> Imported:
    devices = model.devices()
    if not devices:
        raise FleetError(
            f"no hosts found in the Ansible inventory {model.path}",
            "Check that it is an inventory (YAML `all: {hosts: ...}` or INI).",
        )
    return Imported(devices, model.warnings.items(), reader)


def read_builtin(path: Path) -> Imported:
    """The built-in reader: YAML, INI or `ansible-inventory --list` JSON, with the
    group_vars/ and host_vars/ next to it; warnings name what it did not apply."""
    path = Path(path)
    text = read_inventory_text(path)
    if text.lstrip().startswith(VAULT_HEADER):
        raise vault_error(path)
    model = InventoryModel(path)
    data = json_inventory(text)
    if data is not None:
        model.parse_json(data)
    elif (data := _yaml_inventory(text, path)) is not None:
        model.parse_yaml(data)
    else:
        model.parse_ini(text)
    model.read_vars_dirs()
    return finish_import(model, "built-in")


def import_ansible(path: Path) -> list[Device]:
    """Devices from an Ansible inventory through the built-in reader (read_builtin)."""
    return read_builtin(path).devices
