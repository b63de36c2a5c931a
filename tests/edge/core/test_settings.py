"""The host's EDGE_* variables: one validated settings object, documented in the README,
and EDGE_DEBUG / EDGE_TRACE as log levels of Python logging."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest
from helpers import ROOT, edge_bin

from edge.cli.main import configure_logging
from edge.core import paths, trace
from edge.core.errors import EdgeError
from edge.core.settings import SETTINGS_FIELDS, VARIABLES, Settings, markdown_table, settings

TRACE_LINE = re.compile(r"^\[trace +\d+\.\d{3}s\] +(\S*) (.+) \d+\.\d{3}s$")  # a span
MARK_LINE = re.compile(r"^\[trace +\d+\.\d{3}s\] +\S* ?\S.*$")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run_edge(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160", **env)
    return subprocess.run(
        [edge_bin(), *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=120
    )


# ------------------------------------------------------------------ defaults and values


def test_defaults_when_nothing_is_set(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.chdir(tmp_path)  # no ./fleet.yaml here
    s = settings()
    assert s == Settings()
    assert (s.debug, s.trace, s.dead_link_seconds, s.reconnect_tries) == (False, False, 30.0, 8)
    assert s.local_python == sys.executable and s.push_channels is None
    # what the readers make of the defaults
    from edge.agent.follow import reconnect_tries
    from edge.fleet.devices import local_device
    from edge.fleet.inventory import inventory_path, known_hosts_path
    from edge.recipes.loader import recipes_dir
    from edge.transport.deadlink import dead_link_seconds
    from edge.transport.ssh_config import ssh_config_path

    config = Path(platformdirs.user_config_dir("jetson-edge"))
    assert paths.data_dir() == Path(platformdirs.user_data_dir("jetson-edge"))
    assert inventory_path() == config / "fleet.yaml"
    assert known_hosts_path() == config / "known_hosts"
    assert ssh_config_path() == Path.home() / ".ssh" / "config"
    assert recipes_dir() == ROOT / "edge" / "recipes" / "builtin"
    assert local_device().python == sys.executable
    assert dead_link_seconds() == 30.0 and reconnect_tries() == 8


def test_empty_is_unset(clean_env: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        clean_env.setenv(name, "")
    assert settings() == Settings()


def test_every_reader_follows_the_environment_between_calls(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each host module reads its variable through settings(), at call time."""
    from edge.agent.follow import reconnect_tries
    from edge.fleet.devices import local_device
    from edge.fleet.inventory import inventory_path, known_hosts_path
    from edge.recipes.loader import recipes_dir
    from edge.transport.banner import banner_timeout
    from edge.transport.deadlink import dead_link_seconds
    from edge.transport.ssh import FAST_CIPHERS, cipher_preference
    from edge.transport.ssh_config import ssh_config_path

    for round_ in ("a", "b"):  # twice: a changed variable takes effect on the next call
        d = tmp_path / round_
        env = {
            "EDGE_HOME": str(d / "home"),
            "EDGE_FLEET": str(d / "f.yaml"),
            "EDGE_KNOWN_HOSTS": str(d / "kh"),
            "EDGE_SSH_CONFIG": str(d / "sc"),
            "EDGE_LOCAL_ROOT": str(d / "root"),
            "EDGE_LOCAL_PYTHON": str(d / "py"),
            "EDGE_RECIPES": str(d / "recipes"),
            "EDGE_DEAD_LINK_SECONDS": "2.5" if round_ == "a" else "7",
            "EDGE_RECONNECT_TRIES": "0" if round_ == "a" else "3",
            "EDGE_SSH_BANNER_TIMEOUT": "0.5" if round_ == "a" else "12",
        }
        for name, value in env.items():
            clean_env.setenv(name, value)
        assert paths.data_dir() == d / "home" / "data"
        assert paths.cache_dir() == d / "home" / "cache"
        assert paths.local_device_root() == d / "root"
        assert inventory_path() == d / "f.yaml" and known_hosts_path() == d / "kh"
        assert ssh_config_path() == d / "sc" and recipes_dir() == d / "recipes"
        assert local_device().python == str(d / "py")
        assert dead_link_seconds() == float(env["EDGE_DEAD_LINK_SECONDS"])
        assert reconnect_tries() == int(env["EDGE_RECONNECT_TRIES"])
        assert banner_timeout() == float(env["EDGE_SSH_BANNER_TIMEOUT"])
    clean_env.setenv("EDGE_SSH_CIPHERS", " aes256-ctr, ,aes128-ctr ")
    assert settings().ssh_ciphers == ("aes256-ctr", "aes128-ctr")
    offered = ("aes128-ctr", "aes256-ctr", *FAST_CIPHERS)
    assert cipher_preference(offered)[:2] == ("aes256-ctr", "aes128-ctr")


