"""A lab of test devices: one network namespace, veth pair and real sshd per device.

Device N is `bN`: namespace `edge-bN`, host side `veth-bN-h` 10.77.N.1/30, namespace side
`veth-bN-n` 10.77.N.2/30, and OpenSSH sshd on 10.77.N.2:22 with its own host key, logging
in as root with the lab's client key. Links can be rate-limited with `tc tbf` on both
ends, and latency added with the userspace delay proxy (delay.py). `Lab` stops everything
it started on normal exit, on exceptions, and on SIGINT/SIGTERM/SIGHUP.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from . import sshd
from .procs import MARK_VAR, kill_marked, pids_with_cmdline, sh, terminate
from .sshd import keygen

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 15.0
NS_PREFIX = "edge-b"
# tbf on veth: the bucket must hold a few GSO segments, or TCP never fills the link.
# burst 64 KiB, 50 ms queue: raw TCP measured 95.7% of 100 Mbit/s here (the header
# ceiling is 1448/1514 = 95.6% of the frame rate; the bucket adds a little).
TBF_BURST = "64kb"
TBF_LATENCY = "50ms"
SSHD_SETTINGS = {  # on top of sshd.BASE_SETTINGS
    "MaxStartups": "200:30:400",
    "ClientAliveInterval": "15",
    "ClientAliveCountMax": "3",
    "PrintLastLog": "no",
    "LogLevel": "ERROR",
    # A board's stock ~/.bashrc returns at once in a non-interactive shell; this machine's
    # root runs `pyenv init` there (~90 ms of CPU), which bash sources for every command
    # run over ssh. At SHLVL 1 bash takes the session's shell for a nested one and skips
    # it, so an exec (edge, rsync, Ansible) costs what it costs on a board; scp's SFTP
    # subsystem never starts a shell.
    "SetEnv": "SHLVL=1",
}


class NotRoot(SystemExit):
    """Raised (exit status 0) when the harness is not run as root."""


def require_root() -> None:
    """Exit cleanly, saying why, unless running as root."""
    if os.geteuid() != 0:
        print("the harness needs root (network namespaces); run it as root", file=sys.stderr)
        raise NotRoot(0)


@dataclass
class Device:
    """One test device: its namespace, addresses, sshd and directories."""

    index: int
    dir: Path
    host_key_pub: str = ""
    sshd: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"b{self.index}"

    @property
    def ns(self) -> str:
        return f"{NS_PREFIX}{self.index}"

    @property
    def host_if(self) -> str:
        return f"veth-b{self.index}-h"

    @property
    def ns_if(self) -> str:
        return f"veth-b{self.index}-n"

    @property
    def host_addr(self) -> str:
        return f"10.77.{self.index}.1"

    @property
    def addr(self) -> str:
        return f"10.77.{self.index}.2"

    @property
    def edge_root(self) -> Path:
        """Device root for edge (agent, store)."""
        return self.dir / "edge-root"

    @property
    def dest(self) -> Path:
        """Where the baselines copy to."""
        return self.dir / "dest"


class Lab:
    """`n` devices in namespaces with sshd; client key, known_hosts and ssh_config."""

    def __init__(self, n: int, base_dir: Path | None = None, verbose: bool = True) -> None:
        if not 1 <= n <= 250:
            raise ValueError("1..250 devices")
        self.run_id = uuid.uuid4().hex
        self.base = Path(base_dir or tempfile.mkdtemp(prefix="edge-netlab-")).resolve()
        self.devices = [Device(i, self.base / "devices" / f"b{i}") for i in range(1, n + 1)]
        self.client_key = self.base / "client_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.ssh_config = self.base / "ssh_config"
        self.verbose = verbose
        self.rate_mbit: float | None = None
        self._proxy: subprocess.Popen | None = None
        self._old_handlers: dict[int, Any] = {}
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for anything the lab or the harness starts (carries the run mark)."""
        return {**os.environ, MARK_VAR: self.run_id, **extra}

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[netlab] {msg}", file=sys.stderr, flush=True)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    def start(self) -> None:
        """Create every namespace, link and sshd; all-or-nothing."""
        require_root()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            os.environ[MARK_VAR] = self.run_id  # inherited by every child
            remove_stale()
            self.base.mkdir(parents=True, exist_ok=True)
            keygen(self.client_key, "edge-netlab-client")
            (self.base / "authorized_keys").write_text(
                self.client_key.with_suffix(".pub").read_text()
            )
            t0 = time.monotonic()
            for dev in self.devices:
                self._create(dev)
            for dev in self.devices:
                self._wait_greets(dev)
            self.write_client_files()
            self._log(
                f"{len(self.devices)} devices up in {time.monotonic() - t0:.1f}s under {self.base}"
            )
        except BaseException:
            self.close()
            raise

    def _create(self, dev: Device) -> None:
        dev.dir.mkdir(parents=True, exist_ok=True)
        dev.edge_root.mkdir(exist_ok=True)
        dev.dest.mkdir(exist_ok=True)
        sh("ip", "netns", "add", dev.ns)
        sh("ip", "link", "add", dev.host_if, "type", "veth", "peer", "name", dev.ns_if)
        sh("ip", "link", "set", dev.ns_if, "netns", dev.ns)
        sh("ip", "addr", "add", f"{dev.host_addr}/30", "dev", dev.host_if)
        sh("ip", "link", "set", dev.host_if, "up")
        sh("ip", "-n", dev.ns, "addr", "add", f"{dev.addr}/30", "dev", dev.ns_if)
        sh("ip", "-n", dev.ns, "link", "set", dev.ns_if, "up")
        sh("ip", "-n", dev.ns, "link", "set", "lo", "up")
        key = dev.dir / "ssh_host_ed25519_key"
        keygen(key, f"{dev.name}-host")
        dev.host_key_pub = key.with_suffix(".pub").read_text().strip()
        cfg = dev.dir / "sshd_config"
        sshd.write_config(
            cfg,
            f"{dev.addr}:22",
            key,
            dev.dir / "sshd.pid",
            self.base / "authorized_keys",
            **SSHD_SETTINGS,
        )
        dev.sshd = sshd.spawn(
            cfg, dev.dir / "sshd.log", SSHD, prefix=("ip", "netns", "exec", dev.ns), env=self.env()
        )

    def _wait_greets(self, dev: Device) -> None:
        assert dev.sshd is not None
        sshd.wait_greets(dev.sshd, dev.name, dev.addr, 22, dev.dir / "sshd.log", START_TIMEOUT_S)

    def close(self) -> None:
        """Stop proxies, tools and sshd; delete namespaces, veths, qdiscs and files."""
        if self._closed:
            return
        self._closed = True
        for sig in self._old_handlers:  # finish teardown even if Ctrl-C is pressed again
            signal.signal(sig, signal.SIG_IGN)
        try:
            self.stop_delay()
            # Tools (marked), then ssh masters and anything else naming the lab's files...
            killed = kill_marked(self.run_id)
            stray = pids_with_cmdline(str(self.base))
            terminate(stray)
            # ...then every process in the namespaces: sshd, its sessions, their commands.
            in_ns = [
                int(p)
                for dev in self.devices
                for p in sh("ip", "netns", "pids", dev.ns, check=False).stdout.split()
            ]
            terminate(in_ns)
            killed += len(stray) + len(in_ns)
            for dev in self.devices:
                if dev.sshd is not None:
                    if dev.sshd.poll() is None:
                        terminate([dev.sshd.pid])
                    dev.sshd.wait(5)
                sh("ip", "link", "del", dev.host_if, check=False)  # its peer and qdiscs too
                sh("ip", "netns", "del", dev.ns, check=False)
            shutil.rmtree(self.base, ignore_errors=True)
            self._log(
                f"torn down ({killed} processes stopped, {len(self.devices)} namespaces deleted)"
            )
        finally:
            for sig, handler in self._old_handlers.items():
                signal.signal(sig, handler)
            os.environ.pop(MARK_VAR, None)

    # ------------------------------------------------------------------ client side

    def write_client_files(
        self, via: dict[str, int] | None = None, path: Path | None = None
    ) -> Path:
        """Write known_hosts and an OpenSSH client config (Host bN ...); devices named in
        `via` are reached through 127.0.0.1:<port> (the delay proxy)."""
        via = via or {}
        lines, blocks = [], []
        for dev in self.devices:
            keytype, blob = dev.host_key_pub.split()[:2]
            lines.append(f"{dev.addr} {keytype} {blob}")
            host, port = dev.addr, 22
            if dev.name in via:
                host, port = "127.0.0.1", via[dev.name]
                lines.append(f"[{host}]:{port} {keytype} {blob}")
            blocks.append(
                f"Host {dev.name}\n    HostName {host}\n    Port {port}\n    User root\n"
                f"    IdentityFile {self.client_key}\n    IdentitiesOnly yes\n"
                f"    UserKnownHostsFile {self.known_hosts}\n"
                f"    StrictHostKeyChecking yes\n    BatchMode yes\n    LogLevel ERROR\n"
            )
        with open(self.known_hosts, "a" if via else "w") as f:
            f.write("\n".join(lines) + "\n")
        path = path or self.ssh_config
        path.write_text("\n".join(blocks))
        return path

    def ssh_argv(self, config: Path | None = None) -> list[str]:
        """`ssh -F <lab config>`: prefix for scp/ssh/rsync -e."""
        return ["ssh", "-F", str(config or self.ssh_config)]

    # ------------------------------------------------------------------ links

    def shape(self, rate_mbit: float | None, devices: Sequence[Device] | None = None) -> None:
        """Cap both directions of each link at `rate_mbit` with tbf (None removes it)."""
        for dev in devices or self.devices:
            for prefix, ifname in (([], dev.host_if), (["-n", dev.ns], dev.ns_if)):
                if rate_mbit is None:
                    sh("tc", *prefix, "qdisc", "del", "dev", ifname, "root", check=False)
                else:
                    sh(
                        "tc",
                        *prefix,
                        "qdisc",
                        "replace",
                        "dev",
                        ifname,
                        "root",
                        "tbf",
                        "rate",
                        f"{rate_mbit}mbit",
                        "burst",
                        TBF_BURST,
                        "latency",
                        TBF_LATENCY,
                    )
        self.rate_mbit = rate_mbit

    def delay(self, delay_ms: float, devices: Sequence[Device]) -> Path:
        """Start the delay proxy (`delay_ms` each way) for `devices`; returns an ssh config
        that reaches them through it (the others stay direct)."""
        self.stop_delay()
        argv = [sys.executable, "-m", "netlab.delay", "--delay-ms", str(delay_ms)]
        for dev in devices:
            argv += ["--to", f"{dev.addr}:22"]
        self._proxy = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=self.env(),
            start_new_session=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert self._proxy.stdout is not None
        ports = json.loads(self._proxy.stdout.readline())["ports"]
        via = {dev.name: port for dev, port in zip(devices, ports)}
        return self.write_client_files(via, self.base / f"ssh_config.delay{delay_ms:g}ms")

    def stop_delay(self) -> None:
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            terminate([proxy.pid])
            proxy.wait(5)

    # ------------------------------------------------------------------ devices

    def reset(self, devices: Sequence[Device] | None = None, keep_agent: bool = True) -> None:
        """Empty each device's baseline destination and edge root (the next push is cold).
        The installed edge agent stays unless `keep_agent` is false: scp, rsync and
        Ansible's Python are on the device before their runs too."""
        for dev in devices or self.devices:
            for d in (dev.edge_root, dev.dest):
                if d == dev.edge_root and keep_agent and d.is_dir():
                    for child in d.iterdir():
                        if child.name != "agent":
                            shutil.rmtree(child, ignore_errors=True)
                    continue
                shutil.rmtree(d, ignore_errors=True)
                d.mkdir(parents=True)


def remove_stale() -> None:
    """Delete namespaces and veths named like ours that an earlier, killed run left."""
    out = sh("ip", "netns", "list", check=False).stdout
    for name in re.findall(rf"^({NS_PREFIX}\d+)\b", out, flags=re.M):
        pids = [int(p) for p in sh("ip", "netns", "pids", name, check=False).stdout.split()]
        terminate(pids)
        idx = name[len(NS_PREFIX) :]
        sh("ip", "link", "del", f"veth-b{idx}-h", check=False)
        sh("ip", "netns", "del", name, check=False)
