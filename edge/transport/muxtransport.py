"""MuxTransport: a transport whose commands ride the multiplexer (`mux`) while one runs.
Apart from `mux`, so that asking whether one runs costs no paramiko import; a MuxTransport
imports paramiko only when it connects directly (file transfers, no multiplexer), which
spares a warm command paramiko's ~0.1 s import."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Generator, Sequence
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.core.errors import EdgeError
from edge.transport import mux
from edge.transport.base import (
    CommandResult,
    HostKeyError,
    ParamikoFiles,
    Stream,
    TransportError,
)
from edge.transport.ssh_config import Endpoint


class MuxTransport(ParamikoFiles):
    """A transport whose commands go through the multiplexer's warm connection; file
    transfers use a direct (paramiko) connection of its own, and so does everything once
    the multiplexer is found gone, stuck or refused."""

    def __init__(
        self, device_name: str, endpoint: Endpoint, fleet_known_hosts: Path | None = None
    ) -> None:
        super().__init__(device_name, endpoint, fleet_known_hosts)
        self.direct = False

    def _go_direct(self) -> None:
        self.direct = True
        mux.forget()

    def _open(self, req: dict[str, Any]) -> socket.socket | None:
        """A connection to the multiplexer with `req` sent on it; None (and direct from
        now on) when there is no usable multiplexer, so nothing was sent."""
        if self.direct:
            return None
        req.update(
            device=self.device_name,
            endpoint=asdict(self.endpoint),
            known_hosts=str(self.fleet_known_hosts) if self.fleet_known_hosts else None,
        )
        try:
            sock = mux.connect()
        except (mux.NotRunning, EdgeError):
            self._go_direct()
            return None
        try:
            mux.send(sock, req)
        except OSError:  # it went away before it had the whole request
            sock.close()
            self._go_direct()
            return None
        return sock

    def _replies(self, sock: socket.socket) -> Generator[dict[str, Any], None, None]:
        with sock, sock.makefile("rb") as replies:
            while True:
                try:
                    raw = replies.readline()
                except TimeoutError as exc:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: the connection multiplexer sent nothing for "
                        f"{mux.READ_TIMEOUT:.0f}s; it looks stuck",
                        "Later commands connect directly. Restart it: edge mux stop; "
                        "edge mux start (or kill its process).",
                    ) from exc
                except OSError as exc:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: lost the connection multiplexer: {exc}"
                    ) from exc
                if not raw:
                    self._go_direct()
                    raise TransportError(
                        f"{self.device_name}: the connection multiplexer went away mid-command",
                        "Run it again: commands connect directly while it is gone "
                        "(edge mux start brings it back).",
                    )
                reply = json.loads(raw)
                if "beat" in reply:
                    continue
                if "error" in reply:
                    cls = HostKeyError if reply.get("kind") == "hostkey" else TransportError
                    raise cls(reply["error"], reply.get("hint"))
                yield reply
                if "end" in reply or "exit" in reply or "reply" in reply:
                    return

    def _one(self, sock: socket.socket) -> dict[str, Any]:
        with closing(self._replies(sock)) as replies:
            return next(replies)

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        sock = self._open(
            {
                "op": "run",
                "argv": list(argv),
                "timeout": timeout,
                "stdin": base64.b64encode(input).decode() if input else None,
            }
        )
        if sock is None:
            return self.paramiko().run(argv, input=input, timeout=timeout)
        reply = self._one(sock)
        return CommandResult(list(argv), reply["exit"], reply["stdout"], reply["stderr"])

    def serve_request(
        self, server_argv: Sequence[str], line: str, timeout: float | None = None
    ) -> str:
        """One request line to a server process the multiplexer keeps on the device
        (started with `server_argv` on first use); returns its reply line. Without a
        multiplexer, a TransportError: the caller runs the command the usual way."""
        sock = self._open(
            {"op": "serve", "argv": list(server_argv), "line": line, "timeout": timeout}
        )
        if sock is None:
            raise TransportError(f"{self.device_name}: no connection multiplexer")
        return str(self._one(sock)["reply"])

    def stream(
        self, argv: Sequence[str], idle_timeout: float | None = None
    ) -> Generator[str, None, None]:
        sock = self._open({"op": "stream", "argv": list(argv), "idle_timeout": idle_timeout})
        if sock is None:
            yield from self.paramiko().stream(argv, idle_timeout=idle_timeout)
            return
        with closing(self._replies(sock)) as replies:
            for reply in replies:
                if "line" in reply:
                    yield reply["line"]

    def open_stream(self, argv: Sequence[str]) -> Stream:
        return self.paramiko().open_stream(argv)
