"""What a peer said instead of an SSH banner: a host that answers TCP but runs no sshd
there (an HTTP server, a serial bridge, a silent listener) becomes one user error.

paramiko reads the banner line by line through `Packetizer.readline`; `BannerLog` wraps
that one method of one connection and remembers what came, so the error can say "it sent
"HTTP/1.1 400 Bad Request"" rather than "Error reading SSH protocol banner".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge.core.settings import Settings, settings
from edge.transport.base import TransportError

if TYPE_CHECKING:
    from edge.transport.ssh_config import Endpoint

# seconds for the first banner line (sshd sends it at once); EDGE_SSH_BANNER_TIMEOUT's default
BANNER_TIMEOUT: float = Settings().ssh_banner_timeout
_SHOWN = 60  # characters of a foreign first line shown in the error


def banner_timeout() -> float:
    """Seconds to wait for a banner line: EDGE_SSH_BANNER_TIMEOUT, else BANNER_TIMEOUT."""
    return float(settings().ssh_banner_timeout)


def quiet_paramiko() -> None:
    """paramiko logs a failed connection's traceback from its transport thread; with no
    handler of its own, Python's last-resort handler prints it on stderr. Our errors say
    what failed, so its records go nowhere unless the CLI routes them (EDGE_DEBUG=1)."""
    log = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


class BannerLog:
    """The lines one connection read before its SSH banner, and how reading ended."""

    def __init__(self, packetizer: Any) -> None:
        self.lines: list[str] = []
        self.banner: str | None = None  # the peer's "SSH-2.0-..." line, once read
        self.ended: str | None = None  # "eof" | "timeout" | "binary"
        self.timeout = 0.0
        readline = packetizer.readline

        def read_line(timeout: float) -> str:
            # paramiko reads the banner, and only the banner, through readline: capping its
            # wait here makes EDGE_SSH_BANNER_TIMEOUT hold whatever the caller asked for
            timeout = min(timeout, banner_timeout())
            self.timeout = max(self.timeout, timeout)
            try:
                line: str = readline(timeout)
            except EOFError:
                self.ended = "eof"
                raise
            except TimeoutError:  # socket.timeout
                self.ended = "timeout"
                raise
            except UnicodeDecodeError:
                self.ended = "binary"
                raise
            if line.startswith("SSH-"):
                self.banner = line
            else:
                self.lines.append(line)
            return line

        packetizer.readline = read_line

    def not_ssh(self) -> str | None:
        """Why the peer is not an SSH server (a short reason), or None if it sent an SSH
        banner (then a failure is SSH's own: key exchange, authentication)."""
        if self.banner is not None:
            return None
        said = next((line.strip() for line in self.lines if line.strip()), "")
        if said:
            shown = said if len(said) <= _SHOWN else said[:_SHOWN] + "..."
            return f'it sent "{shown}" instead of an SSH banner'
        if self.ended == "binary":
            return "it sent binary data instead of an SSH banner"
        if self.ended == "eof":
            return "it closed the connection without sending an SSH banner"
        wait = self.timeout or banner_timeout()
        return f"it sent no SSH banner within {wait:g} s"


def connect_error(
    device: str, ep: Endpoint, hop: str | None, answered: Any, exc: BaseException
) -> TransportError:
    """The user error for a connection that failed before authentication: the host is
    unreachable (`answered` is None: no TCP connection), it answered TCP but not with SSH
    (`answered`, the transport, has a BannerLog that says why), or SSH itself failed."""
    where = f"{device}{': jump host ' + hop if hop else ''}"
    ssh_cmd = f"ssh -v -p {ep.port} {ep.user}@{ep.hostname}"
    log = getattr(answered, "banner", None)
    reason = log.not_ssh() if isinstance(log, BannerLog) else None
    if reason is not None:
        via = f" (through ProxyCommand {ep.proxy_command})" if ep.proxy_command else ""
        return TransportError(
            f"{where} ({ep.hostname}:{ep.port}) answered, but not with SSH: {reason}{via}",
            f"Check the port ({ep.port}) and that sshd runs there; `{ssh_cmd}` shows what answers.",
        )
    if answered is None:
        return TransportError(
            f"{where}: unreachable ({ep.label}): {exc or type(exc).__name__}",
            f"Check that the board is on and reachable: ssh -p {ep.port} {ep.user}@{ep.hostname}",
        )
    return TransportError(
        f"{where}: SSH with {ep.label} failed: {exc or type(exc).__name__}",
        f"See what the server offers: {ssh_cmd}",
    )
