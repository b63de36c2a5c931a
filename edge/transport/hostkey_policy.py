"""Host-key policy for SSH connections: never trust silently, refuse revoked keys."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import paramiko

from edge.transport.base import HostKeyError as HostKeyError  # raised here, defined apart
from edge.transport.known_hosts import KnownHosts
from edge.transport.ssh_config import Endpoint


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_key_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Never trust silently: an unknown or revoked key stops the connection and is reported."""

    def __init__(self, device: str, known: KnownHosts, hop: str | None = None) -> None:
        self.device = device
        self.known = known
        self.hop = hop  # the jump host's alias when this connection is a ProxyJump hop
        self.seen: paramiko.PKey | None = None

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        self.seen = key
        refuse_revoked(self.device, self.known, hostname, key)
        if self.hop:
            hint = (
                f"{hostname} is the jump host {self.hop} on the way to {self.device}. If "
                f"that fingerprint is its key, trust it: edge fleet add {self.hop} "
                f"--host {self.hop}, then edge fleet trust --to {self.hop}"
            )
        else:
            hint = (
                "If that fingerprint is the device's, trust it with: "
                f"edge fleet trust --to {self.device}"
            )
        raise HostKeyError(
            f"{self.device}: unknown host key for {hostname} "
            f"({key.get_name()} {fingerprint(key)}); refusing to connect.",
            hint,
        )


def refuse_revoked(device: str, known: KnownHosts, hostname: str, key: paramiko.PKey) -> None:
    """Raise HostKeyError if a `@revoked` line lists the key `hostname` offered."""
    entry = known.revoked_entry(key)
    if entry is not None:
        raise HostKeyError(
            f"{device}: the host key {hostname} offered ({key.get_name()} {fingerprint(key)}) "
            f"is REVOKED at {entry.where}; refusing to connect.",
            "A revoked key is never accepted: find out who answers at that address. If the "
            f"board got a new key, check it on the board, then: edge fleet trust --to {device}",
        )


def _known_hosts_files(ep: Endpoint, fleet_known_hosts: Path | None) -> list[str]:
    files = list(ep.known_hosts_files) or [str(Path.home() / ".ssh" / "known_hosts")]
    if fleet_known_hosts:
        files.append(str(fleet_known_hosts))
    return [f for f in dict.fromkeys(files) if os.path.isfile(f)]


def load_known_hosts(ep: Endpoint, fleet_known_hosts: Path | None) -> KnownHosts:
    """What a connection to `ep` trusts: the user's known_hosts files (ssh config
    UserKnownHostsFile, else ~/.ssh/known_hosts), then the fleet's."""
    return KnownHosts.load(_known_hosts_files(ep, fleet_known_hosts))
