"""known_hosts as OpenSSH writes it, read by edge itself: markers, hashes, patterns, garbage.

The connection tests go through real sshd (tests/sshfleet.py) with the fleet's known_hosts
replaced by a file written here; $HOME points at an empty directory, so no other file counts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest
from sshfleet import SshFleet, SshServer

from edge.core.errors import EdgeError
from edge.fleet.inventory import known_hosts_path
from edge.transport.hostkey_policy import HostKeyError
from edge.transport.known_hosts import KnownHosts, matches
from edge.transport.ssh import SSHTransport
from edge.transport.ssh_config import resolve_endpoint

# Any valid ed25519 public key that belongs to no server of the fleet (a CA here).
CA_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    """`|1|salt|hmac` as `ssh-keygen -H` writes it."""
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def key_of(server: SshServer) -> str:
    return " ".join(server.host_key_pub.split()[:2])


def name_of(server: SshServer) -> str:
    return f"[{server.host}]:{server.port}"


@pytest.fixture
def known(ssh_env: SshFleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fleet's known_hosts for this test (empty until the test writes it)."""
    path = tmp_path / "known_hosts"
    monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return path


def echo(fleet: SshFleet, server: SshServer) -> str:
    """Connect to `server` by address (no ssh_config block) and run `echo ok`."""
    ep = resolve_endpoint(server.host, server.port, key=str(fleet.client_key_path))
    transport = SSHTransport(server.name, ep, known_hosts_path())
    try:
        return transport.run(["echo", "ok"]).stdout
    finally:
        transport.close()


def test_cert_authority_line_is_skipped_with_one_warning(
    ssh_env: SshFleet, known: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ssh_env["d1"]
    known.write_text(f"@cert-authority *.lab {CA_KEY}\n{name_of(server)} {key_of(server)}\n")
    assert echo(ssh_env, server) == "ok\n"
    assert echo(ssh_env, server) == "ok\n"
    err = capsys.readouterr().err
    assert f"{known}:1" in err and "@cert-authority" in err
    assert err.count("@cert-authority") == 1  # once, not once per connection


def test_revoked_key_is_refused_even_if_another_line_trusts_it(
    ssh_env: SshFleet, known: Path
) -> None:
    server = ssh_env["d1"]
    known.write_text(
        f"# lab boards\n{name_of(server)} {key_of(server)}\n@revoked * {key_of(server)}\n"
    )
    with pytest.raises(HostKeyError) as info:
        echo(ssh_env, server)
    assert "REVOKED" in info.value.message and f"{known}:3" in info.value.message
    assert info.value.hint


def test_revoked_key_with_another_trusted_key_of_its_type(ssh_env: SshFleet, known: Path) -> None:
    server, other = ssh_env["d1"], ssh_env["d2"]
    known.write_text(f"{name_of(server)} {key_of(other)}\n@revoked * {key_of(server)}\n")
    with pytest.raises(HostKeyError, match="REVOKED") as info:
        echo(ssh_env, server)
    assert f"{known}:2" in info.value.message


def test_garbage_lines_warn_and_the_good_line_still_connects(
    ssh_env: SshFleet, known: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ssh_env["d1"]
    known.write_text(
        f"{name_of(server)} ssh-ed25519 not*base64\n"
        f"{name_of(server)} ssh-ed25519 AAAA\n"
        "@bogus-marker host ssh-ed25519 AAAA\n"
        "lonely-field\n"
        "three garbage AAAA\n"
        f"{name_of(server)} {key_of(server)}\n"
    )
    assert echo(ssh_env, server) == "ok\n"
    err = capsys.readouterr().err
    for line in (1, 2, 3, 4, 5):
        assert f"{known}:{line}:" in err
    assert "Traceback" not in err


def test_hashed_negated_and_wildcard_names_over_sshd(ssh_env: SshFleet, known: Path) -> None:
    d1, d2, d3 = ssh_env["d1"], ssh_env["d2"], ssh_env["d3"]
    known.write_text(
        f"{hashed(name_of(d1))} {key_of(d1)}\n"
        f"![{d3.host}]:*,[127.0.0.*]:* {key_of(d2)}\n"
        f"[{d3.host}]:* {key_of(d1)}\n"
    )
    assert echo(ssh_env, d1) == "ok\n"  # hashed name
    assert echo(ssh_env, d2) == "ok\n"  # wildcard
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        echo(ssh_env, d3)  # negated on line 2, trusted with d1's key on line 3


def test_parse_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "known_hosts"
    path.write_text(
        f"# comment\n\n  a.lab,b.lab,10.0.0.5 {CA_KEY} trailing comment\n"
        f"{hashed('[h.example]:2222')} {CA_KEY}\n"
        f"*.lab,!bad.lab {CA_KEY}\n"
    )
    os.chmod(path, 0o600)
    kh = KnownHosts.load([str(path)])
    assert [e.lineno for e in kh.entries] == [3, 4, 5]
    assert [fp for fp in kh.trusted("b.lab")] and kh.trusted("10.0.0.5")
    assert kh.trusted("[h.example]:2222") and not kh.trusted("h.example")
    assert kh.trusted("x.lab") and not kh.trusted("bad.lab") and not kh.trusted("x.org")
    assert matches("[127.0.0.*]:*", "[127.0.0.12]:2022")
    assert not matches("a.lab", "A.LAB.evil") and matches("a.lab", "A.LAB")
    assert capsys.readouterr().err == ""


def test_unreadable_file_is_an_edge_error(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.mkdir()
    with pytest.raises(EdgeError, match="known_hosts"):
        KnownHosts.load([str(path)])
