"""Real OpenSSH `sshd` servers for the lab and the tests' fleet (tests/sshfleet.py): host
keys, the config, the start in the foreground and the wait for its greeting. Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .procs import sh

# Public-key logins only, no PAM, no DNS; sftp in-process. Callers add their own limits.
BASE_SETTINGS = {
    "UsePAM": "no",
    "StrictModes": "no",
    "PasswordAuthentication": "no",
    "KbdInteractiveAuthentication": "no",
    "PubkeyAuthentication": "yes",
    "PermitRootLogin": "prohibit-password",
    "Subsystem": "sftp internal-sftp",
    "MaxSessions": "64",
    "UseDNS": "no",
    "PrintMotd": "no",
}


def find_sshd() -> str | None:
    """The OpenSSH server binary, or None when it is not installed."""
    if os.access("/usr/sbin/sshd", os.X_OK):
        return "/usr/sbin/sshd"
    return shutil.which("sshd")


def keygen(path: Path, comment: str) -> None:
    """Write an ed25519 keypair at `path` and `path`.pub (no passphrase)."""
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    path.chmod(0o600)


def write_config(
    path: Path, listen: str, host_key: Path, pid_file: Path, authorized_keys: Path, **settings: str
) -> None:
    """Write an sshd_config: BASE_SETTINGS with `settings` added or overriding them."""
    lines = [
        f"ListenAddress {listen}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
    ]
    lines += [f"{k} {v}" for k, v in {**BASE_SETTINGS, **settings}.items()]
    path.write_text("\n".join(lines) + "\n")


def spawn(
    config: Path,
    log_path: Path,
    sshd: str | None = None,
    prefix: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `sshd -D -e -f config` (after `prefix`, e.g. `ip netns exec NS`), in its own
    session, logging to `log_path`."""
    sshd = sshd or find_sshd()
    if sshd is None:
        raise RuntimeError("OpenSSH server (sshd) is not installed")
    if os.geteuid() == 0:  # its privilege-separation directory
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*prefix, sshd, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=env,
        )


def greets(host: str, port: int) -> bool:
    """True when something on `host`:`port` answers with an SSH banner."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as s:
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def wait_greets(
    proc: subprocess.Popen[bytes], name: str, host: str, port: int, log_path: Path, timeout: float
) -> None:
    """Wait until `proc` greets on `host`:`port`; RuntimeError (with the log's tail) when
    it exits first or is still silent after `timeout` seconds (it is left running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd {name} exited at start:\n{log_tail(log_path)}")
        if greets(host, port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"sshd {name} did not listen in {timeout}s:\n{log_tail(log_path)}")


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log, or "(no log)"."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
