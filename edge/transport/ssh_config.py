"""The OpenSSH client config, read the way OpenSSH reads it: where and how to connect.

`ssh -G ALIAS` resolves an alias (Include, Match, the system config, every default) where
OpenSSH's client is installed; paramiko's parser (which ignores Include) is the fallback.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import paramiko

from edge.core.errors import EdgeError
from edge.core.settings import settings
from edge.transport import ssh_g_cache

CONNECT_TIMEOUT = 15.0
SSH_G_TIMEOUT = 10.0  # a `Match exec` in the config runs a command: bounded
# Offered first by both SSH paths. AES-GCM needs no separate MAC: measured here it costs
# ~35% less client CPU per byte than paramiko's default aes128-ctr + hmac-sha2-256.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
# A destination `ssh` reads as a plain host: not an option, no user@, no ssh:// URI.
_PLAIN_ALIAS = re.compile(r"[A-Za-z0-9_:\[][A-Za-z0-9_.:\[\]-]*\Z")
_TOKEN = re.compile(r"%(.)")
_log = logging.getLogger(__name__)


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

    @property
    def summary(self) -> str:
        """`user@hostname:port`, and ` via HOP,...` through a ProxyJump chain."""
        via = f" via {','.join(self.proxy_jump)}" if self.proxy_jump else ""
        return self.label + via

    def ssh_command(self, verbose: bool = False) -> str:
        """The OpenSSH command line that reaches this endpoint, from the resolved values
        (for hints: it works whatever the user's ssh would make of the alias)."""
        argv = ["ssh", "-v"] if verbose else ["ssh"]
        if settings().ssh_config:
            argv += ["-F", str(ssh_config_path())]
        if self.proxy_jump:
            argv += ["-J", ",".join(self.proxy_jump)]
        elif self.proxy_command:
            argv += ["-o", f"ProxyCommand={self.proxy_command}"]
        if self.port != 22:
            argv += ["-p", str(self.port)]
        return shlex.join([*argv, f"{self.user}@{self.hostname}"])


def ssh_config_path() -> Path:
    return settings().ssh_config or Path.home() / ".ssh" / "config"


def _expand(value: str, tokens: dict[str, str]) -> str:
    """OpenSSH's %-tokens (`%%`, `%h`, ...); unknown ones are left as they are."""
    return _TOKEN.sub(lambda m: tokens.get(m.group(1), m.group(0)), value)


def _parse_g(text: str) -> dict[str, Any]:
    """`ssh -G` output: lowercase `key value` lines; identityfile may repeat."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        if key == "identityfile":
            out.setdefault(key, []).append(value)
        else:
            out.setdefault(key, value)
    return out


class ClientConfig:
    """The user's OpenSSH client config (EDGE_SSH_CONFIG, else ~/.ssh/config).

    `lookup(alias)` gives the values the config sets for an alias, in paramiko's shape
    (identityfile a list, the rest strings; OpenSSH's built-in defaults left out), through
    `ssh -G` where it works, else paramiko's parser. Results are cached per alias and
    config file version for the life of the process.
    """

    _lock = threading.Lock()
    _defaults_lock = threading.Lock()
    _cache: dict[tuple[Any, ...], dict[str, Any]] = {}
    _defaults: dict[str, dict[str, Any]] = {}

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else ssh_config_path()
        self._paramiko: paramiko.SSHConfig | None = None

    def _config_args(self) -> list[str]:
        """-F for ssh: EDGE_SSH_CONFIG (or `none` if that file is missing); none for the
        user's own ~/.ssh/config, so ssh also reads the system config as it always does."""
        own = Path(os.path.expanduser("~" + getpass.getuser())) / ".ssh" / "config"
        if settings().ssh_config is None and self.path == own:
            return []
        return ["-F", str(self.path) if self.path.is_file() else "none"]

    def _read_files(self, args: list[str]) -> list[Path]:
        """The config files `ssh -G args` reads (before their Includes)."""
        if args:
            return [] if args[1] == "none" else [Path(args[1])]
        return [self.path, ssh_g_cache.SYSTEM_CONFIG]

    def _run_g(self, ssh: str, args: list[str], alias: str) -> dict[str, Any] | None:
        """`ssh -G`'s answer, from the disk cache when nothing it reads has changed."""
        digest = ssh_g_cache.key(ssh, args, alias, self._read_files(args))
        found = ssh_g_cache.load(digest) if digest else None
        if found is None:
            found = self._spawn_g(ssh, args, alias)
            if found is not None and digest:
                ssh_g_cache.save(digest, found)
        return found

    def _spawn_g(self, ssh: str, args: list[str], alias: str) -> dict[str, Any] | None:
        try:
            proc = subprocess.run(
                [ssh, "-G", *args, "--", alias],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=SSH_G_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            _log.debug("ssh -G %s failed: %s", alias, exc)
            return None
        if proc.returncode != 0:
            _log.debug("ssh -G %s exited %s: %s", alias, proc.returncode, proc.stderr.strip())
            return None
        return _parse_g(proc.stdout)

    def _openssh(self, alias: str) -> dict[str, Any] | None:
        """The alias through `ssh -G`, without OpenSSH's defaults; None if it cannot."""
        ssh = shutil.which("ssh")
        if ssh is None:
            _log.debug("ssh config for %s: paramiko's parser (no ssh binary on PATH)", alias)
            return None
        if not _PLAIN_ALIAS.match(alias):
            _log.debug("ssh config for %r: paramiko's parser (not a plain host name)", alias)
            return None
        with self._defaults_lock:  # once per process, not once per device thread
            if ssh not in self._defaults:
                base = self._run_g(ssh, ["-F", "none"], "edge-defaults.invalid")
                if base is None:
                    _log.debug("ssh config for %s: paramiko's parser (ssh -G fails)", alias)
                    return None
                self._defaults[ssh] = base
        got = self._run_g(ssh, self._config_args(), alias)
        if got is None:
            _log.debug("ssh config for %s: paramiko's parser (ssh -G failed)", alias)
            return None
        _log.debug("ssh config for %s: ssh -G (%s)", alias, ssh)
        return self._explicit(got, self._defaults[ssh], alias)

    @staticmethod
    def _explicit(got: dict[str, Any], base: dict[str, Any], alias: str) -> dict[str, Any]:
        """What ssh -G printed, less the compiled-in defaults (the paramiko path's shape)."""
        out: dict[str, Any] = {"hostname": got.get("hostname", alias)}
        if got.get("port"):
            out["port"] = got["port"]
        for key in ("user", "identityfile", "userknownhostsfile"):
            if got.get(key) and got.get(key) != base.get(key):
                out[key] = got[key]
        for key in ("proxyjump", "proxycommand", "connecttimeout"):
            if got.get(key) and got[key] != "none":
                out[key] = got[key]
        user = out.get("user") or getpass.getuser()
        home = os.path.expanduser("~")
        tokens = {"%": "%", "h": out["hostname"], "n": alias, "p": out.get("port", "22")}
        tokens.update(r=user, u=getpass.getuser(), d=home, i=str(os.getuid()))
        tokens.update(L=socket.gethostname().split(".")[0], l=socket.gethostname())
        if "identityfile" in out:
            out["identityfile"] = [_expand(k, tokens) for k in out["identityfile"]]
        if "proxycommand" in out:
            out["proxycommand"] = _expand(out["proxycommand"], tokens)
        return out

    def _paramiko_lookup(self, alias: str) -> dict[str, Any]:
        import paramiko  # only here: the system ssh reads the config everywhere else

        if self._paramiko is None:
            try:
                self._paramiko = (
                    paramiko.SSHConfig.from_path(str(self.path))
                    if self.path.is_file()
                    else paramiko.SSHConfig()
                )
            except (OSError, paramiko.ssh_exception.ConfigParseError) as exc:
                raise EdgeError(
                    f"cannot read the SSH client config {self.path}: {exc}",
                    "Fix the file (ssh -G HOST shows how OpenSSH reads it), "
                    "or point EDGE_SSH_CONFIG at another one.",
                ) from None
        return dict(self._paramiko.lookup(alias))

    def lookup(self, alias: str) -> dict[str, Any]:
        """The values the config gives `alias` (hostname always; the rest where set)."""
        key = (alias, *ssh_g_cache.stamp(str(self.path)), shutil.which("ssh"))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return dict(hit)
        found = self._openssh(alias)
        if found is None:
            found = self._paramiko_lookup(alias)
        with self._lock:
            self._cache[key] = found
        return dict(found)


class ConfigSource(Protocol):
    """What resolves an alias: a ClientConfig, or a paramiko.SSHConfig (tests, hops)."""

    def lookup(self, alias: str) -> Mapping[str, Any]: ...


def load_ssh_config() -> ClientConfig:
    """The user's client config (see ClientConfig)."""
    return ClientConfig()


def resolve_endpoint(
    alias: str,
    port: int | None = None,
    user: str | None = None,
    key: str | None = None,
    config: ConfigSource | None = None,
    jump: str | None = None,
) -> Endpoint:
    """Apply the client config to an alias; explicit values (the inventory's) win. `jump`
    is a ProxyJump list (`[user@]host[:port],...`, or `none`) that replaces the config's."""
    cfg = (config or load_ssh_config()).lookup(alias)
    jump = jump or cfg.get("proxyjump")
    hops = [] if not jump or jump == "none" else [j.strip() for j in jump.split(",")]
    known = cfg.get("userknownhostsfile")
    command = cfg.get("proxycommand")
    timeout = cfg.get("connecttimeout")
    return Endpoint(
        alias=alias,
        hostname=cfg.get("hostname", alias),
        port=int(port or cfg.get("port") or 22),
        user=user or cfg.get("user") or getpass.getuser(),
        key_files=[os.path.expanduser(key)]
        if key
        else [os.path.expanduser(k) for k in cfg.get("identityfile", [])],
        proxy_jump=hops,  # OpenSSH: ProxyJump and ProxyCommand exclude each other
        proxy_command=command if command and command != "none" and not hops else None,
        known_hosts_files=[os.path.expanduser(p) for p in (known.split() if known else [])],
        connect_timeout=float(timeout) if timeout and timeout != "none" else CONNECT_TIMEOUT,
    )


def parse_hop(hop: str, config: ConfigSource | None = None) -> Endpoint:
    """`[user@]host[:port]` of a ProxyJump list, resolved through the client config."""
    user, _, rest = hop.rpartition("@")
    host, _, port = rest.partition(":")
    return resolve_endpoint(host, int(port) if port else None, user or None, config=config)
