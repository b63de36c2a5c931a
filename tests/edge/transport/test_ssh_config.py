"""The OpenSSH client config read as OpenSSH reads it: `ssh -G` (Include, defaults mapped
to the paramiko path's meaning, a cache, no option injection), paramiko as the fallback,
the resolved endpoint in `fleet ls`, and a real connection to an alias only an Included
file defines (the real sshd fleet, tests/sshfleet.py)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import edge_bin
from sshfleet import SshFleet

from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory
from edge.transport import ssh_config
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import ClientConfig, resolve_endpoint

LOG = "edge.transport.ssh_config"
PATH = os.environ["PATH"]


@pytest.fixture(autouse=True)
def _openssh_client() -> None:
    if shutil.which("ssh") is None:
        pytest.fail("OpenSSH client not installed: apt-get install openssh-client", pytrace=False)


def write_include_config(tmp_path: Path) -> Path:
    """`config` includes conf.d/*.conf, where alias `jet` is defined. The Include path is
    absolute: OpenSSH reads a relative one under ~/.ssh, which a test must not touch."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "jet.conf").write_text(
        "Host jet\n    HostName 10.1.2.3\n    Port 2222\n    User nvidia\n"
        "    ProxyJump bastion,ops@b2:2200\n    IdentityFile ~/.ssh/jet_%h\n"
        "    ConnectTimeout 7\n"
        f"    UserKnownHostsFile {tmp_path}/kh1 {tmp_path}/kh2\n"
    )
    config = tmp_path / "config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\n\nHost plain\n    Port 2200\n")
    return config


def no_ssh_path(tmp_path: Path) -> str:
    """A PATH with every tool of this one but `ssh`: the paramiko fallback."""
    bin_dir = tmp_path / "bin-without-ssh"
    bin_dir.mkdir(exist_ok=True)
    return str(bin_dir)


def test_include_is_read_through_ssh_g(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_include_config(tmp_path)
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    caplog.set_level(logging.DEBUG, logger=LOG)
    ep = resolve_endpoint("jet")
    assert (ep.hostname, ep.port, ep.user) == ("10.1.2.3", 2222, "nvidia")
    assert ep.proxy_jump == ["bastion", "ops@b2:2200"] and ep.proxy_command is None
    assert ep.key_files == [os.path.expanduser("~/.ssh/jet_10.1.2.3")]  # %h expanded
    assert ep.known_hosts_files == [f"{tmp_path}/kh1", f"{tmp_path}/kh2"]
    assert ep.connect_timeout == 7.0
    assert "ssh config for jet: ssh -G" in caplog.text
    assert ep.summary == "nvidia@10.1.2.3:2222 via bastion,ops@b2:2200"
    # the hint's ssh command is built from these values, not from the alias
    assert ep.ssh_command() == f"ssh -F {config} -J bastion,ops@b2:2200 -p 2222 nvidia@10.1.2.3"
    assert ep.ssh_command(verbose=True).startswith(f"ssh -v -F {config} -J ")
    # paramiko alone does not read Include: the alias falls through to itself
    monkeypatch.setenv("PATH", no_ssh_path(tmp_path))
    assert resolve_endpoint("jet").hostname == "jet"


def test_openssh_defaults_mean_what_the_paramiko_path_means(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For an alias the config says little about, `ssh -G`'s defaults (its default key
    list, known_hosts pair, `connecttimeout none`, port 22, the local user) give the
    Endpoint paramiko gives; and the inventory's own values win over the config's."""
    config = write_include_config(tmp_path)
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    via_ssh = [resolve_endpoint(a) for a in ("plain", "10.9.8.7", "unknown-alias")]
    monkeypatch.setenv("PATH", no_ssh_path(tmp_path))
    via_paramiko = [resolve_endpoint(a) for a in ("plain", "10.9.8.7", "unknown-alias")]
    assert via_ssh == via_paramiko
    assert via_ssh[0].port == 2200 and via_ssh[0].key_files == []
    monkeypatch.setenv("PATH", PATH)
    ep = resolve_endpoint("jet", port=22, user="root2", key="/k/id", jump="none")
    assert (ep.hostname, ep.port, ep.user, ep.key_files) == ("10.1.2.3", 22, "root2", ["/k/id"])
    assert ep.proxy_jump == []
    assert resolve_endpoint("jet", jump="other:2022").proxy_jump == ["other:2022"]


def test_paramiko_fallback_without_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "Host nano\n    HostName 192.168.5.5\n    Port 2022\n    User jetson\n"
        "    ProxyJump gw\n    IdentityFile ~/.ssh/nano\n"
    )
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    monkeypatch.setenv("PATH", no_ssh_path(tmp_path))
    caplog.set_level(logging.DEBUG, logger=LOG)
    ep = resolve_endpoint("nano")
    assert (ep.hostname, ep.port, ep.user, ep.proxy_jump) == ("192.168.5.5", 2022, "jetson", ["gw"])
    assert ep.key_files == [os.path.expanduser("~/.ssh/nano")]
    assert "paramiko's parser (no ssh binary on PATH)" in caplog.text
    # a config ssh -G refuses (a bad option) also falls back, and says so
    monkeypatch.setenv("PATH", PATH)
    config.write_text(config.read_text() + "    NoSuchOption yes\n")
    caplog.clear()
    assert resolve_endpoint("nano").hostname == "192.168.5.5"
    assert "ssh -G nano exited 255" in caplog.text and "paramiko's parser" in caplog.text


@pytest.mark.parametrize("alias", ["-oHostName=evil.example", "-F/dev/null", "x y", "u@h"])
def test_hostile_alias_is_never_an_ssh_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alias: str
) -> None:
    config = tmp_path / "config"
    config.write_text("Host *\n    User from-config\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    calls: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv: list[str], *args: object, **kwargs: object) -> object:
        calls.append(list(argv))
        return real_run(argv, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(ssh_config.subprocess, "run", spy)
    ep = resolve_endpoint(alias)
    assert ep.hostname != "evil.example"
    assert not any(alias in argv for argv in calls), calls  # never handed to ssh
    for argv in calls:  # and whatever ssh gets, the host comes after `--`
        assert argv[-2] == "--"


def test_ssh_g_is_cached_per_alias_and_config_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[str]
) -> None:
    config = write_include_config(tmp_path)
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    calls = spawned
    for _ in range(5):
        assert resolve_endpoint("jet").port == 2222
        assert ClientConfig().lookup("jet")["hostname"] == "10.1.2.3"
    assert calls.count("jet") == 1
    text = config.read_text().replace("Port 2200", "Port 2201")
    config.write_text(text)
    os.utime(config, ns=(1, 1))  # a new version, whatever the clock's resolution
    assert resolve_endpoint("plain").port == 2201
    assert resolve_endpoint("jet").port == 2222 and calls.count("jet") == 2


def test_fleet_ls_shows_the_resolved_endpoint(tmp_path: Path) -> None:
    config = write_include_config(tmp_path)
    env = dict(
        os.environ,
        EDGE_SSH_CONFIG=str(config),
        EDGE_FLEET=str(tmp_path / "fleet.yaml"),
        COLUMNS="80",
    )
    inv = Inventory.load(tmp_path / "fleet.yaml")
    inv.add(Device(name="orin", host="jet"))
    inv.add(Device(name="nano", host="plain", user="ubuntu", jump="gw"))
    inv.save()
    proc = subprocess.run(
        [edge_bin(), "fleet", "ls"], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    lines = [ln.strip("│ ") for ln in proc.stdout.splitlines()]
    row = next(i for i, ln in enumerate(lines) if ln.startswith("orin "))
    assert "nvidia@10.1.2.3:2222" in lines[row], proc.stdout
    assert "via bastion,ops@b2:2200" in lines[row + 1], proc.stdout  # its own line
    row = next(i for i, ln in enumerate(lines) if ln.startswith("nano "))
    assert "ubuntu@plain:2200" in lines[row] and "via gw" in lines[row + 1], proc.stdout


def test_real_connection_to_an_alias_defined_only_in_an_included_file(
    ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`inc-dj` and its jump host `inc-bastion` exist only in conf.d/: OpenSSH's reading
    reaches dj through the bastion (paramiko's would try a host named inc-dj)."""
    bastion, dj = ssh_env["bastion"], ssh_env["dj"]
    common = (
        f"    User {dj.user}\n    IdentityFile {ssh_env.client_key_path}\n"
        f"    IdentitiesOnly yes\n    UserKnownHostsFile {ssh_env.known_hosts_path}\n"
    )
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text(
        f"Host inc-bastion\n    HostName {bastion.host}\n    Port {bastion.port}\n{common}"
        f"Host inc-dj\n    HostName {dj.host}\n    Port {dj.port}\n{common}"
        "    ProxyJump inc-bastion\n"
    )
    config = tmp_path / "config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    device = Device(name="lab-dj", host="inc-dj")
    ep = device.endpoint()
    assert (ep.hostname, ep.port, ep.proxy_jump) == (dj.host, dj.port, ["inc-bastion"])
    with SSHTransport(device.name, ep, ssh_env.known_hosts_path) as transport:
        assert transport.run(["echo", "via-include"], timeout=30).stdout == "via-include\n"
