"""Ansible host variables as edge reads them: group_vars/ and host_vars/ files, vault
markers, ProxyJump in the ssh args, and a warning for every variable not applied."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge.fleet.inventory import FleetError
from edge.fleet.yaml_io import loader

VAULT_HEADER = "$ANSIBLE_VAULT;"
VAULT_HINT = (
    "Install Ansible, which decrypts it: pip install 'ansible-core>=2.17', then "
    "edge fleet import FILE --vault-password-file PASSWORD_FILE"
)
APPLIED = {  # Device field -> the variables that set it, the first one set winning
    "host": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "python": ("ansible_python_interpreter",),
}
SSH_ARGS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
_HANDLED = frozenset(v for names in APPLIED.values() for v in names) | set(SSH_ARGS)
_HARMLESS_CONNECTIONS = {"ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh"}
_REASONS = (
    ("ansible_become", "edge does not escalate privileges: the agent runs as the login user"),
    ("ansible_password", "edge logs in with keys or ssh-agent, not passwords"),
    ("ansible_ssh_pass", "edge logs in with keys or ssh-agent, not passwords"),
    ("ansible_connection", "edge connects over SSH only"),
)
_MAX_HOSTS = 5  # hosts named in one warning's text (the JSON lists them all)


class Vaulted:
    """A `!vault` value: encrypted, so never applied."""

    def __init__(self, ciphertext: str = "") -> None:
        self.ciphertext = ciphertext


class VarsLoader(loader()):  # type: ignore[misc]  # CSafeLoader or SafeLoader
    """The safe YAML loader, plus Ansible's `!vault` (kept encrypted) and `!unsafe` tags."""


VarsLoader.add_constructor("!vault", lambda loader, node: Vaulted(loader.construct_scalar(node)))
VarsLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


@dataclass
class ImportWarning:
    """A variable (or Ansible's own message) that the import did not apply, and where."""

    message: str
    variable: str | None = None
    hosts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if not self.hosts:
            return self.message
        shown = ", ".join(self.hosts[:_MAX_HOSTS])
        more = f" and {len(self.hosts) - _MAX_HOSTS} more" if len(self.hosts) > _MAX_HOSTS else ""
        hosts = "hosts" if len(self.hosts) > 1 else "host"
        return f"{self.variable}: {self.message} ({hosts} {shown}{more})"

    def to_dict(self) -> dict[str, Any]:
        return {"variable": self.variable, "hosts": self.hosts, "message": self.text}


class Warnings:
    """Unapplied variables, gathered across hosts: one warning per variable and reason."""

    def __init__(self) -> None:
        self._by: dict[tuple[str, str], dict[str, None]] = {}  # ordered sets: linear
        self._other: list[str] = []
        self.plain: list[str] = []

    def add(self, host: str, variable: str, reason: str) -> None:
        self._by.setdefault((variable, reason), {})[host] = None

    def other(self, variable: str) -> None:
        if variable not in self._other:
            self._other.append(variable)

    def items(self) -> list[ImportWarning]:
        out = [ImportWarning(m, None) for m in self.plain]
        out += [ImportWarning(why, var, list(hosts)) for (var, why), hosts in self._by.items()]
        if self._other:
            names = ", ".join(sorted(self._other))
            out.append(ImportWarning(f"not connection settings, so not used by edge: {names}"))
        return out


