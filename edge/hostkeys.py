"""Trusting a device's SSH host key: shown, then recorded in the fleet's known_hosts."""

from __future__ import annotations

from dataclasses import dataclass

import paramiko

from device_agent.protocol import JsonMixin

from .devices import Device
from .errors import DeviceError
from .fleet import known_hosts_path
from .transport.ssh import fingerprint, host_key_name, resolve_endpoint, scan_host_key


@dataclass
class TrustResult(JsonMixin):
    device: str
    status: str
    host: str = ""
    key_type: str = ""
    fingerprint: str = ""
    already_trusted: bool = False
    known_hosts: str = ""
    error: str | None = None
    hint: str | None = None


def trust(device: Device, expected: str | None = None) -> TrustResult:
    """Read the key the device offers and record it. With `expected` (a SHA256:...
    fingerprint read off the board), a different key is refused."""
    if device.is_local:
        raise DeviceError("`local` needs no host key.", "Trust SSH devices only.")
    assert device.host is not None
    ep = resolve_endpoint(device.host, device.port, device.user, device.key)
    key = scan_host_key(ep, device.name)
    fp = fingerprint(key)
    if expected and expected != fp:
        raise DeviceError(
            f"{device.name}: the device offers {fp}, not the expected {expected}; not trusted.",
            "Read the fingerprint on the board (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)"
            " and compare.",
        )
    path = known_hosts_path()
    name = host_key_name(ep.hostname, ep.port)
    keys = paramiko.HostKeys()
    if path.is_file():
        keys.load(str(path))
    existing = keys.lookup(name) or {}
    result = TrustResult(device.name, "succeeded", name, key.get_name(), fp,
                         known_hosts=str(path))
    if key.get_name() in existing and existing[key.get_name()] == key:
        result.already_trusted = True
        return result
    keys.add(name, key.get_name(), key)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys.save(str(path))
    return result
