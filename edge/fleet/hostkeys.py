"""Trusting a device's SSH host key: shown, approved, then recorded in the fleet's known_hosts.

A changed key is replaced only on request, and the file is rewritten atomically (a
temporary file in its directory, fsync, rename) with its other lines and comments intact.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from device_agent.durable import atomic_write
from device_agent.protocol_core import SUCCEEDED, DeviceResult
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.fleet.inventory import known_hosts_path
from edge.transport.hostkey_policy import fingerprint, host_key_name, load_known_hosts
from edge.transport.known_hosts import Entry, KnownHosts, matches
from edge.transport.ssh import scan_host_key

BOARD_HINT = "read it on the board: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub"


@dataclass
class TrustResult(DeviceResult):
    host: str = ""
    key_type: str = ""
    fingerprint: str = ""
    already_trusted: bool = False
    known_hosts: str = ""
    replaced: list[str] = field(default_factory=list)  # fingerprints of the keys it replaced


@dataclass
class Offer:
    """The key a device offers, next to the keys known_hosts holds for its name."""

    device: str
    host: str
    key: paramiko.PKey
    known_hosts: Path
    old: list[Entry]  # trusted for `host` but not this key: it replaces them

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key)

    @property
    def key_type(self) -> str:
        return self.key.get_name()


def _old_keys(entries: list[Entry]) -> str:
    return ", ".join(f"{e.key.get_name()} {fingerprint(e.key)} ({e.where})" for e in entries)


def _normal(expected: str) -> str:
    value = expected.strip().rstrip("=")
    if not value.startswith("SHA256:"):
        raise DeviceError(
            f"--fingerprint {expected!r} is not a SHA256:... fingerprint.",
            f"Give the SHA256 form; {BOARD_HINT}",
        )
    return value


def trust(
    device: Device,
    expected: str | None = None,
    replace: bool = False,
    approve: Callable[[Offer], bool] | None = None,
) -> TrustResult:
    """Read the key the device offers (its jump hosts checked as for any connection) and
    record it. `expected` (a SHA256:... fingerprint read off the board) refuses any other
    key; a key that replaces known ones needs `replace`; `approve` sees the offer last and
    may decline it."""
    if device.is_local:
        raise DeviceError("`local` needs no host key.", "Trust SSH devices only.")
    path = known_hosts_path()
    ep = device.endpoint()
    name = host_key_name(ep.hostname, ep.port)
    known = load_known_hosts(ep, path)
    key = scan_host_key(ep, device.name, path, prefer=known.key_types(name))
    fp = fingerprint(key)
    revoked = known.revoked_entry(key)
    if revoked is not None:
        raise DeviceError(
            f"{device.name}: {name} offers {key.get_name()} {fp}, which is REVOKED at "
            f"{revoked.where}; not trusted.",
            "A revoked key is never trusted: find out who answers at that address.",
        )
    trusted = known.trusted(name)
    result = TrustResult(
        device.name,
        SUCCEEDED,
        host=name,
        key_type=key.get_name(),
        fingerprint=fp,
        known_hosts=str(path),
    )
    if expected is not None and _normal(expected) != fp:
        raise DeviceError(
            f"{device.name}: {name} offers {key.get_name()} {fp}, not the expected "
            f"{expected}; not trusted.",
            f"Compare again: {BOARD_HINT}",
        )
    if any(e.key == key for e in trusted):
        result.already_trusted = True
        return result
    offer = Offer(device.name, name, key, path, trusted)
    if trusted and not replace:
        raise DeviceError(
            f"{device.name}: HOST KEY CHANGED for {name}: it offers {key.get_name()} {fp}; "
            f"known_hosts has {_old_keys(trusted)}. Not trusted: this can be an attack.",
            "If the board was reflashed, check the new key on the board "
            "(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then run again with --replace.",
        )
    elsewhere = [e for e in trusted if e.path != str(path)]
    if elsewhere:
        raise DeviceError(
            f"{device.name}: the old key of {name} is in {_old_keys(elsewhere)}, which edge "
            "does not edit; not trusted.",
            f"Remove it there (ssh-keygen -R '{name}' -f FILE), then run this again.",
        )
    if approve is not None and not approve(offer):
        raise DeviceError(f"{device.name}: {key.get_name()} {fp} not trusted (declined).")
    result.replaced = [fingerprint(e.key) for e in trusted]
    record(offer)
    return result


def _edited_line(line: str, entry: Entry, host: str) -> str | None:
    """`line` (the entry's) without `host` among its names; None drops the whole line."""
    if entry.names.startswith("|1|"):
        return None  # a hashed name stands for one host: this one
    names = [n for n in entry.names.split(",") if n.lower() != host.lower()]
    if names and matches(",".join(names), host):
        raise DeviceError(
            f"{entry.where} trusts {host} through the pattern {entry.names!r}; edge does not "
            "rewrite patterns, so its old key cannot be replaced here.",
            f"Edit {entry.where} by hand (take {host} out of that pattern), then run again.",
        )
    # the names field is the line's first: its first occurrence
    return line.replace(entry.names, ",".join(names), 1) if names else None


def record(offer: Offer) -> None:
    """Write the offered key to the fleet's known_hosts, in place of `offer.old`: under a
    lock, after checking that the file still holds what was shown, atomically."""
    path = Path(os.path.realpath(offer.known_hosts))  # a symlink stays one
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = KnownHosts.load([str(path)], warn=False).trusted(offer.host)
        shown = {(e.lineno, fingerprint(e.key)) for e in offer.old if e.path == str(path)}
        if {(e.lineno, fingerprint(e.key)) for e in now} != shown:
            raise DeviceError(
                f"{path} changed while {offer.device}'s key was being trusted.",
                "Run the command again.",
            )
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        for entry in now:
            edited = _edited_line(lines[entry.lineno - 1], entry, offer.host)
            lines[entry.lineno - 1] = "" if edited is None else edited
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(f"{offer.host} {offer.key.get_name()} {offer.key.get_base64()}\n")
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o600
        atomic_write(str(path), "".join(lines), mode)
    finally:
        os.close(lock)  # releases the lock
