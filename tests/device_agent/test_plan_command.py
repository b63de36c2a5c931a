"""The agent's `plan`: the device's own decisions for a convert job, nothing run; the key it
answers is the key the job files its conversion under. And push plans name the paths the
host may write (the store's layout is the agent's own)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
from helpers import agent, agent_cmd, agent_env, agent_json

from device_agent import facts, jobplan, planner
from device_agent.__main__ import main
from device_agent.protocol import (
    BenchSpec,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    DeviceFacts,
    DevicePlan,
    Event,
    JobSpec,
    Manifest,
    ManifestEntry,
)
from device_agent.serve import answer
from device_agent.store import BlobStore

PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def calib_npz(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, flatten_input=np.random.default_rng(4).random((20, 28, 28), dtype=np.float32))
    return path


def _plan(root: Path, spec: JobSpec) -> DevicePlan:
    return DevicePlan.from_dict(agent_json(root, "plan", input=spec.to_json()))


def test_plan_is_what_the_job_does_and_the_cache_answers(
    tmp_path: Path, mnist_model: Path, calib_npz: Path
) -> None:
    root = tmp_path / "root"
    spec = ConvertSpec(
        model=str(mnist_model),
        calib=str(calib_npz),
        convert=ConvertOptions(precision="INT8", calibration_batch_size=4, calibration_batches=3),
    )
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
    result = ConvertResult.from_dict(next(e for e in events if e.kind == "result").data["result"])
    assert result.plan is not None and result.plan.cache_key == before.cache_key
    after = _plan(root, spec)
    assert after.cache_key == before.cache_key and after.cache_hit
    other = _plan(
        root, ConvertSpec(model=str(mnist_model), convert=ConvertOptions(minimum_segment_size=5))
    )
    assert other.cache_key != before.cache_key and not other.cache_hit
    assert other.calibration is None


def test_plan_reports_calibration_that_does_not_fit(tmp_path: Path, mnist_model: Path) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, flatten_input=np.zeros((8, 28, 27), dtype=np.float32))
    spec = ConvertSpec(
        model=str(mnist_model), calib=str(bad), convert=ConvertOptions(precision="INT8")
    )
    decided = _plan(tmp_path / "root", spec)
    assert decided.calibration is not None and decided.calibration.samples is None
    assert "[28, 27]" in (decided.calibration.error or "") and decided.calibration.hint


def test_named_backend_that_cannot_run_is_planned_with_the_reason(
    tmp_path: Path, mnist_model: Path
) -> None:
    decided = _plan(
        tmp_path / "root",
        ConvertSpec(model=str(mnist_model), convert=ConvertOptions(backend="tftrt")),
    )
    assert decided.backend == "tftrt" and decided.plan.converter_kwargs
    assert "not built with TensorRT" in (decided.plan.fallback_reason or "")


def test_plan_refuses_other_jobs_and_missing_models(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for spec in (BenchSpec(model=str(tmp_path)), ConvertSpec(model=str(tmp_path / "nothing"))):
        proc = agent(root, "plan", input=spec.to_json())
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout.splitlines()[-1])["error"]


def test_plan_is_served_by_a_child(tmp_path: Path, mnist_model: Path) -> None:
    spec = ConvertSpec(model=str(mnist_model))
    reply = answer(
        main,
        str(tmp_path / "root"),
        {"id": 4, "argv": ["plan"], "stdin": base64.b64encode(spec.to_json().encode()).decode()},
    )
    assert reply["id"] == 4 and reply["exit"] == 0, reply
    decided = DevicePlan.from_json(reply["stdout"])
    assert decided.backend == "native" and len(decided.cache_key) == 64


def test_push_plan_names_every_path_the_host_writes(tmp_path: Path) -> None:
    small, big = b"small blob", bytes(range(256)) * 1024
    manifest = Manifest(
        [
            ManifestEntry("a", len(small), hashlib.sha256(small).hexdigest()),
            ManifestEntry("b", len(big), hashlib.sha256(big).hexdigest()),
        ]
    )
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


# --------------------------------------------------------------------------- the key's TensorRT


def _facts(trt: Optional[str] = None) -> DeviceFacts:
    return DeviceFacts(
        agent_version="0",
        protocol=1,
        python="3.8.10",
        machine="aarch64",
        hostname="b",
        memory_total_mb=8000,
        memory_available_mb=6000,
        swap_total_mb=0,
        disk_free_mb=1000,
        tensorflow="2.12.0",
        tensorrt_linked=trt,
        tensorrt_loaded=trt,
    )


def test_key_fingerprint_probes_tensorrt_for_engine_builds_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probed: List[str] = []

    def probe() -> Tuple[Optional[bool], Optional[str], Optional[str]]:
        probed.append("probe")
        return True, "8.5.2", "8.6.1"

    monkeypatch.setattr(facts, "probe_tensorrt", probe)
    assert jobplan.key_fingerprint(_facts(), "tftrt")["tensorrt"] == "8.6.1"  # loaded wins
    assert probed == ["probe"]
    assert jobplan.key_fingerprint(_facts(), "native")["tensorrt"] is None
    assert jobplan.key_fingerprint(_facts("8.5.2"), "native")["tensorrt"] is None
    assert probed == ["probe"]  # a native build needs no TensorRT: not probed
    # facts from a deep collect already know it; the rest is the facts' own fingerprint
    deep = _facts("8.4.1")
    assert jobplan.key_fingerprint(deep, "tftrt") == planner.fingerprint(deep)
    assert probed == ["probe"]
    monkeypatch.setattr(facts, "probe_tensorrt", lambda: (False, "8.5.2", None))
    assert jobplan.key_fingerprint(_facts(), "tftrt")["tensorrt"] == "8.5.2"  # linked only


def _plugin_env(tmp_path: Path, trt: str) -> Dict[str, str]:
    """The real agent's environment with the copy backend (it builds "engines") first in
    `auto`, and TF-TRT reporting TensorRT `trt` (plugins/fake_tensorrt.py), in every agent
    process: the `plan` one, the submitting one and its detached worker."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        "import copy_backend, fake_tensorrt\ncopy_backend.install()\nfake_tensorrt.install()\n"
    )
    env = agent_env()
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(PLUGINS), env["PYTHONPATH"]])
    env["FAKE_TENSORRT"] = trt
    return env


