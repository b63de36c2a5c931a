"""`edge fleet add | ls | rm | import`: the fleet inventory (fleet.yaml)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, List, Optional

import typer

from edge.cli import quick as edge_quick
from edge.cli._utils import (
    JsonOpt,
    LegacyTargetsArg,
    pick_targets,
    print_json,
    targets_option,
    typer_factory,
)
from edge.core.errors import EdgeError
from edge.fleet.ansible_import import READERS, import_inventory
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory, device_to_dict

app = typer_factory("Fleet inventory: add, list, remove and import the devices edge targets.")

ReplaceOpt = Annotated[bool, typer.Option("--replace", help="Overwrite devices of the same name.")]


def _split(values: Optional[List[str]]) -> List[str]:
    """Repeatable options that also take comma-separated values."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _login(device: Device) -> str:
    user = f"{device.user}@" if device.user else ""
    port = f":{device.port}" if device.port else ""
    return f"{user}{device.host}{port}"


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Device name: letters, digits, '.', '_', '-'.")],
    host: Annotated[
        Optional[str],
        typer.Option(help="Host name, address or ~/.ssh/config alias (needed for a new device)."),
    ] = None,
    port: Annotated[Optional[int], typer.Option(help="SSH port (default: ssh config, 22).")] = None,
    user: Annotated[
        Optional[str], typer.Option(help="SSH user (default: ssh config, you).")
    ] = None,
    key: Annotated[Optional[str], typer.Option(help="Private key file (stored as given).")] = None,
    python: Annotated[
        Optional[str],
        typer.Option(help="Python 3.8+ on the device that runs the agent.  [default: python3]"),
    ] = None,
    root: Annotated[
        Optional[str],
        typer.Option(help="Device root: agent, store, jobs, cache.  [default: ~/.edge]"),
    ] = None,
    tag: Annotated[
        Optional[List[str]],
        typer.Option(
            "--tag", help="Tag (repeatable or comma-separated); select with --to tag:NAME."
        ),
    ] = None,
    jump: Annotated[
        Optional[str],
        typer.Option(
            help="ProxyJump hops [user@]host[:port], comma-separated, as `ssh -J` "
            "(default: the ssh config's; `none` for a direct connection)."
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Change a stored device: the options not given keep their values."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a device to the fleet inventory (or, with --replace, change a stored one)."""
    inventory = Inventory.load()
    existed = name in inventory
    given: dict[str, Any] = {"host": host, "port": port, "user": user, "key": key}
    given |= {"python": python, "root": root, "tags": _split(tag) if tag else None, "jump": jump}
    fields = {k: v for k, v in given.items() if v is not None}
    if existed:  # without --replace, inventory.add refuses it and says so
        base = inventory.get(name)
    elif host is None:
        raise EdgeError(
            f"{name!r} is a new device: it needs --host.",
            f"edge fleet add {name} --host HOST (a name, address or ~/.ssh/config alias)",
        )
    else:
        base = Device(name=name)
    device = inventory.add(dataclasses.replace(base, **fields), replace=replace)
    inventory.save()
    if json_out:
        print_json(device_to_dict(device))
        return
    verb = "replaced" if existed else "added"
    typer.echo(f"{verb} {device.name} ({_login(device)}) in {inventory.path}")


@app.command("ls")
def ls(
    legacy: LegacyTargetsArg = None,
    to: Annotated[Optional[str], targets_option("every stored device")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the devices of the inventory (or the given targets)."""
    edge_quick.fleet_ls(legacy, to, json_out)


@app.command("rm")
def rm(
    names: Annotated[List[str], typer.Argument(help="Names of stored devices.")],
    json_out: JsonOpt = False,
) -> None:
    """Remove devices (none at all if a name is unknown)."""
    inventory = Inventory.load()
    names = list(dict.fromkeys(names))
    removed = [inventory.remove(name) for name in names]
    inventory.save()
    if json_out:
        print_json([device_to_dict(d) for d in removed])
        return
    for name in names:
        typer.echo(f"removed {name}")


@app.command("import")
def import_(
    file: Annotated[
        Path, typer.Argument(help="Ansible inventory: YAML, INI, JSON, or any Ansible reads.")
    ],
    replace: ReplaceOpt = False,
    vault_password_file: Annotated[
        Optional[Path],
        typer.Option(help="Vault password file, passed to ansible-inventory."),
    ] = None,
    reader: Annotated[
        str,
        typer.Option(
            help=f"{' | '.join(READERS)}: auto uses ansible-inventory where Ansible is installed."
        ),
    ] = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Import the hosts of an Ansible inventory; its groups become tags. Variables that
    edge does not apply are named in warnings."""
    result = import_inventory(file, reader, vault_password_file)
    inventory = Inventory.load()
    added, skipped = inventory.import_devices(result.devices, replace=replace)
    if added:
        inventory.save()
    if json_out:
        print_json(
            {
                "inventory": str(inventory.path),
                "added": added,
                "skipped": skipped,
                "reader": result.reader,
                "warnings": [w.to_dict() for w in result.warnings],
            }
        )
        return
    for warning in result.warnings:
        typer.echo(f"warning: {warning.text}", err=True)
    for name in added:
        typer.echo(f"added   {name}")
    for name in skipped:
        typer.echo(f"skipped {name} (already in the inventory; --replace overwrites it)")
    typer.echo(f"{len(added)} added, {len(skipped)} skipped: {inventory.path}")


@app.command("probe")
def probe(
    legacy: LegacyTargetsArg = None,
    to: Annotated[Optional[str], targets_option("all")] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="Skip the TensorRT probe (no backends column; faster)."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the agent's `info` on each device (installing it if needed); cache the facts,
    with the backends each device can run."""
    edge_quick.fleet_probe(legacy, to, quick, json_out)


@app.command("trust")
def trust(
    legacy: LegacyTargetsArg = None,
    to: Annotated[
        Optional[str], typer.Option("--to", "-t", metavar="DEVICE", help="The device to trust.")
    ] = None,
    fingerprint: Annotated[
        Optional[str],
        typer.Option(
            help="Expected SHA256:... fingerprint (read on the board); refuse any other key."
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Trust the key offered without asking (it is still shown)."
        ),
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Replace a different key already known for the device."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Record the device's current host key in the fleet's known_hosts: shown, then asked
    for (or --yes, or pinned with --fingerprint)."""
    import sys

    from edge.core.errors import DeviceError
    from edge.fleet.hostkeys import Offer
    from edge.fleet.hostkeys import trust as trust_device
    from edge.transport.hostkey_policy import fingerprint as fp_of

    def approve(offer: Offer) -> bool:
        if fingerprint or yes:
            return True
        shown = f"{offer.device}: {offer.host} offers {offer.key_type} {offer.fingerprint}"
        if offer.old:
            shown += "\n  replacing " + ", ".join(
                f"{e.key.get_name()} {fp_of(e.key)} ({e.where})" for e in offer.old
            )
        if not sys.stdin.isatty():
            raise DeviceError(
                f"{shown}\nnot trusted: no terminal to ask on.",
                "Compare the fingerprint with the board's (ssh-keygen -lf "
                "/etc/ssh/ssh_host_ed25519_key.pub on it), then run again with "
                "--fingerprint SHA256:... or --yes.",
            )
        typer.echo(shown, err=True)
        return typer.confirm("Trust this key?", default=False, err=True)

    name = pick_targets(to, legacy, None)
    if name is None or "," in name or name == "all" or name.startswith("tag:"):
        raise EdgeError(
            "fleet trust takes one device: each key is checked on its own.",
            "edge fleet trust --to NAME (see edge fleet ls)",
        )
    result = trust_device(Inventory.load().get(name), fingerprint, replace, approve)
    if json_out:
        print_json(result.to_dict())
    elif result.already_trusted:
        typer.echo(f"{name}: {result.key_type} {result.fingerprint} is already trusted")
    else:
        verb = "replaced " + ", ".join(result.replaced) + " with" if result.replaced else "trusted"
        typer.echo(
            f"{name}: {verb} {result.host} {result.key_type} {result.fingerprint} "
            f"(saved to {result.known_hosts})"
        )
