"""The agent's `plan`: the device's own decisions for a convert job, nothing run; the key it
answers is the key the job files its conversion under. And push plans name the paths the
host may write (the store's layout is the agent's own)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import agent, agent_json

from device_agent.__main__ import main
from device_agent.protocol import (
    ConvertOptions,
    ConvertResult,
    DevicePlan,
    Event,
    JobSpec,
    Manifest,
    ManifestEntry,
)
from device_agent.serve import answer
from device_agent.store import BlobStore


@pytest.fixture
def calib_npz(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, flatten_input=np.random.default_rng(4).random((20, 28, 28),
                                                                 dtype=np.float32))
    return path


def _plan(root: Path, spec: JobSpec) -> DevicePlan:
    return DevicePlan.from_dict(agent_json(root, "plan", input=spec.to_json()))


def test_plan_is_what_the_job_does_and_the_cache_answers(tmp_path: Path, mnist_model: Path,
                                                         calib_npz: Path) -> None:
    root = tmp_path / "root"
    spec = JobSpec(kind="convert", model=str(mnist_model), calib=str(calib_npz),
                   convert=ConvertOptions(precision="INT8", calibration_batch_size=4,
                                          calibration_batches=3))
    before = _plan(root, spec)
    assert before.backend == "native" and before.backend_reason.startswith("auto:")
    assert before.options.backend == "native" and before.options.precision == "INT8"
    assert before.calibration is not None and before.calibration.samples == 20
    assert before.calibration.error is None
    assert before.cache_key == before.plan.cache_key and not before.cache_hit
    assert before.plan.workspace_arithmetic  # the memory plan
    assert not (root / "jobs").exists()  # nothing ran
    proc = agent(root, "submit", "-", input=spec.to_json(), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    result = ConvertResult.from_dict(next(e for e in events if e.kind == "result")
                                     .data["result"])
    assert result.plan is not None and result.plan.cache_key == before.cache_key
    after = _plan(root, spec)
    assert after.cache_key == before.cache_key and after.cache_hit
    other = _plan(root, JobSpec(kind="convert", model=str(mnist_model),
                                convert=ConvertOptions(minimum_segment_size=5)))
    assert other.cache_key != before.cache_key and not other.cache_hit
    assert other.calibration is None


def test_plan_reports_calibration_that_does_not_fit(tmp_path: Path, mnist_model: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, flatten_input=np.zeros((8, 28, 27), dtype=np.float32))
    spec = JobSpec(kind="convert", model=str(mnist_model), calib=str(bad),
                   convert=ConvertOptions(precision="INT8"))
    decided = _plan(tmp_path / "root", spec)
    assert decided.calibration is not None and decided.calibration.samples is None
    assert "[28, 27]" in (decided.calibration.error or "") and decided.calibration.hint


def test_named_backend_that_cannot_run_is_planned_with_the_reason(tmp_path: Path,
                                                                  mnist_model: Path) -> None:
    decided = _plan(tmp_path / "root", JobSpec(kind="convert", model=str(mnist_model),
                                               convert=ConvertOptions(backend="tftrt")))
    assert decided.backend == "tftrt" and decided.plan.converter_kwargs
    assert "not built with TensorRT" in (decided.plan.fallback_reason or "")


def test_plan_refuses_other_jobs_and_missing_models(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for spec in (JobSpec(kind="bench", model=str(tmp_path)),
                 JobSpec(kind="convert", model=str(tmp_path / "nothing"))):
        proc = agent(root, "plan", input=spec.to_json())
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout.splitlines()[-1])["error"]


def test_plan_is_served_by_a_child(tmp_path: Path, mnist_model: Path) -> None:
    spec = JobSpec(kind="convert", model=str(mnist_model))
    reply = answer(main, str(tmp_path / "root"),
                   {"id": 4, "argv": ["plan"],
                    "stdin": base64.b64encode(spec.to_json().encode()).decode()})
    assert reply["id"] == 4 and reply["exit"] == 0, reply
    decided = DevicePlan.from_json(reply["stdout"])
    assert decided.backend == "native" and len(decided.cache_key) == 64


def test_push_plan_names_every_path_the_host_writes(tmp_path: Path) -> None:
    small, big = b"small blob", bytes(range(256)) * 1024
    manifest = Manifest([ManifestEntry("a", len(small), hashlib.sha256(small).hexdigest()),
                         ManifestEntry("b", len(big), hashlib.sha256(big).hexdigest())])
    store = BlobStore(str(tmp_path / "root"))
    plan = store.plan(manifest, ranged_min=len(small))
    needs = {n.size: n for n in plan.missing}
    for need in plan.missing:
        assert Path(need.upload_path).is_file()  # prepared where the plan says
        assert Path(need.upload_path).parent == Path(store.store_dir)
    assert needs[len(small)].record_path == "" and not needs[len(small)].ranges
    assert needs[len(big)].ranges and Path(needs[len(big)].record_path).is_file()
    # the host writes there (as the SFTP upload does) and the commit takes it
    for need, data in ((needs[len(small)], small), (needs[len(big)], big)):
        Path(need.upload_path).write_bytes(data)
    assert Path(store.commit(manifest).model_path).is_dir()
