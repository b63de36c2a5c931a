"""The OpenSSH client config, read the way paramiko reads it: where and how to connect."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from edge.core.settings import settings

CONNECT_TIMEOUT = 15.0


@dataclass
class Endpoint:
    """Where and how to connect, after applying the OpenSSH client config."""

    alias: str
    hostname: str
    port: int = 22
    user: str = field(default_factory=getpass.getuser)
    key_files: list[str] = field(default_factory=list)
    proxy_jump: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    known_hosts_files: list[str] = field(default_factory=list)
    connect_timeout: float = CONNECT_TIMEOUT

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def ssh_config_path() -> Path:
    return settings().ssh_config or Path.home() / ".ssh" / "config"


def load_ssh_config() -> paramiko.SSHConfig:
    path = ssh_config_path()
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def resolve_endpoint(
    alias: str,
    port: int | None = None,
    user: str | None = None,
    key: str | None = None,
    config: paramiko.SSHConfig | None = None,
) -> Endpoint:
    """Apply `Host` blocks of the client config to an alias; explicit values win."""
    cfg = (config or load_ssh_config()).lookup(alias)
    jump = cfg.get("proxyjump")
    known = cfg.get("userknownhostsfile")
    return Endpoint(
        alias=alias,
        hostname=cfg.get("hostname", alias),
        port=int(port or cfg.get("port") or 22),
        user=user or cfg.get("user") or getpass.getuser(),
        key_files=[os.path.expanduser(key)]
        if key
        else [os.path.expanduser(k) for k in cfg.get("identityfile", [])],
        proxy_jump=[] if not jump or jump == "none" else [j.strip() for j in jump.split(",")],
        proxy_command=cfg.get("proxycommand") if cfg.get("proxycommand") != "none" else None,
        known_hosts_files=[os.path.expanduser(p) for p in (known.split() if known else [])],
        connect_timeout=float(cfg.get("connecttimeout", CONNECT_TIMEOUT)),
    )


def parse_hop(hop: str, config: paramiko.SSHConfig) -> Endpoint:
    """`[user@]host[:port]` of a ProxyJump list, resolved through the client config."""
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    return resolve_endpoint(host, int(port) if port else None, user or None, config=config)
