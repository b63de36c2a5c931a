"""The device's content-addressed store: real files, real agent subprocess for the CLI."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import agent, agent_json

from device_agent import store as store_mod
from device_agent.durable import DiskUsage
from device_agent.errors import AgentError
from device_agent.manifest import build_manifest, tree_digest
from device_agent.protocol import Manifest, ManifestEntry, PushCommit, PushPlan
from device_agent.store import BlobStore

SHA0 = "0" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload(root: Path, plan: PushPlan, blobs: dict[str, bytes], half: str | None = None) -> None:
    """Write store/<sha>.partial like the host's SFTP upload (from each need's offset)."""
    for need in plan.missing:
        data = blobs[need.sha256]
        end = len(data) // 2 if need.sha256 == half else len(data)
        with open(root / "store" / (need.sha256 + ".partial"), "ab") as f:
            assert f.tell() == need.offset
            f.write(data[need.offset : end])


def test_plan_upload_commit(tmp_path: Path, hostile_tree: tuple[Path, dict[str, bytes]]) -> None:
    src, files = hostile_tree
    root = tmp_path / "root"
    m = build_manifest(str(src), name="m")
    blobs = {sha(d): d for d in files.values()}
    bs = BlobStore(str(root))

    plan = bs.plan(m)
    assert plan.store_dir == str(root / "store") and plan.model_path is None
    assert sorted(n.sha256 for n in plan.missing) == sorted(blobs)  # each blob once
    assert all(n.offset == 0 for n in plan.missing)
    assert plan.bytes_missing == sum(len(d) for d in blobs.values()) and plan.bytes_present == 0

    big = sha(files["variables/variables.data-00000-of-00001"])
    upload(root, plan, blobs, half=big)
    plan2 = bs.plan(m)
    for need in plan2.missing:
        assert need.offset == (root / "store" / (need.sha256 + ".partial")).stat().st_size
    assert plan2.bytes_missing == len(blobs[big]) - len(blobs[big]) // 2
    with pytest.raises(AgentError, match="incomplete") as err:
        bs.commit(m)
    assert "variables/variables.data-00000-of-00001" in err.value.message
    assert not (root / "models" / tree_digest(m)).exists()
    plan3 = bs.plan(m)  # the complete blobs were verified and kept
    assert [(n.sha256, n.offset) for n in plan3.missing] == [(big, len(blobs[big]) // 2)]
    upload(root, plan3, blobs)

    commit = bs.commit(m)
    model = Path(commit.model_path)
    assert model == root / "models" / tree_digest(m)
    assert (commit.files, commit.bytes_verified) == (len(files), len(blobs[big]))
    for rel, data in files.items():
        f = model / rel
        assert sha(f.read_bytes()) == sha(data)
        blob = root / "store" / sha(data)
        assert f.stat().st_ino == blob.stat().st_ino and f.stat().st_nlink >= 2
        assert f.stat().st_mode & 0o222 == 0  # read-only through the hard link
    assert (model / "saved_model.pb").stat().st_mode & 0o777 == 0o555
    assert not list((root / "store").glob("*.partial"))
    assert not list((root / "models").glob(".tmp-*"))
    assert not (model / "empty-dir").exists()

    plan4 = bs.plan(m)
    assert plan4.missing == [] and plan4.bytes_missing == 0
    assert plan4.model_path == str(model)
    assert bs.commit(m).model_path == str(model)  # idempotent


def test_same_bytes_other_mode_gets_a_copy(tmp_path: Path) -> None:
    src = tmp_path / "m"
    src.mkdir()
    (src / "a").write_bytes(b"same")
    (src / "b").write_bytes(b"same")
    os.chmod(src / "b", 0o755)
    root = tmp_path / "root"
    bs = BlobStore(str(root))
    m = build_manifest(str(src))
    (root / "store").mkdir(parents=True)
    (root / "store" / (sha(b"same") + ".partial")).write_bytes(b"same")
    model = Path(bs.commit(m).model_path)
    assert (model / "a").stat().st_mode & 0o777 == 0o444
    assert (model / "b").stat().st_mode & 0o777 == 0o555
    assert (model / "a").read_bytes() == (model / "b").read_bytes() == b"same"


def test_corrupted_partial_is_removed_and_named(tmp_path: Path) -> None:
    src = tmp_path / "m"
    (src / "variables").mkdir(parents=True)
    (src / "variables/variables.index").write_bytes(b"good bytes")
    (src / "ok.pb").write_bytes(b"fine")
    root = tmp_path / "root"
    bs = BlobStore(str(root))
    m = build_manifest(str(src), name="m")
    bs.plan(m)
    bad = root / "store" / (sha(b"good bytes") + ".partial")
    bad.write_bytes(b"evil bytes")
    (root / "store" / (sha(b"fine") + ".partial")).write_bytes(b"fine")
    with pytest.raises(AgentError) as err:
        bs.commit(m)
    assert "variables/variables.index" in err.value.message
    assert sha(b"good bytes") in err.value.message and sha(b"evil bytes") in err.value.message
    assert not bad.exists()
    assert not (root / "models" / tree_digest(m)).exists()
    assert [n.sha256 for n in bs.plan(m).missing] == [sha(b"good bytes")]


def test_disk_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(b"\0" * (3 << 20))
    Usage = DiskUsage
    monkeypatch.setattr(store_mod, "disk_usage", lambda p: Usage(1 << 30, 10 << 20))
    with pytest.raises(AgentError) as err:
        BlobStore(str(tmp_path / "root")).plan(build_manifest(str(f), name="big"))
    assert "need 3.0 MB, 10.0 MB free on " + str(tmp_path / "root") in err.value.message
    assert "edge fleet add" in (err.value.hint or "")
    monkeypatch.setattr(store_mod, "disk_usage", lambda p: Usage(1 << 30, 20 << 20))
    assert BlobStore(str(tmp_path / "root")).plan(build_manifest(str(f))).bytes_missing == 3 << 20


def test_agent_push_commands(
    tmp_path: Path, hostile_tree: tuple[Path, dict[str, bytes]], hostile_names: list[str]
) -> None:
    src, files = hostile_tree
    root = tmp_path / "root"
    cwd = Path.cwd()
    m = build_manifest(str(src), name="hostile")
    plan = PushPlan.from_dict(agent_json(root, "push-plan", input=m.to_json()))
    assert plan.tree_digest == tree_digest(m) and plan.bytes_present == 0
    upload(root, plan, {sha(d): d for d in files.values()})
    commit = PushCommit.from_dict(agent_json(root, "push-commit", input=m.to_json()))
    for name in hostile_names:
        assert (Path(commit.model_path) / "assets" / name).read_bytes() == files[f"assets/{name}"]
    for d in (cwd, root, tmp_path, src):
        assert not (d / "x").exists()
    again = agent_json(root, "push-plan", input=m.to_json())
    assert again["missing"] == [] and again["model_path"] == commit.model_path


@pytest.mark.parametrize(
    "payload,needle",
    [
        (Manifest(entries=[ManifestEntry("../evil", 1, SHA0)]).to_json(), "../evil"),
        (Manifest(entries=[ManifestEntry("/abs", 1, SHA0)]).to_json(), "/abs"),
        ("not json", "Bad manifest"),
        (json.dumps({"entries": [{"path": "a"}]}), "Bad manifest"),
    ],
)
@pytest.mark.parametrize("command", ["push-plan", "push-commit"])
def test_agent_rejects_bad_manifest(
    tmp_path: Path, command: str, payload: str, needle: str
) -> None:
    proc = agent(tmp_path / "root", command, input=payload)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert needle in out["error"] and out["hint"]
    assert not (tmp_path / "evil").exists()


def test_store_survives_missing_root(tmp_path: Path) -> None:
    bs = BlobStore(str(tmp_path / "nested" / "root"))
    f = tmp_path / "c.npz"
    f.write_bytes(b"c")
    m = build_manifest(str(f), kind="calib")
    assert bs.plan(m).missing
    shutil.copyfile(f, tmp_path / "nested/root/store" / (sha(b"c") + ".partial"))
    assert bs.commit(m).model_path == str(tmp_path / "nested/root/calib" / tree_digest(m))


def test_copy_when_hard_link_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_link(src: str, dst: str) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(store_mod.os, "link", no_link)
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    root = tmp_path / "root"
    (root / "store").mkdir(parents=True)
    shutil.copyfile(f, root / "store" / (sha(b"weights") + ".partial"))
    out = Path(BlobStore(str(root)).commit(build_manifest(str(f))).model_path) / "w.bin"
    assert out.read_bytes() == b"weights" and out.stat().st_nlink == 1
