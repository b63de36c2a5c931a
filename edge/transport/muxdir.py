"""Where the multiplexer's socket lives, and the checks that keep other local users out.

The socket sits in a private per-user directory, next to a start record that `edge mux
start` (the server itself) writes. Like OpenSSH's ControlPath checks, a directory, socket
or record that is a symlink, is not the user's own, or has group or other bits set is
refused; a connection is used only when the peer (SO_PEERCRED) is the user's uid and the
recorded server pid. A socket that merely exists is never used.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
from pathlib import Path
from typing import Any

from edge.core.errors import EdgeError
from edge.core.paths import cache_dir, edge_home

SOCKET = "mux.sock"
RECORD = "mux.json"
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with its NUL


class UnsafeMuxPath(EdgeError):
    """The multiplexer's directory, socket, record or peer is not this user's own."""


def runtime_dir() -> Path:
    """The private directory for the socket: $EDGE_HOME/mux (which moves every host file,
    tests use it), else $XDG_RUNTIME_DIR/edge when that directory is safe, else a
    directory under the user's cache dir. Never a predictable shared /tmp path."""
    home = edge_home()
    if home:
        return home / "mux"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and _problem(Path(xdg), _lstat(Path(xdg)), "directory") is None:
        return Path(xdg) / "edge"
    return cache_dir() / "mux"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


_KINDS = {"directory": stat.S_ISDIR, "socket": stat.S_ISSOCK, "start record": stat.S_ISREG}


def _problem(path: Path, st: os.stat_result | None, what: str) -> str | None:
    """Why `path` is not safe to use as this user's private `what`; None if it is."""
    uid = os.getuid()
    if st is None:
        return "does not exist"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not _KINDS[what](st.st_mode):
        return f"is not a {what}"
    if st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not to you (uid {uid})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}: group or others can reach it"
    return None


def require_private(path: Path, what: str) -> bool:
    """False when `path` does not exist; True when it is this user's private `what`.
    Raises UnsafeMuxPath otherwise."""
    st = _lstat(path)
    if st is None:
        return False
    problem = _problem(path, st, what)
    if problem is None:
        return True
    if problem.startswith("has mode"):
        hint = f"Make it private: chmod {'700' if what == 'directory' else '600'} {path}"
    else:
        hint = (
            f"Another local user may be trying to intercept your SSH sessions. Remove it "
            f"(as its owner or root: rm -rf {path}), or point EDGE_HOME or "
            "XDG_RUNTIME_DIR at a directory only you can use; then run edge mux start."
        )
    raise UnsafeMuxPath(f"refusing the multiplexer {what} {path}: it {problem}", hint)


def private_dir(create: bool = False) -> Path | None:
    """The checked runtime directory (created 0700 when `create`); None if it does not
    exist. Raises UnsafeMuxPath when it is not private."""
    d = runtime_dir()
    if create and not os.path.lexists(d):
        d.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
    if not require_private(d, "directory"):
        return None
    if len(os.fsencode(d / SOCKET)) > MAX_SOCKET_PATH:
        raise UnsafeMuxPath(
            f"the multiplexer socket path {d / SOCKET} is too long for a Unix socket",
            "Set EDGE_HOME to a shorter directory.",
        )
    return d


def write_record(d: Path, data: dict[str, Any]) -> None:
    """Write the start record atomically, 0600, never through a symlink."""
    tmp = d / f".{RECORD}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, d / RECORD)


def read_record(d: Path) -> dict[str, Any] | None:
    """The start record in the checked directory `d`, or None when there is none (or it
    does not name a server of this uid). Raises UnsafeMuxPath for a record not ours."""
    path = d / RECORD
    if not require_private(path, "start record"):
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(data, dict)
        or data.get("uid") != os.getuid()
        or not isinstance(data.get("pid"), int)
        or data["pid"] <= 0
    ):
        return None
    return data


def remove_record(d: Path, pid: int) -> None:
    """Remove the start record if it is still the one process `pid` wrote."""
    try:
        if json.loads((d / RECORD).read_text()).get("pid") == pid:
            (d / RECORD).unlink()
    except (OSError, ValueError, AttributeError):
        pass


def peer_credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        raise UnsafeMuxPath(
            "cannot check who is at the other end of the multiplexer socket on this system",
            "Run without the multiplexer: edge mux stop",
        )
    pid, uid, _gid = struct.unpack(
        "3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i"))
    )
    return pid, uid


def require_peer(sock: socket.socket, path: Path, pid: int | None) -> None:
    """Refuse a server at `path` that is not of this uid (or not the recorded `pid`)."""
    peer_pid, peer_uid = peer_credentials(sock)
    if peer_uid != os.getuid():
        raise UnsafeMuxPath(
            f"refusing the multiplexer at {path}: the server there runs as "
            f"uid {peer_uid}, not as you (uid {os.getuid()})",
            "Another local user may be trying to intercept your SSH sessions."
            " Stop it and run edge mux start again.",
        )
    if pid is not None and peer_pid != pid:
        raise UnsafeMuxPath(
            f"refusing the multiplexer at {path}: the server there is pid "
            f"{peer_pid}, not the one `edge mux start` recorded ({pid})",
            "Run edge mux stop; edge mux start.",
        )