def test_paths_expand_the_home_dir(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EDGE_HOME", "~/somewhere")
    assert paths.edge_home() == Path.home() / "somewhere"


@pytest.mark.parametrize(
    "value,expected",
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_flags(clean_env: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    clean_env.setenv("EDGE_DEBUG", value)
    clean_env.setenv("EDGE_TRACE", value)
    assert (settings().debug, settings().trace) == (expected, expected)


def test_push_channels_reach_the_push(clean_env: pytest.MonkeyPatch) -> None:
    from edge.ops.push_links import channels_for
    from edge.transport.ssh import SSHTransport
    from edge.transport.ssh_config import Endpoint

    transport = SSHTransport("d1", Endpoint("d1", "127.0.0.1", 22, "nobody"))  # not opened
    assert channels_for(transport, devices=4) == 2  # the default: 8 shared out
    clean_env.setenv("EDGE_PUSH_CHANNELS", "64")
    assert channels_for(transport, devices=4) == 64


# ------------------------------------------------------------------ bad values

BAD = [
    ("EDGE_PUSH_CHANNELS", "0", "a whole number from 1 to 64"),
    ("EDGE_PUSH_CHANNELS", "65", "a whole number from 1 to 64"),
    ("EDGE_PUSH_CHANNELS", "-1", "a whole number from 1 to 64"),
    ("EDGE_PUSH_CHANNELS", "four", "a whole number from 1 to 64"),
    ("EDGE_PUSH_EAGER", "-1", "a whole number from 0 to 4194304"),
    ("EDGE_PUSH_EAGER", "4194305", "a whole number from 0 to 4194304"),
    ("EDGE_PUSH_EAGER", "1M", "a whole number from 0 to 4194304"),
    ("EDGE_RECONNECT_TRIES", "x", "a whole number, 0 or more"),
    ("EDGE_RECONNECT_TRIES", "-1", "a whole number, 0 or more"),
    ("EDGE_RECONNECT_TRIES", "2.0", "a whole number, 0 or more"),
    ("EDGE_DEAD_LINK_SECONDS", "0", "a number of seconds greater than 0"),
    ("EDGE_DEAD_LINK_SECONDS", "-5", "a number of seconds greater than 0"),
    ("EDGE_DEAD_LINK_SECONDS", "nan", "a number of seconds greater than 0"),
    ("EDGE_DEAD_LINK_SECONDS", "inf", "a number of seconds greater than 0"),
    ("EDGE_DEAD_LINK_SECONDS", "30s", "a number of seconds greater than 0"),
    ("EDGE_DEBUG", "maybe", "1 or 0"),
    ("EDGE_DEBUG", "2", "1 or 0"),
    ("EDGE_TRACE", "verbose", "1 or 0"),
    ("EDGE_SSH_CIPHERS", " , ", "comma-separated cipher names"),
    ("EDGE_SSH_BANNER_TIMEOUT", "0", "a number of seconds greater than 0"),
    ("EDGE_PUSH_VIA", "pigeon", "one of auto, openssh, paramiko, sftp"),
    ("EDGE_SSH_BANNER_TIMEOUT", "ten", "a number of seconds greater than 0"),
]


@pytest.mark.parametrize("name,value,accepted", BAD)
def test_bad_value_is_a_clear_error(
    clean_env: pytest.MonkeyPatch, name: str, value: str, accepted: str
) -> None:
    clean_env.setenv(name, value)
    with pytest.raises(EdgeError) as info:
        settings()
    assert info.value.message.startswith(f"{name}={value}: expected {accepted}")
    assert info.value.hint and name in info.value.hint and "unset it" in info.value.hint
    clean_env.delenv(name)
    settings()  # fixed: the next read is fine (errors are not cached)


def test_every_numeric_and_flag_variable_has_a_bad_value_tested() -> None:
    path_like = {
        "EDGE_HOME",
        "EDGE_FLEET",
        "EDGE_SSH_CONFIG",
        "EDGE_KNOWN_HOSTS",
        "EDGE_LOCAL_ROOT",
        "EDGE_LOCAL_PYTHON",
        "EDGE_RECIPES",
    }  # any text is a path
    assert {name for name, _, _ in BAD} | path_like == set(VARIABLES)


def test_a_long_bad_value_is_shortened(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("EDGE_RECONNECT_TRIES", "9" * 30 + "x" * 200)
    with pytest.raises(EdgeError) as info:
        settings()
    assert len(info.value.message) < 160 and "..." in info.value.message


@pytest.mark.parametrize(
    "name,value,accepted",
    [
        ("EDGE_PUSH_CHANNELS", "0", "from 1 to 64"),
        ("EDGE_RECONNECT_TRIES", "x", "0 or more"),
    ],
)
def test_bad_value_through_the_cli_exits_1_without_a_traceback(
    tmp_path: Path, name: str, value: str, accepted: str
) -> None:
    for debug in ("0", "1"):  # not even with EDGE_DEBUG=1: the traceback says nothing
        proc = run_edge("fleet", "ls", env={name: value, "EDGE_DEBUG": debug}, cwd=tmp_path)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"error: {name}={value}: expected" in proc.stderr and accepted in proc.stderr
        assert "hint:" in proc.stderr


# ------------------------------------------------------------------ the README table


def test_readme_table_is_the_settings_table() -> None:
    readme = (ROOT / "README.md").read_text()
    begin = "<!-- settings table: generated by `python -m edge.core.settings` -->\n"
    end = "\n<!-- end of settings table -->"
    assert begin in readme and end in readme
    table = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert table == markdown_table(), (
        "README's environment table is stale: paste `python -m edge.core.settings` into it"
    )
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines()[2:]]
    assert rows == [f.metadata["env"] for f in SETTINGS_FIELDS]
    assert all(f.metadata["doc"] and f.metadata["shown"] for f in SETTINGS_FIELDS)


def test_no_host_module_reads_an_edge_variable_itself() -> None:
    read = re.compile(r"""(environ\b[^\n]*|getenv\([^\n]*)["']EDGE_""")
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "edge").rglob("*.py")
        if p.name != "settings.py" and read.search(p.read_text())
    ]
    assert offenders == []


# ------------------------------------------------------------------ logging


def test_configure_logging_sets_levels_once(capsys: pytest.CaptureFixture[str]) -> None:
    log = logging.getLogger("edge")
    try:
        configure_logging(Settings(trace=True))
        once = list(log.handlers)
        configure_logging(Settings(trace=True))
        assert log.handlers == once and len(once) >= 1  # no second handler, no double lines
        assert trace.enabled() and not log.isEnabledFor(logging.DEBUG)
        trace.mark("connect 0.120s", "dev1")
        logging.getLogger("edge.fleet.group").debug("hidden")
        err = capsys.readouterr().err
        assert TRACE_LINE.match(err.strip()) and "hidden" not in err
        configure_logging(Settings(debug=True))
        assert not trace.enabled()  # EDGE_DEBUG alone shows no timings
        logging.getLogger("edge.fleet.group").debug("shown %s", "here")
        assert capsys.readouterr().err == "debug: edge.fleet.group: shown here\n"
    finally:
        configure_logging(Settings())
    assert not trace.enabled() and not log.isEnabledFor(logging.DEBUG)


def _fake_model(tmp_path: Path) -> Path:
    """Bytes to push: the push checks for saved_model.pb and ships files as they are."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(os.urandom(1000))
    return model


def test_edge_trace_shows_the_push_spans_on_stderr(tmp_path: Path) -> None:
    model = _fake_model(tmp_path)
    proc = run_edge("push", str(model), "--to", "local", env={"EDGE_TRACE": "1"}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert all(MARK_LINE.match(line) for line in lines), proc.stderr
    spans = [TRACE_LINE.match(line) for line in lines]
    seen = [(m.group(1), m.group(2)) for m in spans if m]
    for phase in ("push-plan", "upload"):  # a one-stream push commits in its stream
        assert ("local", phase) in seen, proc.stderr
    assert "[trace" not in proc.stdout
    quiet = run_edge("push", str(model), "--to", "local", env={"EDGE_TRACE": "0"}, cwd=tmp_path)
    assert quiet.returncode == 0 and "[trace" not in quiet.stderr


def test_edge_debug_logs_each_failed_device_with_its_traceback(tmp_path: Path) -> None:
    model = _fake_model(tmp_path)
    env = {"EDGE_LOCAL_PYTHON": str(tmp_path / "no-such-python")}
    proc = run_edge(
        "push", str(model), "--to", "local", env={**env, "EDGE_DEBUG": "1"}, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert "debug: edge.fleet.group: local failed\nTraceback" in proc.stderr
    assert "TransportError: local: cannot run" in proc.stderr  # the exception, logged
    plain = run_edge("push", str(model), "--to", "local", env=env, cwd=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "debug:" not in plain.stderr
