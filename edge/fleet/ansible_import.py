"""`edge fleet import`: an Ansible inventory read by Ansible's own resolver,
`ansible-inventory --list`, where Ansible is installed; else by the built-in reader."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from edge.fleet.inventory import FleetError

if TYPE_CHECKING:  # the readers load on use: `edge fleet` needs only READERS at start
    from edge.fleet.ansible import Imported

READERS = ("auto", "ansible", "built-in")
ANSIBLE_TIMEOUT = 300.0
INSTALL_HINT = "Install Ansible: pip install 'ansible-core>=2.17' (or pass --reader built-in)."


def ansible_inventory_command() -> str | None:
    """`ansible-inventory` next to this Python (its venv, as pipx installs it), else on PATH."""
    here = Path(sys.executable).parent / "ansible-inventory"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("ansible-inventory")


def read_with_ansible(
    path: Path, command: str, vault_password_file: Path | None = None
) -> Imported:
    """Ansible's own resolver: `ansible-inventory -i PATH --list`, parsed as the built-in
    reader parses that JSON (vars there are final: no group_vars/ read again)."""
    from edge.fleet.ansible import InventoryModel, finish_import, json_inventory

    path = Path(path).absolute()  # never read as an option or a host list
    argv = [command, "-i", str(path), "--list"]
    if vault_password_file is not None:
        argv += ["--vault-password-file", str(Path(vault_password_file).absolute())]
    env = dict(os.environ, ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_NOCOLOR="1")
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=ANSIBLE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FleetError(f"ansible-inventory failed to run: {exc}", INSTALL_HINT) from None
    messages = _ansible_messages(proc.stderr)
    if proc.returncode != 0:
        vault = "vault" in proc.stderr.lower()
        raise FleetError(
            f"ansible-inventory could not read {path}: "
            + ("; ".join(m for m in messages if m) or f"exit {proc.returncode}"),
            f"Pass the vault password: edge fleet import {shlex.quote(str(path))} "
            "--vault-password-file PASSWORD_FILE"
            if vault and vault_password_file is None
            else "Check the inventory with: ansible-inventory -i FILE --list",
        )
    data = json_inventory(proc.stdout)
    if data is None:
        raise FleetError(
            f"ansible-inventory printed no JSON inventory for {path}",
            "Check the inventory with: ansible-inventory -i FILE --list",
        )
    model = InventoryModel(path)
    model.parse_json(data)
    model.warnings.plain += [m for m in messages if m]
    return finish_import(model, "ansible-inventory")


def _ansible_messages(stderr: str) -> list[str]:
    """Ansible's [WARNING]/[ERROR] messages, one line each."""
    out: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        match = re.match(r"\[(WARNING|ERROR|DEPRECATION WARNING)\]:\s*(.*)", line)
        if match:
            out.append(match.group(2))
        elif line and out and not line.startswith(("<<<", "Origin:")):
            out[-1] = f"{out[-1]} {line}"
    return list(dict.fromkeys(out))


def import_inventory(
    path: Path, reader: str = "auto", vault_password_file: Path | None = None
) -> Imported:
    """Devices from an Ansible inventory: through `ansible-inventory` where Ansible is
    installed (`auto`, `ansible`), else (or `built-in`) through the built-in reader. In
    `auto`, a saved `ansible-inventory --list` JSON (resolved already, and a format
    Ansible cannot read back) goes to the built-in reader."""
    from edge.fleet.ansible import json_inventory, read_builtin, read_inventory_text

    path = Path(path)
    if reader not in READERS:
        raise FleetError(f"unknown reader {reader!r}", f"Use one of: {', '.join(READERS)}")
    if not path.is_dir() and (reader == "auto" or not path.exists()):
        text = read_inventory_text(path)  # a missing file: cannot read ...
        reader = "built-in" if json_inventory(text) is not None else reader
    command = ansible_inventory_command() if reader != "built-in" else None
    if command is None and reader == "ansible":
        raise FleetError("ansible-inventory is not installed.", INSTALL_HINT)
    if vault_password_file is not None and not Path(vault_password_file).is_file():
        raise FleetError(
            f"vault password file {vault_password_file} not found",
            "Pass the file that holds the vault password: --vault-password-file FILE",
        )
    if command is None:
        return read_builtin(path)
    return read_with_ansible(path, command, vault_password_file)