def _run(
    root: Path, env: Dict[str, str], *args: str, spec: JobSpec
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent_cmd(root) + list(args),
        input=spec.to_json(),
        text=True,
        capture_output=True,
        env=env,
        timeout=300,
    )


def _plan_with(root: Path, env: Dict[str, str], spec: JobSpec) -> DevicePlan:
    proc = _run(root, env, "plan", spec=spec)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return DevicePlan.from_json(proc.stdout.strip().splitlines()[-1])


def test_the_engine_builds_key_holds_tensorrt_and_is_the_jobs(
    tmp_path: Path, tiny_model: Path
) -> None:
    root = tmp_path / "root"
    env = _plugin_env(tmp_path, "8.5.2")
    newer = dict(env, FAKE_TENSORRT="8.6.1")
    spec = ConvertSpec(model=str(tiny_model), convert=ConvertOptions())
    before = _plan_with(root, env, spec)
    assert before.backend == "copy" and before.shareable and not before.cache_hit
    assert before.plan.fingerprint["tensorrt"] == "8.5.2"
    other_trt = _plan_with(root, newer, spec)
    assert other_trt.plan.fingerprint["tensorrt"] == "8.6.1"
    assert other_trt.cache_key != before.cache_key  # an engine is TensorRT's own
    assert dict(other_trt.plan.fingerprint, tensorrt="8.5.2") == before.plan.fingerprint

    proc = _run(root, env, "submit", "-", spec=spec)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    result = ConvertResult.from_dict(next(e for e in events if e.kind == "result").data["result"])
    assert result.cache == "built" and result.plan is not None
    assert result.plan.cache_key == before.cache_key
    assert result.plan.fingerprint == before.plan.fingerprint
    assert (root / "cache" / before.cache_key / "complete").is_file()  # filed under that key
    assert _plan_with(root, env, spec).cache_hit
    assert not _plan_with(root, newer, spec).cache_hit

    # a native build's key holds no TensorRT: the same whatever TF-TRT reports
    native = dataclasses.replace(spec, convert=ConvertOptions(backend="native"))
    plans = [_plan_with(root, e, native) for e in (env, newer)]
    assert plans[0].cache_key == plans[1].cache_key != before.cache_key
    assert plans[0].plan.fingerprint["tensorrt"] is None
