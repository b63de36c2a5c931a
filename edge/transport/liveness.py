"""Noticing a dead SSH link: a peer that has gone silent (packets black-holed, nothing
reset) is declared dead after EDGE_DEAD_LINK_SECONDS (default 30 s) without a packet.

paramiko's own keepalive (`set_keepalive`) sends requests that want no reply, and only
when nothing was written, so it never notices a silent peer. Here every connection has a
watchdog: once the link has been quiet for a sixth of the bound it asks for a reply
(`keepalive@openssh.com` with want-reply; OpenSSH answers every such request), and once
the bound passes with no packet at all it closes the connection. Closing wakes every
wait on it (channel reads, SFTP replies, window waits in `sendall`, blocked socket
writes), so each caller fails at once instead of waiting on its own timeout. The check
works the same through ProxyJump, where the "socket" is a channel of the previous hop
(each hop has its own watchdog), and through a ProxyCommand.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST

from edge.transport.banner import BannerLog
from edge.transport.deadlink import dead_link_seconds


class WatchedTransport(paramiko.Transport):
    """paramiko's Transport, which remembers when it last heard from the peer and closes
    itself after `dead_after` seconds of silence (`watch()` starts that)."""

    def __init__(self, sock: Any, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self.banner = BannerLog(self.packetizer)  # what the peer said instead, if not SSH
        self.dead_after = dead_link_seconds()
        self.last_heard = time.monotonic()
        self.dead_reason: str | None = None
        self._ping = threading.Event()
        read = self.packetizer.read_message

        def read_message() -> Any:  # every packet the peer sends, of any kind
            message = read()
            self.last_heard = time.monotonic()
            return message

        self.packetizer.read_message = read_message  # type: ignore[method-assign]

    def watch(self, label: str) -> None:
        """Start the watchdog (after authentication; connecting has its own timeouts)."""
        self.last_heard = time.monotonic()
        for target, what in ((self._watchdog, "watchdog"), (self._pinger, "ping")):
            threading.Thread(target=target, name=f"edge-{what} {label}", daemon=True).start()

    def _watchdog(self) -> None:
        every = self.dead_after / 6
        tick = min(1.0, every / 4)
        while self.is_active():
            time.sleep(tick)
            quiet = time.monotonic() - self.last_heard
            if quiet >= self.dead_after:
                self.dead_reason = f"no reply for {self.dead_after:g} s; the link is dead"
                try:  # first: this frees a writer blocked on the socket
                    self.packetizer.close()
                except (OSError, EOFError, paramiko.SSHException):
                    pass  # through ProxyJump the "socket" is a channel of a dead hop too
                self._ping.set()
                self.close()
                return
            if quiet >= every:
                self._ping.set()

    def _pinger(self) -> None:
        """Sends the requests that want a reply, from a thread of its own: a send can
        block (a full socket buffer, another writer holding the packetizer) and the
        watchdog must keep counting meanwhile."""
        every = self.dead_after / 6
        while self.is_active():
            self._ping.wait()
            self._ping.clear()
            if not self.is_active():
                return
            m = paramiko.Message()
            m.add_byte(cMSG_GLOBAL_REQUEST)
            m.add_string("keepalive@openssh.com")
            m.add_boolean(True)
            try:
                # private (not in the stubs): global_request() would wait for the reply
                self._send_user_message(m)  # type: ignore[attr-defined]
            except Exception:  # the watchdog reports the dead link
                return
            time.sleep(every)
