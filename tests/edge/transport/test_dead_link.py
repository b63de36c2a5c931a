"""Dead links over real sshd: a link that goes silent (packets black-holed, nothing reset)
is noticed within the bound (EDGE_DEAD_LINK_SECONDS, default 30 s), named in the error,
and the next push resumes; SIGUSR1 makes a blocked `edge` write its thread stacks.

The silence comes from tests/tcpproxy.py's `blackhole()`: the proxy stops reading and
forwarding, so nothing ever comes back and the client's writes block once buffers fill.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import edge_bin
from sshfleet import SshFleet, SshServer
from tcpproxy import TcpProxy

import edge.ops.push
import edge.ops.push_stream
from edge.agent.sessions import open_client
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.ops.push import make_payload, push_to
from edge.transport import TransportError
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import resolve_endpoint

FAST_BOUND = 5  # EDGE_DEAD_LINK_SECONDS for the tests that only need some bound


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def proxied_known_hosts(server: SshServer, proxy: TcpProxy, path: Path, extra: str = "") -> Path:
    """A known_hosts that names the server by the proxy's address."""
    path.write_text(server.known_hosts_line("127.0.0.1", proxy.port) + "\n" + extra)
    return path


@pytest.fixture
def proxy(ssh_env: SshFleet) -> Iterator[TcpProxy]:
    with TcpProxy(ssh_env["d1"].host, ssh_env["d1"].port) as p:
        yield p


@pytest.fixture
def wifi(
    ssh_env: SshFleet,
    proxy: TcpProxy,
    tmp_path: Path,
    device_python: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Device:
    """d1 behind the proxy, registered in a fresh inventory."""
    known = proxied_known_hosts(ssh_env["d1"], proxy, tmp_path / "known_hosts")
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(known))
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    device = Device(
        name="wifi",
        host="127.0.0.1",
        port=proxy.port,
        key=str(ssh_env.client_key_path),
        python=str(device_python),
        root=str(tmp_path / "roots" / "wifi"),
    )
    inv = Inventory.load()
    inv.add(device)
    inv.save()
    return device


@pytest.fixture
def big_model(tmp_path: Path, tiny_model: Path) -> Path:
    """The tiny SavedModel plus a 24 MiB random asset, so transfers take a while."""
    import shutil

    model = tmp_path / "big model"
    shutil.copytree(tiny_model, model)
    (model / "assets").mkdir(exist_ok=True)
    (model / "assets" / "blob.bin").write_bytes(np.random.default_rng(7).bytes(24 << 20))
    return model


