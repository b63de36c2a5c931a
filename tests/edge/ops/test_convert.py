"""Conversion that fits the board, end to end: calibration checks on the host and on the
agent, dry-run plans bound to the real converter, the cache, validation, and build-once
sharing across a real SSH fleet of identical simulated Jetsons."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA, agent, edge_bin
from sshfleet import SshFleet

from device_agent.protocol import ConvertOptions, ConvertResult, ConvertSpec, Event
from edge.fleet.devices import Device
from edge.fleet.inventory import Inventory


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", COLUMNS="160")
    return subprocess.run([edge_bin(), *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def calib_npz(tmp_path: Path) -> Path:
    path = tmp_path / "calib.npz"
    rng = np.random.default_rng(3)
    np.savez(path, flatten_input=rng.random((40, 28, 28), dtype=np.float32))
    return path


def test_dry_run_plans_bind_to_the_real_converter(mnist_model: Path, calib_npz: Path) -> None:
    from tensorflow.python.compiler.tensorrt.trt_convert import TrtGraphConverterV2

    proc = edge(
        "convert",
        str(mnist_model),
        "--backend",
        "tftrt",
        "--precision",
        "INT8",
        "--calib",
        str(calib_npz),
        "--calib-batch-size",
        "8",
        "--calib-batches",
        "3",
        "--max-engines",
        "2",
        "--dry-run",
        "--json",
    )
    # no TF-TRT here: the plan still prints, and the device's verdict makes it exit 1
    assert proc.returncode == 1, proc.stderr
    (row,) = json.loads(proc.stdout)
    plan = row["plan"]
    assert "local: cannot work: tftrt requested" in proc.stderr
    assert any("would fail" in b for b in plan["blockers"]), plan["blockers"]
    for key in (
        "backend",
        "converter_kwargs",
        "env",
        "workspace_bytes",
        "calibration",
        "build_shapes",
        "cache_key",
    ):
        assert key in plan
    inspect.signature(TrtGraphConverterV2.__init__).bind(None, **plan["converter_kwargs"])
    assert plan["converter_kwargs"]["precision_mode"] == "INT8"
    assert plan["converter_kwargs"]["max_workspace_size_bytes"] == plan["workspace_bytes"] > 0
    assert plan["env"]["TF_TRT_MAX_ALLOWED_ENGINES"] == "2"
    assert plan["calibration"]["batch_size"] == 8
    assert plan["calibration"]["batches"] == min(3, 40 // 8)
    assert "not built with TensorRT" in plan["fallback_reason"]
    # nothing ran: no job on the local device
    assert not (Path(os.environ["EDGE_LOCAL_ROOT"]) / "jobs").exists()


def test_calibration_mismatch_fails_on_the_host_before_any_push(
    tmp_path: Path, mnist_model: Path
) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, flatten_input=np.zeros((8, 28, 27), dtype=np.float32))
    proc = edge("convert", str(mnist_model), "--precision", "INT8", "--calib", str(bad))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "flatten_input" in proc.stderr and "[28, 28]" in proc.stderr
    assert "[28, 27]" in proc.stderr
    assert not (Path(os.environ["EDGE_LOCAL_ROOT"]) / "store").exists()
    wrong_name = tmp_path / "wrong.npz"
    np.savez(wrong_name, images=np.zeros((8, 28, 28), dtype=np.float32))
    proc = edge("convert", str(mnist_model), "--calib", str(wrong_name))
    assert proc.returncode == 1 and "flatten_input" in proc.stderr and "images" in proc.stderr


def test_calibration_mismatch_fails_on_the_agent_before_the_converter(
    tmp_path: Path, mnist_model: Path
) -> None:
    bad = tmp_path / "calib"
    bad.mkdir()
    np.save(bad / "flatten_input.npy", np.zeros((8, 28, 28), dtype=np.float64))
    spec = ConvertSpec(
        model=str(mnist_model), calib=str(bad), convert=ConvertOptions(precision="INT8")
    )
    proc = agent(tmp_path / "root", "submit", "-", input=spec.to_json())
    assert proc.returncode == 1
    events = [Event.from_json(line) for line in proc.stdout.splitlines() if line.strip()]
    result = ConvertResult.from_dict(next(e for e in events if e.kind == "result").data["result"])
    assert "float32" in result.error and "float64" in result.error
    assert not any("converting with" in e.message for e in events)


def test_cache_validation_and_sweep_on_local(mnist_model: Path, calib_npz: Path) -> None:
    args = (
        "convert",
        str(mnist_model),
        "--precision",
        "INT8",
        "--calib",
        str(calib_npz),
        "--validate",
        "--min-segment-size",
        "auto",
        "--json",
    )
    first = edge(*args)
    assert first.returncode == 0, first.stderr
    (a,) = [ConvertResult.from_dict(r) for r in json.loads(first.stdout)]
    assert a.cache == "built" and a.attempts and a.attempts[-1].outcome == "ok"
    assert a.validation is not None and a.validation.passed
    assert a.validation.inputs_from == "calibration"
    (check,) = a.validation.outputs.values()
    assert check.max_abs_err <= a.validation.atol and check.top1_agreement == 1.0
    assert a.segment_sweep and a.options.minimum_segment_size in [
        p.minimum_segment_size for p in a.segment_sweep
    ]
    second = edge(*args)
    (b,) = [ConvertResult.from_dict(r) for r in json.loads(second.stdout)]
    assert b.cache == "hit" and b.output_model == a.output_model
    assert b.plan.cache_key == a.plan.cache_key and b.attempts == []
    assert b.summary == a.summary
    changed = edge("convert", str(mnist_model), "--min-segment-size", "5", "--json")
    (c,) = [ConvertResult.from_dict(r) for r in json.loads(changed.stdout)]
    assert c.cache == "built" and c.plan.cache_key != a.plan.cache_key


def test_validate_command_fails_a_perturbed_model(tmp_path: Path, mnist_model: Path) -> None:
    import tensorflow as tf

    model = tf.keras.models.load_model(str(mnist_model))
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([kernel + 0.5, bias])
    perturbed = tmp_path / "perturbed"
    model.save(str(perturbed))
    same = edge("validate", str(mnist_model), str(mnist_model), "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)[0]["validation"]["passed"] is True
    bad = edge("validate", str(mnist_model), str(perturbed), "--json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)[0]["validation"]
    assert report["passed"] is False
    assert report["outputs"]["dense_1"]["max_abs_err"] > report["atol"]


def _simulated_jetson(root: Path, sysroot: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.json").write_text(json.dumps({"sysroot": str(DATA / "sysroots" / sysroot)}))


def test_identical_devices_build_once_and_share(
    ssh_env: SshFleet,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mnist_model: Path,
    device_python: Path,
) -> None:
    monkeypatch.setenv("EDGE_FLEET", str(tmp_path / "fleet.yaml"))
    inv = Inventory.load()
    boards = {
        "d1": "orin-nano-jp6",
        "d2": "orin-nano-jp6",
        "d3": "orin-nano-jp6",
        "d4": "xavier-nx-jp5",
    }
    for name, sysroot in boards.items():
        root = tmp_path / "roots" / name
        _simulated_jetson(root, sysroot)
        inv.add(Device(name=name, host=name, python=str(device_python), root=str(root)))
    inv.save()
    proc = edge("convert", str(mnist_model), "--to", "all", "--validate", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: ConvertResult.from_dict(r) for r in json.loads(proc.stdout)}
    orin = [rows[n] for n in ("d1", "d2", "d3")]
    builders = [r for r in orin if r.cache == "built"]
    assert len(builders) == 1  # one Orin Nano built ...
    leader = builders[0].device
    for r in orin:
        if r is not builders[0]:  # ... and the others received its build
            assert (r.cache, r.shared_from) == ("shared", leader)
            assert r.validation is not None and r.validation.passed
            assert r.summary == builders[0].summary
            assert r.plan.cache_key == builders[0].plan.cache_key
    assert rows["d4"].cache == "built" and rows["d4"].shared_from is None  # other fingerprint
    assert rows["d4"].plan.fingerprint["module"] != builders[0].plan.fingerprint["module"]
    # converting again is a cache hit everywhere
    again = {
        r["device"]: r
        for r in json.loads(edge("convert", str(mnist_model), "--to", "all", "--json").stdout)
    }
    assert {r["cache"] for r in again.values()} == {"hit"}
