"""The README's `edge-python` wrapper (Running the agent in a container), end to end where
no Docker daemon runs: a real sshd "board" whose `docker` is a shim.

The shim, first on the board's PATH (sshd's SetEnv), accepts only the command lines the
wrapper may produce, `docker exec -i [-w DIR] edge-agent python3 ARGS...`, and then does
what that container would: it starts in the image's WORKDIR (a stand-in directory), moves
to DIR, and runs the board's python3 (numpy and TensorFlow, not this project) with the
image's environment only. The device root is relative to the login's home, as the default
`~/.edge` is, so the agent finds it only from the directory `-w` names.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from helpers import ROOT, edge_bin
from netlab import sshd
from sshfleet import SSHD_SETTINGS, SshFleet, SshServer, find_sshd

WRAPPER_MARK = "<!-- edge-python wrapper: tests/test_docker_wrapper.py installs this text -->"


def readme_wrapper() -> str:
    """The wrapper script exactly as the README shows it (the ```sh block after the mark)."""
    readme = (ROOT / "README.md").read_text()
    assert WRAPPER_MARK in readme, "README lost the edge-python wrapper block"
    block = readme.split(WRAPPER_MARK, 1)[1].lstrip("\n")
    assert block.startswith("```sh\n"), block[:80]
    return block[len("```sh\n") : block.index("\n```")] + "\n"


def shim_script(log: Path, board_python: Path, workdir: Path) -> str:
    """A `docker` that accepts only `docker exec -i [-w DIR] edge-agent python3 ARGS...` and
    runs it as the container would: from the image's WORKDIR (a stand-in directory here),
    or from DIR, with the image's environment only."""
    return f"""#!/bin/sh
log={shlex.quote(str(log))}
dir=-
if [ "$1 $2" != "exec -i" ]; then
    set -- BAD "$@"
elif [ "$3" = "-w" ]; then
    dir=$4
    shift 4
else
    shift 2
fi
if [ "$1 $2" != "edge-agent python3" ]; then
    echo "BAD docker $*" >> "$log"
    echo "docker shim: not the documented command: docker $*" >&2
    exit 125
fi
shift 2
echo "OK $dir $1" >> "$log"
cd {shlex.quote(str(workdir))} || exit 126
if [ "$dir" != - ]; then cd "$dir" || exit 126; fi
exec env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root EDGE_AGENT_ROOT=/root/.edge \\
    PYTHONPATH=/opt/edge PYTHONDONTWRITEBYTECODE=1 {shlex.quote(str(board_python))} "$@"
"""


class ShimBoard(SshServer):
    """An sshd whose sessions have `shim_dir` first on PATH."""

    shim_dir = ""

    def _write_config(self) -> None:
        sshd.write_config(
            self.config_path,
            f"{self.host}:{self.port}",
            self.host_key_path,
            self.pid_path,
            self.authorized_keys,
            AllowUsers=self.user,
            **SSHD_SETTINGS,
            SetEnv=f"PATH={self.shim_dir}:/usr/bin:/bin",
        )


class ShimFleet(SshFleet):
    def _server(self, name: str, host: str) -> SshServer:
        server = ShimBoard(name, self.base_dir, self.authorized_keys_path, host=host)
        self.servers[name] = server
        return server


@pytest.fixture
def board(
    tmp_path: Path, device_python: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Path]]:
    """A board `box` with the wrapper installed, the docker shim, and the host pointed at it."""
    if find_sshd() is None:
        pytest.fail("OpenSSH server not installed: apt-get install openssh-server", pytrace=False)
    shim_dir, bin_dir = tmp_path / "shim", tmp_path / "usr-local-bin"
    shim_dir.mkdir()
    bin_dir.mkdir()
    log = tmp_path / "docker-calls.log"
    workdir = tmp_path / "image" / "opt" / "edge"  # stands in for the image's WORKDIR
    workdir.mkdir(parents=True)
    (shim_dir / "docker").write_text(shim_script(log, device_python, workdir))
    wrapper = bin_dir / "edge-python"
    wrapper.write_text(readme_wrapper())
    for script in (shim_dir / "docker", wrapper):
        script.chmod(0o755)
    ShimBoard.shim_dir = str(shim_dir)
    fleet = ShimFleet(tmp_path / "fleet", ["box"])
    fleet.start()
    try:
        monkeypatch.setenv("EDGE_SSH_CONFIG", str(fleet.ssh_config_path))
        monkeypatch.setenv("EDGE_KNOWN_HOSTS", str(fleet.known_hosts_path))
        monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
        monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
        root = tmp_path / "board-root"  # "the mount": the same path outside and inside
        yield {"wrapper": wrapper, "log": log, "root": root}
    finally:
        fleet.stop()


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="200")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=600)


