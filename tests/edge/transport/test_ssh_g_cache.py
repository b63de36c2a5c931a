"""`ssh -G` answers kept on disk between commands: reused while nothing ssh reads changed
(the config, its Includes, the ssh binary), never kept where the answer can depend on
more (Match, CanonicalizeHostname, ${ENV}), and a damaged cache file is only a miss."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edge.transport import ssh_g_cache
from edge.transport.ssh_config import ClientConfig


@pytest.fixture(autouse=True)
def _openssh_client() -> None:
    if shutil.which("ssh") is None:
        pytest.fail("OpenSSH client not installed: apt-get install openssh-client", pytrace=False)


def fresh_lookup(alias: str) -> dict[str, object]:
    """A lookup as the first one of a new process makes it."""
    ClientConfig._cache.clear()
    ClientConfig._defaults.clear()
    ssh_g_cache._SCANNED.clear()
    return ClientConfig().lookup(alias)


def new_version(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_a_later_command_reuses_the_answer_until_a_file_ssh_reads_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[str]
) -> None:
    (tmp_path / "conf.d").mkdir()
    included = tmp_path / "conf.d" / "jet.conf"
    included.write_text("Host jet\n    HostName 10.1.2.3\n    Port 2222\n")
    config = tmp_path / "config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))

    assert fresh_lookup("jet")["port"] == "2222"
    assert spawned.count("jet") == 1
    for _ in range(3):  # later commands: no ssh process at all
        assert fresh_lookup("jet")["port"] == "2222"
    assert spawned.count("jet") == 1 and spawned.count("edge-defaults.invalid") == 1

    new_version(included, "Host jet\n    HostName 10.1.2.3\n    Port 2233\n")
    assert fresh_lookup("jet")["port"] == "2233"  # an Included file changed
    (tmp_path / "conf.d" / "other.conf").write_text("Host jet\n    User nvidia\n")
    assert fresh_lookup("jet")["user"] == "nvidia"  # a file the glob now matches
    new_version(config, f"Include {tmp_path}/conf.d/*.conf\nHost jet\n    Port 2244\n")
    assert fresh_lookup("jet")["port"] == "2233"  # the first value wins, as in ssh
    assert spawned.count("jet") == 4


@pytest.mark.parametrize(
    "line",
    ['Match exec "test -e /nonexistent"', "CanonicalizeHostname yes", "IdentityFile ${HOME}/k"],
)
def test_answers_that_may_depend_on_more_than_the_files_are_never_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[str], line: str
) -> None:
    config = tmp_path / "config"
    config.write_text(f"Host jet\n    HostName 10.1.2.3\n{line}\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    for _ in range(2):
        assert fresh_lookup("jet")["hostname"] == "10.1.2.3"
    assert spawned.count("jet") == 2
    kept = Path(os.environ["EDGE_HOME"]).rglob("ssh-g/*.json")
    assert not any("10.1.2.3" in p.read_text() for p in kept)


@pytest.mark.parametrize("damage", ["not json", "[1, 2]", '{"hostname": 7}', ""])
def test_a_damaged_cache_file_is_a_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[str], damage: str
) -> None:
    config = tmp_path / "config"
    config.write_text("Host jet\n    HostName 10.1.2.3\n")
    monkeypatch.setenv("EDGE_SSH_CONFIG", str(config))
    assert fresh_lookup("jet")["hostname"] == "10.1.2.3"
    kept = list(Path(os.environ["EDGE_HOME"]).rglob("ssh-g/*.json"))
    assert len(kept) == 2  # the defaults' answer and jet's
    for path in kept:
        path.write_text(damage)
    assert fresh_lookup("jet")["hostname"] == "10.1.2.3"
    assert spawned.count("jet") == 2
    assert fresh_lookup("jet")["hostname"] == "10.1.2.3"  # rewritten whole: a hit again
    assert spawned.count("jet") == 2