def in_thread(fn: Callable[[], object]) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # the test inspects it
            box["error"] = exc
        box["at"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.timeout(240)
def test_cli_push_on_a_black_holed_link_dumps_stacks_fails_in_30s_then_resumes(
    wifi: Device, proxy: TcpProxy, tmp_path: Path, big_model: Path
) -> None:
    """The real default bound (30 s), end to end: `edge push` stalls on a silent link,
    SIGUSR1 writes its thread stacks under EDGE_HOME, the push fails naming the device,
    and the next push sends only what the device lacks (one channel: resumed by size)."""
    home = tmp_path / "home"
    env = dict(
        os.environ,
        EDGE_HOME=str(home),
        EDGE_PUSH_CHANNELS="1",
        COLUMNS="200",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    env.pop("EDGE_DEAD_LINK_SECONDS", None)
    proxy.delay_ms = 10  # ~50 MB/s through sshd's 2 MiB window: time to cut in the middle
    argv = [edge_bin(), "push", str(big_model), "--to", "wifi", "--json"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        wait_for(
            lambda: proxy.bytes_up > 8 << 20 or proc.poll() is not None, 120, "the upload to start"
        )
        proxy.blackhole()
        silent_at = time.monotonic()
        assert proc.poll() is None, proc.communicate()
        time.sleep(2.0)
        proc.send_signal(signal.SIGUSR1)
        stacks = home / "data" / f"stacks-{proc.pid}.log"
        wait_for(
            lambda: stacks.is_file() and "File" in stacks.read_text(), 10, f"{stacks} to be written"
        )
        time.sleep(0.5)
        text = stacks.read_text()
        assert "send_streams" in text and "push_to" in text  # where the push was blocked
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - silent_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    assert 25 < took < 42, f"the dead link was noticed after {took:.0f}s"
    (row,) = json.loads(out)
    assert row["status"] == "failed" and row["error"].startswith("wifi: ")
    assert "no reply" in row["error"] and "30 s" in row["error"], row["error"]
    assert "resume" in row["hint"]
    proxy.heal()
    proxy.delay_ms = 0
    again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert again.returncode == 0, again.stdout
    (row,) = json.loads(again.stdout)
    total = sum(p.stat().st_size for p in big_model.rglob("*") if p.is_file())
    assert 0 < row["bytes_sent"] < total and row["bytes_skipped"] + row["bytes_sent"] == total
    assert tree_hashes(Path(row["model_path"])) == tree_hashes(big_model)


@pytest.mark.timeout(180)
def test_ranged_push_on_a_black_holed_link_fails_within_the_bound_then_resumes_by_range(
    wifi: Device, proxy: TcpProxy, big_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_DEAD_LINK_SECONDS", str(FAST_BOUND))
    monkeypatch.setattr(edge.ops.push_stream, "RANGE_BYTES", 2 << 20)  # many ranges, each
    monkeypatch.setattr(edge.ops.push_stream, "RECORD_EVERY_S", 0.0)  # recorded on arrival
    payload = make_payload(big_model)
    total = payload.manifest.total_bytes()
    store = Path(wifi.root) / "store"
    silent: dict[str, float] = {}

    def recorded() -> int:
        """Bytes the device's range records hold as sent."""
        return sum(
            b - a
            for rec in store.glob("*.partial.ranges")
            for a, b in json.loads(rec.read_text() or '{"done": []}')["done"]
        )

    class GoSilent:
        sent = 0

        def start(self, device: str, total_bytes: int) -> None: ...

        def advance(self, device: str, nbytes: int) -> None:
            self.sent += nbytes  # mid-file, once some finished range is on record
            if self.sent > 10 << 20 and not silent and recorded():
                proxy.blackhole()
                silent["at"] = time.monotonic()

        def finish(self, device: str, ok: bool) -> None: ...

    with open_client(wifi) as client:
        client.ensure_agent()
        thread, box = in_thread(lambda: push_to(client, payload, GoSilent()))
        thread.join(FAST_BOUND * 6)
        assert not thread.is_alive(), "the push still waits on the dead link"
    assert silent, "the link never went silent"
    took = box["at"] - silent["at"]
    assert isinstance(box.get("error"), TransportError), box
    message = box["error"].message
    assert message.startswith("wifi: ") and f"no reply for {FAST_BOUND} s" in message, message
    assert FAST_BOUND * 0.6 < took < FAST_BOUND * 2 + 2, f"noticed after {took:.1f}s"
    kept = recorded()
    assert 0 < kept < 24 << 20
    proxy.heal()
    with open_client(wifi) as client:
        result = push_to(client, payload)
    assert 0 < result.bytes_sent <= total - kept  # the recorded ranges were not sent again
    assert result.bytes_skipped + result.bytes_sent == total
    assert tree_hashes(Path(result.model_path)) == tree_hashes(big_model)


def fail_time(
    transport: SSHTransport, proxy: TcpProxy, call: Callable[[], object], silence_after: float = 1.0
) -> tuple[float, BaseException | None]:
    """Run `call`, black-hole the link `silence_after` s later; seconds until it failed."""
    transport.connect()
    thread, box = in_thread(call)
    time.sleep(silence_after)
    proxy.blackhole()
    at = time.monotonic()
    thread.join(FAST_BOUND * 6)
    assert not thread.is_alive(), "still waiting on the dead link"
    return box["at"] - at, box.get("error")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["command", "stdin"])
def test_a_command_on_a_black_holed_link_fails_within_the_bound(
    wifi: Device, proxy: TcpProxy, tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` without a timeout, waiting for a quiet command or blocked sending stdin."""
    monkeypatch.setenv("EDGE_DEAD_LINK_SECONDS", str(FAST_BOUND))
    ep = resolve_endpoint("127.0.0.1", port=proxy.port, key=wifi.key)
    with SSHTransport("wifi", ep, Path(os.environ["EDGE_KNOWN_HOSTS"])) as t:
        if case == "command":
            took, exc = fail_time(t, proxy, lambda: t.run(["sleep", "120"]))
        else:  # far more than the windows and socket buffers hold
            took, exc = fail_time(
                t, proxy, lambda: t.run(["sleep", "120"], input=os.urandom(64 << 20)), 0.5
            )
    assert isinstance(exc, TransportError), exc
    assert exc.message.startswith("wifi: ") and "no reply" in exc.message, exc.message
    assert took < FAST_BOUND * 2 + 2, f"noticed after {took:.1f}s"


@pytest.mark.timeout(120)
def test_a_black_holed_proxyjump_hop_fails_within_the_bound(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ProxyJump the inner connection runs over a channel of the bastion's: when
    the link to the bastion goes silent, both notice, and the command fails."""
    monkeypatch.setenv("EDGE_DEAD_LINK_SECONDS", str(FAST_BOUND))
    bastion, dj = ssh_env["bastion"], ssh_env["dj"]
    with TcpProxy(bastion.host, bastion.port) as proxy:
        known = proxied_known_hosts(
            bastion, proxy, tmp_path / "known_hosts", dj.known_hosts_line() + "\n"
        )
        config = tmp_path / "ssh_config"
        common = (
            f"    User {dj.user}\n    IdentityFile {ssh_env.client_key_path}\n"
            f"    IdentitiesOnly yes\n    UserKnownHostsFile {known}\n"
        )
        config.write_text(
            f"Host hop\n    HostName 127.0.0.1\n    Port {proxy.port}\n{common}"
            f"Host inner\n    HostName {dj.host}\n    Port {dj.port}\n{common}"
            "    ProxyJump hop\n"
        )
        monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
        with SSHTransport("inner", resolve_endpoint("inner"), known) as t:
            assert t.run(["true"], timeout=30).ok
            took, exc = fail_time(t, proxy, lambda: t.run(["sleep", "120"]))
    assert isinstance(exc, TransportError), exc
    assert exc.message.startswith("inner: ") and "no reply" in exc.message, exc.message
    assert took < FAST_BOUND * 2 + 2, f"noticed after {took:.1f}s"