def unwrap(value: Any) -> Any:
    """`ansible-inventory --list` JSON values: `__ansible_unsafe` unwrapped, `__ansible_vault`
    kept as Vaulted, containers walked."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return unwrap(value["__ansible_unsafe"])
        if set(value) == {"__ansible_vault"}:
            return Vaulted(str(value["__ansible_vault"]))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def vault_error(path: Path) -> FleetError:
    return FleetError(
        f"{path} is vault-encrypted: the built-in reader cannot decrypt it (Ansible can).",
        VAULT_HINT,
    )


def _vars_files(base: Path, name: str) -> list[Path]:
    """The files Ansible's host_group_vars plugin reads for `name` under `base`
    (group_vars/ or host_vars/): NAME, NAME.yml/.yaml/.json, or every file below NAME/."""
    exts = ("", ".yml", ".yaml", ".json")
    found = []
    for ext in exts:
        path = base / f"{name}{ext}"
        if path.is_dir():
            found += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and not p.name.endswith("~")
                and p.suffix in exts
            )
        elif path.is_file():
            found.append(path)
    return found


def load_vars_dir(base: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Variables of group_vars/ or host_vars/ (base) for each name, files merged in order."""
    out: dict[str, dict[str, Any]] = {}
    if not base.is_dir():
        return out
    for name in names:
        for path in _vars_files(base, name):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise FleetError(
                    f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                    "Fix its permissions or encoding (group_vars/ and host_vars/ hold YAML).",
                ) from None
            if text.lstrip().startswith(VAULT_HEADER):
                raise vault_error(path)
            try:
                data = yaml.load(text, Loader=VarsLoader)
            except yaml.YAMLError as exc:
                raise FleetError(
                    f"{path}: not valid YAML ({getattr(exc, 'problem', None) or exc})",
                    "group_vars/ and host_vars/ files hold YAML (or JSON) mappings.",
                ) from None
            if data is None:
                continue
            if not isinstance(data, dict):
                raise FleetError(
                    f"{path}: must be a mapping of variables, got {type(data).__name__}",
                    "group_vars/ and host_vars/ files hold YAML (or JSON) mappings.",
                )
            out.setdefault(name, {}).update({str(k): v for k, v in data.items()})
    return out


def _proxy_command_hop(command: str) -> str | None:
    """`ssh [-q] [-p N] [-l U] -W %h:%p [user@]host` (Ansible's bastion recipe) as a hop."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if not argv or Path(argv[0]).name != "ssh" or "-W" not in argv:
        return None
    port = user = dest = None
    it = iter(argv[1:])
    for arg in it:
        if arg == "-W":
            if next(it, None) != "%h:%p":
                return None
        elif arg in ("-p", "-l"):
            value = next(it, None)
            port, user = (value, user) if arg == "-p" else (port, value)
        elif arg in ("-q", "-T", "-A", "-4", "-6"):
            continue
        elif arg.startswith("-") or dest is not None:
            return None
        else:
            dest = arg
    if dest is None:
        return None
    hop = f"{user}@{dest}" if user and "@" not in dest else dest
    return f"{hop}:{port}" if port else hop


def jump_from_args(value: str) -> tuple[str | None, list[str]]:
    """ProxyJump from `ansible_ssh_common_args`-style options (`-J H`, `-o ProxyJump=H`,
    `-o ProxyCommand="ssh -W %h:%p H"`) -> (jump or None, the options not applied)."""
    try:
        argv = shlex.split(value)
    except ValueError:
        return None, [value]
    jump, rest = None, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-J" or arg == "-o":
            opt = argv[i + 1] if i + 1 < len(argv) else ""
            i += 2
        elif arg.startswith("-J") or arg.startswith("-o"):
            opt, i = arg[2:], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        if arg.startswith("-J"):
            jump = opt
            continue
        key, _, val = opt.replace("=", " ", 1).partition(" ")
        if key.lower() == "proxyjump" and val.strip():
            jump = val.strip()
        elif key.lower() == "proxycommand" and _proxy_command_hop(val):
            jump = _proxy_command_hop(val)
        else:
            rest.append(f"-o {opt}")
    return jump, rest


def classify(host: str, hvars: dict[str, Any], warnings: Warnings) -> None:
    """Warn about the variables of `host` that edge does not apply."""
    for var, value in hvars.items():
        if isinstance(value, Vaulted):
            warnings.add(host, var, "vault-encrypted value, not applied")
            continue
        if var in _HANDLED:
            continue
        if var == "ansible_connection" and str(value) in _HARMLESS_CONNECTIONS:
            continue
        if not var.startswith("ansible_"):
            warnings.other(var)
            continue
        reason = next((r for prefix, r in _REASONS if var.startswith(prefix)), None)
        warnings.add(host, var, reason or "not applied by edge")
