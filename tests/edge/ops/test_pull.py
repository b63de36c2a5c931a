"""`edge pull` against a hostile device: the manifest's paths, modes, sizes and digests,
and the remote files themselves, are all untrusted (the scp CVE-2019-6111 pattern).

The device is a real agent under a stand-in `python3` (tests/hostile_device.py) that
answers `result` and `manifest` with canned lies; the files it serves are real files in
its root. Each attack must be refused with a DeviceError before anything lands outside
the staging directory: no file outside `--out`, no `--out`, no temporary file left.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from hostile_device import hostile_python, json_reply, set_replies
from sshfleet import SshFleet

from device_agent.protocol import ConvertResult, ManifestEntry
from edge.agent.sessions import open_client
from edge.core.errors import DeviceError
from edge.fleet.devices import Device
from edge.ops.pull import pull_job_model
from edge.transport import LocalTransport
from edge.transport.base import TransportError


class Board:
    """A hostile device with a converted model at `model` (a real directory in its root)."""

    def __init__(self, tmp_path: Path, device_python: Path, host: str | None = None) -> None:
        self.liar = tmp_path / "liar"
        self.exe = hostile_python(self.liar, device_python)
        self.root = tmp_path / "device-root"
        self.model = self.root / "models" / "m"
        self.model.mkdir(parents=True)
        (self.model / "saved_model.pb").write_bytes(b"graph" * 100)
        self.device = Device(name="h", host=host, python=str(self.exe), root=str(self.root))

    def lie(self, entries: list[dict[str, Any]] | None) -> None:
        """The job `j1` succeeded with output `model`, whose manifest is `entries` (None:
        the real agent's manifest of that directory)."""
        result = ConvertResult(
            device="h", status="succeeded", output_model=str(self.model), job_id="j1"
        )
        replies = {"result": json_reply(result.to_dict())}
        if entries is not None:
            replies["manifest"] = json_reply({"entries": entries, "name": "", "kind": "model"})
        set_replies(self.liar, replies)


def entry(path: str, data: bytes, mode: int = 0o644, size: int | None = None) -> dict[str, Any]:
    return ManifestEntry(
        path=path,
        size=len(data) if size is None else size,
        sha256=hashlib.sha256(data).hexdigest(),
        mode=mode,
    ).to_dict()


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def board(tmp_path: Path, device_python: Path) -> Board:
    return Board(tmp_path, device_python)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """The host side: `--out` is host/pulls/out; nothing may appear anywhere under host/
    except that directory (and only after a successful pull)."""
    path = tmp_path / "host"
    (path / "pulls").mkdir(parents=True)
    return path


def pull_refused(board: Board, host: Path, *needles: str) -> DeviceError:
    out = host / "pulls" / "out"
    with open_client(board.device) as client, pytest.raises(DeviceError) as info:
        pull_job_model(client, "j1", out)
    message = str(info.value.message)
    for needle in needles:
        assert needle in message, message
    assert files_under(host) == ["pulls"], "the pull left files behind"
    return info.value


def test_an_honest_pull_still_works(board: Board, host: Path) -> None:
    (board.model / "variables").mkdir()
    data = os.urandom(3000)
    (board.model / "variables" / "v.data").write_bytes(data)
    (board.model / "variables" / "v.data").chmod(0o755)
    board.lie(None)  # the real agent's manifest
    out = host / "pulls" / "out"
    with open_client(board.device) as client:
        manifest, path = pull_job_model(client, "j1", out)
    assert path == out and len(manifest.entries) == 2
    assert (out / "variables" / "v.data").read_bytes() == data
    assert files_under(host) == [
        "pulls",
        "pulls/out",
        "pulls/out/saved_model.pb",
        "pulls/out/variables",
        "pulls/out/variables/v.data",
    ]
    assert (out / "variables" / "v.data").stat().st_mode & 0o777 == 0o644


def test_dot_dot_path_is_refused(board: Board, host: Path) -> None:
    payload = b"written outside --out"
    (board.root / "x").write_bytes(payload)  # what models/m/../../x names on the device
    board.lie([entry("../../x", payload)])
    pull_refused(board, host, "'..'")


def test_absolute_path_is_refused(board: Board, host: Path, tmp_path: Path) -> None:
    victim = host / "victim" / "y"
    payload = b"absolute"
    # the device serves a file where output_model + "/" + that absolute path points
    served = Path(str(board.model) + "/" + str(victim))
    served.parent.mkdir(parents=True)
    served.write_bytes(payload)
    board.lie([entry(str(victim), payload)])
    pull_refused(board, host, "absolute path")
    assert not victim.parent.exists()


def test_symlink_entry_mode_is_refused(board: Board, host: Path) -> None:
    pb = (board.model / "saved_model.pb").read_bytes()
    board.lie([entry("saved_model.pb", pb, mode=0o120777)])  # S_IFLNK | 0777
    pull_refused(board, host, "bad mode")


def test_remote_symlink_is_refused(board: Board, host: Path, tmp_path: Path) -> None:
    secret = tmp_path / "device-secret"
    secret.write_bytes(b"the device's own key")
    (board.model / "link").symlink_to(secret)
    board.lie([entry("link", secret.read_bytes())])
    pull_refused(board, host, "link", "not a regular file")


def test_remote_fifo_is_refused(board: Board, host: Path) -> None:
    os.mkfifo(board.model / "fifo")
    board.lie([entry("fifo", b"")])
    pull_refused(board, host, "fifo", "not a regular file")


def test_more_bytes_than_declared_are_refused(board: Board, host: Path) -> None:
    big = os.urandom(1 << 20)
    (board.model / "big.bin").write_bytes(big)
    # the digest even matches: only the declared size says the device sent too much
    board.lie([entry("big.bin", big, size=10)])
    pull_refused(board, host, "big.bin", "more than the 10 bytes")


def test_sha_mismatch_is_refused(board: Board, host: Path) -> None:
    board.lie([entry("saved_model.pb", b"graph" * 99 + b"grapH")])
    pull_refused(board, host, "saved_model.pb", "sha256")


@pytest.mark.parametrize(
    "entries, needle",
    [
        ([entry("a", b"1"), entry("a", b"1")], "duplicate path"),
        ([entry("a", b"1"), entry("a/b", b"1")], "is also a file"),
        ([entry("a/./b", b"1")], "'.' component"),
        ([entry("a\\..\\..\\b", b"1")], "backslash"),
    ],
)
def test_malformed_paths_are_refused(
    board: Board, host: Path, entries: list[dict[str, Any]], needle: str
) -> None:
    board.lie(entries)
    pull_refused(board, host, needle)


def test_bounded_download_reads_no_more_than_declared(tmp_path: Path) -> None:
    """The transport stops at size + 1 bytes and leaves no local file behind."""
    remote = tmp_path / "remote.bin"
    remote.write_bytes(os.urandom(1 << 20))
    local = tmp_path / "local.bin"
    transport = LocalTransport("t")
    with pytest.raises(TransportError, match="more than the 100 bytes"):
        transport.download(str(remote), local, max_bytes=100)
    assert not local.exists()
    assert transport.download(str(remote), local, max_bytes=1 << 20) == 1 << 20
    with pytest.raises(TransportError, match="exists"):  # O_EXCL: never overwrites
        transport.download(str(remote), local)


def test_dot_dot_path_is_refused_over_ssh(
    ssh_env: SshFleet, tmp_path: Path, device_python: Path
) -> None:
    board = Board(tmp_path, device_python, host="d1")
    host = tmp_path / "host"
    (host / "pulls").mkdir(parents=True)
    payload = b"written outside --out"
    (board.root / "x").write_bytes(payload)
    board.lie([entry("../../x", payload)])
    pull_refused(board, host, "'..'")
    # and over SFTP too, a remote symlink and an oversize file are refused
    secret = tmp_path / "device-secret"
    secret.write_bytes(b"key")
    (board.model / "link").symlink_to(secret)
    board.lie([entry("link", b"key")])
    pull_refused(board, host, "not a regular file")
    big = os.urandom(1 << 20)
    (board.model / "big.bin").write_bytes(big)
    board.lie([entry("big.bin", big, size=10)])
    pull_refused(board, host, "more than the 10 bytes")


def test_manifest_type_is_checked(board: Board, host: Path) -> None:
    """A manifest whose entries are not objects is a DeviceError, not a TypeError."""
    board.lie([["not", "an", "entry"]])  # type: ignore[list-item]
    pull_refused(board, host, "manifest")
