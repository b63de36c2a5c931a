"""The device's verdict on its own convert plan (`ConversionPlan.blockers`): why a plan
cannot work, decided by the agent; the host only reads it (a dry run exits 1)."""

from __future__ import annotations

from pathlib import Path

from helpers import agent_json

from device_agent.jobplan import shape_blockers
from device_agent.protocol import (
    ConversionPlan,
    ConvertOptions,
    ConvertSpec,
    DevicePlan,
    TensorInfo,
)
from device_agent.savedmodel_meta import Signature


def _signature(*inputs: TensorInfo) -> Signature:
    return Signature(key="serving_default", method_name="predict", inputs=list(inputs))


def test_shapes_for_another_models_inputs_are_named() -> None:
    sig = _signature(TensorInfo("flatten_input", "float32", [None, 28, 28]))
    bert = ConvertOptions(build_shapes=[{"input_ids": [1, 128], "attention_mask": [1, 128]}])
    (why,) = shape_blockers(bert, sig)
    assert "attention_mask, input_ids" in why and "flatten_input" in why
    assert shape_blockers(ConvertOptions(build_shapes=[{"flatten_input": [1, 28, 28]}]), sig) == []
    assert shape_blockers(ConvertOptions(), sig) == []


def test_a_shape_the_input_cannot_take_is_named() -> None:
    sig = _signature(TensorInfo("x", "float32", [None, None, 3]))
    (rank,) = shape_blockers(ConvertOptions(build_shapes=[{"x": [1, 3]}]), sig)
    assert "profile 1" in rank and "rank 3" in rank
    (partial,) = shape_blockers(ConvertOptions(build_shapes=[{"x": [1, 8, 3]}, {}]), sig)
    assert "profile 2" in partial and "'x'" in partial  # a dynamic dim left without a size
    assert shape_blockers(ConvertOptions(build_shapes=[{"x": [1, 8, 3]}]), sig) == []


def test_blockers_round_trip_and_default_to_none() -> None:
    plan = ConversionPlan(backend="native", blockers=["a reason"])
    assert ConversionPlan.from_json(plan.to_json()).blockers == ["a reason"]
    old = plan.to_dict()
    del old["blockers"]  # an older agent's answer: no verdict, nothing blocks
    assert ConversionPlan.from_dict(old).blockers == []


def test_the_agent_plan_carries_the_verdict(tmp_path: Path, mnist_model: Path) -> None:
    root = tmp_path / "root"

    def plan(options: ConvertOptions) -> ConversionPlan:
        spec = ConvertSpec(model=str(mnist_model), convert=options)
        return DevicePlan.from_dict(agent_json(root, "plan", input=spec.to_json())).plan

    assert plan(ConvertOptions()).blockers == []
    (shapes,) = plan(ConvertOptions(build_shapes=[{"input_ids": [1, 128]}])).blockers
    assert "input_ids" in shapes and "flatten_input" in shapes
    (backend,) = plan(ConvertOptions(backend="tftrt")).blockers  # no TF-TRT on this machine
    assert "tftrt requested" in backend and "would fail" in backend
