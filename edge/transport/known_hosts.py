"""known_hosts files read the way OpenSSH reads them (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT).

paramiko's own reader crashes on `@cert-authority` and `@revoked` lines and on bad base64,
and knows neither wildcards nor negated patterns. This one handles plain, comma-separated,
wildcard (`*`, `?`), negated (`!`) and hashed (`|1|salt|hmac`) names, `[host]:port`,
comments and blank lines; it warns (once, naming file:line) about a line it cannot use and
moves on. A key under `@revoked` is refused for every host. `@cert-authority` lines are
skipped with a warning: paramiko cannot verify a host certificate's CA signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import paramiko
from paramiko.pkey import UnknownKeyType

from edge.transport.base import TransportError

REVOKED = "@revoked"
CERT_AUTHORITY = "@cert-authority"
_HASH_MAGIC = "|1|"
_REAL_TYPE_PREFIXES = ("ssh-", "sk-", "ecdsa-", "rsa-")

_warned: set[str] = set()
_lock = threading.Lock()
# path -> ((inode, size, mtime_ns), entries, warnings): parsed once per file version
_cache: dict[str, tuple[tuple[int, int, int], list[Entry], list[str]]] = {}


def _warn_once(message: str) -> None:
    with _lock:
        if message in _warned:
            return
        _warned.add(message)
    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()


def _pattern_re(pattern: str) -> re.Pattern[str]:
    """OpenSSH's match_pattern: `*` and `?` only, the whole name, case-insensitive."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def _hashed_match(name: str, host: str) -> bool:
    """`|1|base64(salt)|base64(HMAC-SHA1(salt, host))`, as `ssh-keygen -H` writes it."""
    salt_b64, _, digest_b64 = name[len(_HASH_MAGIC) :].partition("|")
    salt = base64.b64decode(salt_b64)
    digest = base64.b64decode(digest_b64)
    expected = hmac.new(salt, host.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(expected, digest)


def _valid_hashed(name: str) -> bool:
    salt_b64, sep, digest_b64 = name[len(_HASH_MAGIC) :].partition("|")
    try:
        salt = base64.b64decode(salt_b64, validate=True)
        digest = base64.b64decode(digest_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    return bool(sep) and len(salt) == len(digest) == hashlib.sha1().digest_size


def matches(patterns: str, host: str) -> bool:
    """Whether `host` (`name` or `[name]:port`) matches a known_hosts names field: one
    hashed name, or comma-separated patterns where a matching `!pattern` vetoes."""
    if patterns.startswith(_HASH_MAGIC):
        return _hashed_match(patterns, host)
    found = False
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern and _pattern_re(pattern).fullmatch(host):
            if negated:
                return False
            found = True
    return found


@dataclass(frozen=True, eq=False)
class Entry:
    """One usable line: its names field, key and marker ("" or "@revoked")."""

    path: str
    lineno: int
    names: str
    key: paramiko.PKey
    marker: str = ""

    @property
    def where(self) -> str:
        return f"{self.path}:{self.lineno}"

    def matches(self, host: str) -> bool:
        return matches(self.names, host)


def _parse_key(key_type: str, blob: str) -> paramiko.PKey | None:
    """The key of a line; None for a type paramiko does not know (e.g. sk-... keys)."""
    try:
        data = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"the key is not base64 ({exc})") from exc
    try:
        return paramiko.PKey.from_type_string(key_type, data)
    except UnknownKeyType:
        if key_type.startswith(_REAL_TYPE_PREFIXES):
            return None  # a real OpenSSH type (ssh-dss, sk-..., certs) paramiko cannot use
        raise ValueError(f"unknown key type {key_type!r}") from None
    except Exception as exc:  # noqa: BLE001 - paramiko raises many types on a bad blob
        raise ValueError(f"the {key_type} key does not parse ({type(exc).__name__})") from exc


def _parse_line(path: str, lineno: int, line: str) -> Entry | None:
    """An Entry, None for a line with nothing to use; ValueError says what is wrong."""
    fields = line.split()
    marker = ""
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker == CERT_AUTHORITY:
            raise ValueError(
                "@cert-authority lines are not supported (paramiko cannot verify "
                "host certificates); skipped, so its hosts need their own keys"
            )
        if marker != REVOKED:
            raise ValueError(f"unknown marker {marker!r}")
    if len(fields) < 3:
        raise ValueError("expected [marker] names key-type base64-key [comment]")
    names, key_type, blob = fields[:3]
    if names.startswith(_HASH_MAGIC) and not _valid_hashed(names):
        raise ValueError("a hashed name must be |1|base64(20-byte salt)|base64(20-byte hmac)")
    key = _parse_key(key_type, blob)
    return None if key is None else Entry(path, lineno, names, key, marker)


def _parse_file(path: str) -> tuple[list[Entry], list[str]]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            sig = (st.st_ino, st.st_size, st.st_mtime_ns)
            with _lock:
                cached = _cache.get(path)
            if cached and cached[0] == sig:
                return cached[1], cached[2]
            raw = f.read()
    except OSError as exc:
        raise TransportError(
            f"cannot read the known_hosts file {path}: {exc.strerror or exc}",
            "Fix its permissions or remove it.",
        ) from exc
    entries: list[Entry] = []
    warnings: list[str] = []
    for lineno, text in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        line = text.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = _parse_line(path, lineno, line)
        except ValueError as exc:
            warnings.append(f"{path}:{lineno}: {exc}")
            continue
        if entry is not None:
            entries.append(entry)
    with _lock:
        _cache[path] = (sig, entries, warnings)
    return entries, warnings


@dataclass
class KnownHosts:
    """The lines of several known_hosts files, in order: trusted entries and revoked keys."""

    entries: list[Entry] = field(default_factory=list)
    revoked: list[Entry] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Iterable[str], warn: bool = True) -> KnownHosts:
        """Parse the files (a missing file counts as empty; an unreadable one is an
        error); lines that cannot be used are reported once on stderr."""
        known = cls()
        for path in paths:
            if not os.path.lexists(path):
                continue
            entries, warnings = _parse_file(path)
            for entry in entries:
                (known.revoked if entry.marker == REVOKED else known.entries).append(entry)
            if warn:
                for message in warnings:
                    _warn_once(message)
        return known

    def revoked_entry(self, key: paramiko.PKey) -> Entry | None:
        """The first `@revoked` line that lists this key (whatever its host patterns)."""
        return next((e for e in self.revoked if e.key == key), None)

    def trusted(self, host: str) -> list[Entry]:
        """The entries whose names match `host`, minus revoked keys."""
        return [e for e in self.entries if e.matches(host) and self.revoked_entry(e.key) is None]

    def install(self, client: paramiko.SSHClient, host: str) -> None:
        """Give paramiko the trusted keys of `host` under that exact name: one per key type
        (paramiko holds no more), the first line winning, as its type is preferred."""
        keys = client.get_host_keys()
        seen: set[str] = set()
        for entry in self.trusted(host):
            if entry.key.get_name() not in seen:
                seen.add(entry.key.get_name())
                keys.add(host, entry.key.get_name(), entry.key)

    def key_types(self, host: str) -> Sequence[str]:
        """Key types trusted for `host`, in file order, without repeats."""
        return list(dict.fromkeys(e.key.get_name() for e in self.trusted(host)))