def calls(log: Path) -> list[list[str]]:
    return [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []


def test_readme_wrapper_is_the_documented_docker_exec() -> None:
    text = readme_wrapper()
    assert text.startswith("#!/bin/sh\n")
    (command,) = [line for line in text.splitlines() if line.startswith("exec ")]
    argv = shlex.split(command)
    assert argv[:8] == ["exec", "docker", "exec", "-i", "-w", "$(pwd)", "edge-agent", "python3"]
    assert argv[8:] == ["$@"] and command.endswith('"$@"')  # every argument, each quoted


def test_dockerfile_header_shows_the_same_wrapper() -> None:
    header = [
        line[1:].strip()
        for line in (ROOT / "Dockerfile.jetson").read_text().splitlines()
        if line.startswith("#")
    ]
    for line in readme_wrapper().splitlines():
        assert line in header, f"Dockerfile.jetson's header lacks the README's {line!r}"


@pytest.mark.slow
def test_info_push_and_convert_through_the_wrapper(
    board: dict[str, Path], tiny_model: Path
) -> None:
    # The device root relative to the login's home, like the default ~/.edge.
    relative = os.path.relpath(board["root"], Path.home())
    proc = edge(
        "fleet", "add", "box", "--host", "box", "--python", str(board["wrapper"]),
        "--root", f"~/{relative}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr

    proc = edge("info", "--to", "box", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["device"] == "box" and row["status"] == "succeeded", row
    assert row["facts"]["tensorflow"] and row["facts"]["numpy"], row["facts"]
    agent = list((board["root"] / "agent").glob("edge-agent-*.pyz"))
    assert agent, "the agent was not installed under the mounted root"

    proc = edge("push", str(tiny_model), "--to", "box", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)] == ["succeeded"]

    proc = edge("convert", str(tiny_model), "--to", "box", "--backend", "native", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (conv,) = json.loads(proc.stdout)
    assert (conv["status"], conv["backend"]) == ("succeeded", "native"), conv
    out = Path(conv["output_model"])  # relative to the login's home, like the root
    out = (out if out.is_absolute() else Path.home() / out).resolve()
    assert out.is_dir() and out.is_relative_to(board["root"].resolve()), conv["output_model"]

    seen = calls(board["log"])
    assert seen, "no agent command went through the docker shim"
    assert not [c for c in seen if c[0] != "OK"], seen  # every call was the documented one
    # every one from the login's home, where the relative root is
    assert {c[1] for c in seen} == {str(Path.home())}, seen


def test_wrapper_runs_from_the_callers_directory(board: dict[str, Path], tmp_path: Path) -> None:
    """Without `-w` the command would start in the image's WORKDIR: a relative script path
    given to the wrapper must resolve against the caller's directory."""
    work = tmp_path / "caller"
    work.mkdir()
    (work / "where.py").write_text("import os, sys; print(os.getcwd()); print(sys.argv[1:])\n")
    env = dict(os.environ, PATH=f"{Path(board['log']).parent / 'shim'}:/usr/bin:/bin")
    proc = subprocess.run(
        [str(board["wrapper"]), "where.py", "a b", "$HOME"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [str(work), str(["a b", "$HOME"])]
    assert calls(board["log"]) == [["OK", str(work), "where.py"]]
