"""Manifests, the part of the agent the host imports: built from real files, checked,
decoded and digested, the same on the board's Python 3.8 as on the host's."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from device_agent import manifest, store
from device_agent.errors import AgentError
from device_agent.manifest import (
    build_manifest,
    fd_sha256,
    file_sha256,
    gaps,
    manifest_from_json,
    tree_digest,
    validate_manifest,
)
from device_agent.protocol import Manifest, ManifestEntry

REPO = Path(__file__).resolve().parents[2]
PY38 = "/root/.pyenv/versions/3.8.18/bin/python"
SHA0 = "0" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- sha256


def test_file_and_fd_sha256_match_hashlib(tmp_path: Path) -> None:
    data = os.urandom(3 * manifest.CHUNK + 17)  # more than one chunk, not a multiple
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(str(path)) == (len(data), sha(data))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(str(empty)) == (0, sha(b""))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 100, os.SEEK_SET)  # from the current offset, as the store reads it
        assert fd_sha256(fd) == (len(data) - 100, sha(data[100:]))
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- build


def test_manifest_matches_hashlib(hostile_tree: tuple[Path, dict[str, bytes]]) -> None:
    src, files = hostile_tree
    m = build_manifest(str(src), name="m")
    assert [e.path for e in m.entries] == sorted(files)
    for e in m.entries:
        assert (e.size, e.sha256) == (len(files[e.path]), sha(files[e.path]))
        assert e.mode == os.stat(src / e.path).st_mode & 0o777
    assert next(e for e in m.entries if e.path == "saved_model.pb").mode == 0o755
    validate_manifest(m)


def test_single_file_manifest(tmp_path: Path) -> None:
    f = tmp_path / "calib.npz"
    f.write_bytes(b"npz-bytes")
    m = build_manifest(str(f), kind="calib")
    assert [(e.path, e.size, e.sha256) for e in m.entries] == [("calib.npz", 9, sha(b"npz-bytes"))]


def test_the_hash_function_is_the_callers(hostile_tree: tuple[Path, dict[str, bytes]]) -> None:
    # The host passes one that remembers digests: whatever it answers is the manifest.
    src, files = hostile_tree
    seen: list[str] = []

    def remembered(path: str, st: os.stat_result) -> tuple[int, str]:
        seen.append(path)
        return st.st_size, SHA0

    m = build_manifest(str(src), hash_file=remembered)
    assert len(seen) == len(files) and {e.sha256 for e in m.entries} == {SHA0}
    assert tree_digest(m) != tree_digest(build_manifest(str(src)))


def test_symlinks_inside_followed_outside_refused(tmp_path: Path) -> None:
    src = tmp_path / "m"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "real.bin").write_bytes(b"real")
    (src / "link.bin").symlink_to("sub/real.bin")
    (src / "linkdir").symlink_to("sub")
    m = build_manifest(str(src))
    assert {e.path: e.sha256 for e in m.entries} == {
        "link.bin": sha(b"real"),
        "linkdir/real.bin": sha(b"real"),
        "sub/real.bin": sha(b"real"),
    }
    (tmp_path / "secret").write_bytes(b"s")
    (src / "escape").symlink_to(tmp_path / "secret")
    with pytest.raises(AgentError, match="escape"):
        build_manifest(str(src))
    (src / "escape").unlink()
    (src / "loop").symlink_to(".")
    with pytest.raises(AgentError, match="loop"):
        build_manifest(str(src))
    (src / "loop").unlink()
    (src / "dangling").symlink_to(src / "gone")
    with pytest.raises(AgentError, match="Broken symlink: dangling"):
        build_manifest(str(src))


def test_missing_path_and_special_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="No such file or directory"):
        build_manifest(str(tmp_path / "nothing"))
    src = tmp_path / "m"
    src.mkdir()
    os.mkfifo(src / "fifo")
    with pytest.raises(AgentError, match="Not a regular file"):
        build_manifest(str(src))


# --------------------------------------------------------------------------- digest


def test_tree_digest_stable_and_sensitive(hostile_tree: tuple[Path, dict[str, bytes]]) -> None:
    src, _ = hostile_tree
    m = build_manifest(str(src))
    shuffled = Manifest(entries=list(reversed(m.entries)), name="other")
    assert tree_digest(shuffled) == tree_digest(m)
    data = bytearray((src / "variables/variables.index").read_bytes())
    data[0] ^= 1
    (src / "variables/variables.index").write_bytes(bytes(data))
    assert tree_digest(build_manifest(str(src))) != tree_digest(m)
    os.chmod(src / "saved_model.pb", 0o644)
    assert tree_digest(build_manifest(str(src))) != tree_digest(m)


@pytest.mark.skipif(not os.path.exists(PY38), reason="no Python 3.8 interpreter here")
def test_manifest_and_digest_are_identical_on_python38(
    hostile_tree: tuple[Path, dict[str, bytes]],
) -> None:
    # The host (3.10+) names a pushed tree by the digest the board's Python 3.8 computes.
    src, _ = hostile_tree
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from device_agent.manifest import build_manifest, tree_digest\n"
        "m = build_manifest(sys.argv[2])\n"
        "print(tree_digest(m)); print(m.to_json())\n"
        "assert 'device_agent.store' not in sys.modules\n"
    )
    out = subprocess.run(
        [PY38, "-I", "-c", code, str(REPO), str(src)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.splitlines()
    here = build_manifest(str(src))
    assert out[0] == tree_digest(here)
    assert json.loads(out[1]) == json.loads(here.to_json())


def test_the_host_side_imports_nothing_of_the_store_or_numpy() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import device_agent.manifest\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'tensorflow') or m == 'device_agent.store'))"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- check

BAD_PATHS = ["/etc/passwd", "../up", "a/../../b", "./x", "a/./b", "a\\b", "a//b", "", "a\x00b"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_validation_rejects_bad_paths(path: str) -> None:
    m = Manifest(entries=[ManifestEntry(path=path, size=1, sha256=SHA0)])
    with pytest.raises(AgentError) as err:
        validate_manifest(m)
    assert repr(path) in err.value.message


@pytest.mark.parametrize(
    "entries,named",
    [
        ([("a", 1, SHA0), ("a", 1, SHA0)], "a"),
        ([("a", 1, "F" * 64)], "a"),
        ([("a", 1, "0" * 63)], "a"),
        ([("a", -1, SHA0)], "a"),
        ([("d", 1, SHA0), ("d/f", 1, SHA0)], "d/f"),
        ([("d/f", 1, SHA0), ("d", 1, SHA0)], "d"),
    ],
)
def test_validation_rejects_bad_entries(entries: list, named: str) -> None:
    m = Manifest(entries=[ManifestEntry(path=p, size=s, sha256=h) for p, s, h in entries])
    with pytest.raises(AgentError) as err:
        validate_manifest(m)
    assert repr(named) in err.value.message


def test_validation_rejects_bad_modes_and_kinds() -> None:
    for mode in (-1, 0o1000, True):
        with pytest.raises(AgentError, match="bad mode"):
            validate_manifest(Manifest(entries=[ManifestEntry("a", 1, SHA0, mode=mode)]))
    with pytest.raises(AgentError, match="Unknown manifest kind 'weights'") as err:
        validate_manifest(Manifest(entries=[], kind="weights"))
    assert "['calib', 'model']" in (err.value.hint or "")
    for kind in manifest.KINDS:
        validate_manifest(Manifest(entries=[], kind=kind))


def test_hostile_names_are_valid(hostile_names: list[str]) -> None:
    m = Manifest(entries=[ManifestEntry(path=f"d/{n}", size=0, sha256=SHA0) for n in hostile_names])
    validate_manifest(m)


def test_every_kind_has_a_store_directory() -> None:
    assert set(store.KIND_DIRS) == set(manifest.KINDS)


# --------------------------------------------------------------------------- decode


def test_manifest_from_json_round_trip_and_errors() -> None:
    m = Manifest(entries=[ManifestEntry("a/b", 3, SHA0, mode=0o640)], name="n", kind="calib")
    assert manifest_from_json(m.to_json()) == m
    for text in ("not json", json.dumps({"entries": [{"path": "a"}]}), "[]"):
        with pytest.raises(AgentError, match="Bad manifest JSON") as err:
            manifest_from_json(text)
        assert err.value.hint


# --------------------------------------------------------------------------- ranges


@pytest.mark.parametrize(
    "spans,size,missing",
    [
        ([], 10, [[0, 10]]),
        ([[0, 10]], 10, []),
        ([[3, 5]], 10, [[0, 3], [5, 10]]),
        ([[6, 8], [0, 2]], 10, [[2, 6], [8, 10]]),  # out of order
        ([[0, 4], [2, 6], [5, 7]], 10, [[7, 10]]),  # overlapping
        ([[0, 4], [4, 8]], 10, [[8, 10]]),  # adjacent
        ([[8, 20]], 10, [[0, 8]]),  # past the end
        ([[12, 20]], 10, [[0, 10]]),  # wholly past the end
        ([], 0, []),
    ],
)
def test_gaps(spans: list, size: int, missing: list) -> None:
    assert gaps(spans, size) == missing
    # what is done and what is left to send cover [0, size), and no byte twice
    done = {i for a, b in spans for i in range(a, min(b, size))}
    todo = {i for a, b in missing for i in range(a, b)}
    assert done | todo == set(range(size)) and not done & todo


def test_the_store_still_answers_the_hosts_old_imports() -> None:
    # Until the host imports these from manifest.py, device_agent.store re-exports them.
    for name in ("build_manifest", "tree_digest", "file_sha256", "gaps", "validate_manifest"):
        assert getattr(store, name) is getattr(manifest, name), name
