"""The host's `EDGE_*` environment variables: one typed, validated, documented place.

`settings()` reads the environment on every call (cheap: the parse of a given set of raw
values is cached), so a variable changed between calls takes effect. A bad value is an
`EdgeError` naming the variable, the value and what is accepted. The README's table is
`markdown_table()` (`python -m edge.core.settings` prints it; a test keeps the two in step).
The device agent reads its one variable, EDGE_AGENT_ROOT, itself (it is not the host).
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

from edge.core.errors import EdgeError

_FLAGS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


class _Bad(ValueError):
    """A value a parser refuses; the message says what is accepted."""


def _path(value: str) -> Path:
    return Path(value).expanduser()


def _text(value: str) -> str:
    return value


def _flag(value: str) -> bool:
    try:
        return _FLAGS[value.strip().lower()]
    except KeyError:
        raise _Bad("expected 1 or 0 (also true/false, yes/no, on/off)") from None


def _seconds(value: str) -> float:
    accepted = "expected a number of seconds greater than 0, e.g. 30"
    try:
        seconds = float(value)
    except ValueError:
        raise _Bad(accepted) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise _Bad(accepted)
    return seconds


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    accepted = (
        f"expected a whole number from {low} to {high}"
        if high is not None
        else f"expected a whole number, {low} or more"
    )

    def parse(value: str) -> int:
        text = value.strip()
        if not text.isdigit():  # no sign, no point, no exponent
            raise _Bad(accepted)
        number = int(text)
        if number < low or (high is not None and number > high):
            raise _Bad(accepted)
        return number

    return parse


def _names(value: str) -> Tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise _Bad("expected comma-separated cipher names, e.g. aes128-ctr,aes256-ctr")
    return names


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip().lower()
        if text not in allowed:
            raise _Bad("expected one of " + ", ".join(allowed))
        return text

    return parse


def _var(env: str, default: Any, parse: Callable[[str], Any], shown: str, doc: str) -> Any:
    """A Settings field read from `env`: its parser, its default as the README shows it,
    and its one-line meaning."""
    return field(default=default, metadata={"env": env, "parse": parse, "shown": shown, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """Every host `EDGE_*` variable, parsed. An unset or empty variable has its default."""

    home: Optional[Path] = _var(
        "EDGE_HOME",
        None,
        _path,
        "the platform's user dirs",
        "Moves all host state: data, cache, config and the run history.",
    )
    fleet: Optional[Path] = _var(
        "EDGE_FLEET",
        None,
        _path,
        "`./fleet.yaml`, else the config dir's",
        "The fleet inventory file.",
    )
    ssh_config: Optional[Path] = _var(
        "EDGE_SSH_CONFIG",
        None,
        _path,
        "`~/.ssh/config`",
        "The SSH client config (aliases, ProxyJump, IdentityFile).",
    )
    known_hosts: Optional[Path] = _var(
        "EDGE_KNOWN_HOSTS",
        None,
        _path,
        "the config dir's `known_hosts`",
        "The fleet's own known_hosts, written by `edge fleet trust`.",
    )
    local_root: Optional[Path] = _var(
        "EDGE_LOCAL_ROOT",
        None,
        _path,
        "`local-device` in the data dir",
        "The device root of the built-in `local` device.",
    )
    local_python: str = _var(
        "EDGE_LOCAL_PYTHON",
        sys.executable,
        _text,
        "the Python running `edge`",
        "The Python the `local` device's agent runs under (3.8+ with numpy).",
    )
    recipes: Optional[Path] = _var(
        "EDGE_RECIPES",
        None,
        _path,
        "the built-in ones (`edge/recipes/builtin/`)",
        "The directory of named recipes.",
    )
    debug: bool = _var(
        "EDGE_DEBUG", False, _flag, "0", "1: debug logging, with the traceback of a user error."
    )
    trace: bool = _var(
        "EDGE_TRACE",
        False,
        _flag,
        "0",
        "1: log where a command spends its time (connect, plan, upload, commit).",
    )
    push_channels: Optional[int] = _var(
        "EDGE_PUSH_CHANNELS",
        None,
        _whole(1, 64),
        "by the round trip (one per 7 ms, up to 8), out of 8 shared when several devices "
        "push at once; 4 on the SFTP path",
        "Channels (streams) per device for a push (1 to 64).",
    )
    push_eager: int = _var(
        "EDGE_PUSH_EAGER",
        1 << 20,
        _whole(0, 4 << 20),
        "1048576 (1 MiB)",
        "Bytes of a push's largest file sent with its plan request, before the device "
        "answers (kept where it lacks the file; else dropped, so a re-push sends them for "
        "nothing); 0: none, as on a metered link.",
    )
    push_via: str = _var(
        "EDGE_PUSH_VIA",
        "auto",
        _choice("auto", "openssh", "paramiko", "sftp"),
        "`auto`: the system `ssh` where it connects, else paramiko",
        "How a push's bytes travel: one framed stream per channel into the agent, over "
        "OpenSSH or paramiko; `sftp`: paramiko SFTP writes (the older path).",
    )
    ssh_ciphers: Optional[Tuple[str, ...]] = _var(
        "EDGE_SSH_CIPHERS",
        None,
        _names,
        "AES-GCM first (measured cheapest for paramiko)",
        "Ciphers to offer first, comma-separated; unknown names are ignored.",
    )
    ssh_banner_timeout: float = _var(
        "EDGE_SSH_BANNER_TIMEOUT",
        10.0,
        _seconds,
        "10",
        "Seconds to wait for a host's SSH banner (a port that answers but stays silent).",
    )
    # the heartbeat rule: `follow` heartbeats every 5 s, 30 s of silence is a dead link
    dead_link_seconds: float = _var(
        "EDGE_DEAD_LINK_SECONDS",
        30.0,
        _seconds,
        "30",
        "Seconds an SSH link may stay silent before it is declared dead.",
    )
    reconnect_tries: int = _var(
        "EDGE_RECONNECT_TRIES",
        8,
        _whole(0),
        "8",
        "Reconnects while following a job before the host gives up (the job goes on).",
    )


SETTINGS_FIELDS = tuple(fields(Settings))
VARIABLES = tuple(f.metadata["env"] for f in SETTINGS_FIELDS)


def _shown(value: str) -> str:
    return value if len(value) <= 60 else value[:57] + "..."


@lru_cache(maxsize=16)
def _parse(raw: Tuple[Optional[str], ...]) -> Settings:
    values: dict[str, Any] = {}
    for f, value in zip(SETTINGS_FIELDS, raw):
        if not value:
            continue
        try:
            values[f.name] = f.metadata["parse"](value)
        except _Bad as exc:
            env = f.metadata["env"]
            raise EdgeError(
                f"{env}={_shown(value)}: {exc}",
                f"Fix {env}, or unset it for the default ({f.metadata['shown'].replace('`', '')}).",
            ) from None
    return Settings(**values)


def settings() -> Settings:
    """The host settings from the environment as it is now; EdgeError on a bad value."""
    return _parse(tuple(os.environ.get(name) for name in VARIABLES))


def markdown_table() -> str:
    """The README's table of variables: name, default, meaning."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    rows += [
        f"| `{f.metadata['env']}` | {f.metadata['shown']} | {f.metadata['doc']} |"
        for f in SETTINGS_FIELDS
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
