"""Planner: memory numbers for every Jetson module, the segment-size sweep (synthetic and on
a real frozen MobileNetV2), cache keys, and plans that bind to the real
`TrtGraphConverterV2`. The OOM ladder's tests are backends/test_ladder.py."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from device_agent import jetson, planner
from device_agent.backends import tftrt
from device_agent.errors import AgentError
from device_agent.protocol import (
    ConversionPlan,
    ConverterKnobs,
    ConvertOptions,
    DeviceFacts,
    JetsonInfo,
    SweepPoint,
)
from device_agent.segments import COMMON_SUPPORTED_OPS, segments_in_graph, sweep_choice
from device_agent.summary import summarize_graph_def

REPO = Path(__file__).resolve().parents[2]
PY38 = "/root/.pyenv/versions/3.8.18/bin/python"
MB = 1 << 20
FLOOR_MB = planner.WORKSPACE_FLOOR // MB
BY_MEMORY = sorted(jetson.MODULES, key=lambda m: m.memory_mb)


def jetson_facts(mod: jetson.Module, swap_mb: int = 0, trt: Optional[str] = "8.5.2") -> DeviceFacts:
    """Facts of a board from the module table: MemTotal = nominal, 70% available."""
    return DeviceFacts(
        agent_version="0.0.0",
        protocol=1,
        python="3.8.10",
        machine="aarch64",
        hostname=mod.device_class,
        memory_total_mb=mod.memory_mb,
        memory_available_mb=int(mod.memory_mb * 0.7),
        swap_total_mb=swap_mb,
        disk_free_mb=20000,
        tensorflow="2.12.0+nv23.06",
        jetson=JetsonInfo(
            module=mod.name,
            l4t="35.4.1",
            jetpack="5.1.2",
            compute_capability=mod.compute_capability,
            memory_mb=mod.memory_mb,
            soc=mod.soc,
            device_class=mod.device_class,
        ),
        tensorrt_enabled=trt is not None,
        tensorrt_linked=trt,
        tensorrt_loaded=trt,
    )


def host_facts(total_mb: int = 16384) -> DeviceFacts:
    return DeviceFacts(
        agent_version="0.0.0", protocol=1, python="3.11.7", machine="x86_64", hostname="ws",
        memory_total_mb=total_mb, memory_available_mb=int(total_mb * 0.7), swap_total_mb=0,
        disk_free_mb=20000, tensorflow="2.15.1",
    )  # fmt: skip


def module(slug: str) -> jetson.Module:
    found = jetson.find_module(slug)
    assert found is not None
    return found


# --------------------------------------------------------------------------- memory


@pytest.mark.parametrize("precision", ["FP32", "FP16", "INT8"])
@pytest.mark.parametrize("mod", jetson.MODULES, ids=lambda m: m.device_class)
def test_every_module_gets_a_workspace_within_floor_and_cap(
    mod: jetson.Module, precision: str
) -> None:
    facts = jetson_facts(mod)
    plan = planner.plan_memory(facts, 14 * MB, precision)
    cap = planner.workspace_cap(mod.memory_mb)
    assert plan.cap_bytes == cap
    assert planner.WORKSPACE_FLOOR <= plan.workspace_bytes <= cap
    assert plan.workspace_bytes % MB == 0
    # the workspace is half of what is left, capped, and never more than what is left
    assert plan.workspace_bytes // MB == max(FLOOR_MB, min(plan.left_mb // 2, cap // MB))
    assert plan.workspace_bytes // MB <= plan.left_mb
    # Jetson: a TF logical-device limit that holds TF's copy, engine, workspace, headroom
    assert plan.tf_gpu_memory_limit_mb is not None
    engine = -(-14 * planner.ENGINE_FACTORS[precision] // 1)
    needed = 14 + engine + plan.workspace_bytes // MB + planner.TF_HEADROOM_MB
    assert needed <= plan.tf_gpu_memory_limit_mb <= plan.budget_mb
    text = "\n".join(plan.arithmetic)
    assert f"total {mod.memory_mb} MB" in text and f"available {int(mod.memory_mb * 0.7)}" in text
    assert f"-> {plan.workspace_bytes // MB} MB" in text
    assert "unified memory" in text


def test_small_boards_have_tight_caps() -> None:
    assert planner.workspace_cap(module("nano-4gb").memory_mb) <= 512 * MB
    assert planner.workspace_cap(module("nano-2gb").memory_mb) < 256 * MB
    assert 2048 * MB <= planner.workspace_cap(module("agx-orin-64gb").memory_mb) <= 8192 * MB
    caps = [planner.workspace_cap(m.memory_mb) for m in BY_MEMORY]
    assert caps == sorted(caps)


@pytest.mark.parametrize("model_mb", [14, 100])
@pytest.mark.parametrize("precision", ["FP32", "FP16"])
def test_bigger_boards_never_get_less(model_mb: int, precision: str) -> None:
    previous = (0, 0)
    for mod in BY_MEMORY:
        try:
            plan = planner.plan_memory(jetson_facts(mod), model_mb * MB, precision)
        except AgentError:
            assert previous == (0, 0), f"{mod.device_class} refused after a smaller board fit"
            continue
        current = (plan.workspace_bytes, plan.tf_gpu_memory_limit_mb or 0)
        assert current[0] >= previous[0] and current[1] >= previous[1], mod.device_class
        previous = current


def test_numbers_for_the_reference_boards() -> None:
    """The numbers quoted in the project notes (total = nominal, 70% available, no swap)."""
    got = {
        (slug, mb): planner.plan_memory(jetson_facts(module(slug)), mb * MB, "FP32")
        for slug in ("nano-4gb", "orin-nano-8gb", "agx-orin-64gb")
        for mb in (14, 100)
    }
    assert {k: (p.workspace_bytes // MB, p.tf_gpu_memory_limit_mb) for k, p in got.items()} == {
        ("nano-4gb", 14): (256, 2341),
        ("nano-4gb", 100): (256, 2255),
        ("orin-nano-8gb", 14): (1024, 5208),
        ("orin-nano-8gb", 100): (1024, 5122),
        ("agx-orin-64gb", 14): (4096, 45349),
        ("agx-orin-64gb", 100): (4096, 45263),
    }
    lines = got[("nano-4gb", 14)].arithmetic
    assert (
        "model weights 14 MB x 3 (TF copy 1 + frozen graph 1 + FP32 engine build 1) = 42 MB"
        in lines
    )
    assert "left for the TensorRT workspace: 2867 - 42 - 768 = 2057 MB" in lines


def test_non_jetson_host_plans_from_host_memory() -> None:
    plan = planner.plan_memory(host_facts(16384), 14 * MB, "FP32")
    assert planner.WORKSPACE_FLOOR <= plan.workspace_bytes <= planner.workspace_cap(16384)
    assert plan.tf_gpu_memory_limit_mb is None  # memory growth off-Jetson
    assert "is not a Jetson" in plan.arithmetic[0] and "total 16384 MB" in plan.arithmetic[0]
    assert any("growth" in line for line in plan.arithmetic)
    assert planner.plan_memory(host_facts(16384), 14 * MB, "FP32", tf_limit_mb=3000)\
        .tf_gpu_memory_limit_mb == 3000  # fmt: skip


@pytest.mark.parametrize("mod", jetson.MODULES, ids=lambda m: m.device_class)
def test_fp16_working_set_is_at_most_fp32(mod: jetson.Module) -> None:
    facts = jetson_facts(mod)
    fp32 = planner.plan_memory(facts, 14 * MB, "FP32")
    fp16 = planner.plan_memory(facts, 14 * MB, "FP16")
    int8 = planner.plan_memory(facts, 14 * MB, "INT8")
    assert fp16.working_set_mb <= fp32.working_set_mb <= int8.working_set_mb
    assert fp16.workspace_bytes >= fp32.workspace_bytes >= int8.workspace_bytes


def test_explicit_workspace_is_used_as_given_but_checked() -> None:
    facts = jetson_facts(module("orin-nano-8gb"))
    given = 300 * MB + 12345
    plan = planner.plan_memory(facts, 14 * MB, "FP16", workspace_bytes=given)
    assert plan.workspace_bytes == given
    assert any("as given" in line for line in plan.arithmetic)
    assert not any("WARNING" in line for line in plan.arithmetic)
    nano = planner.plan_memory(jetson_facts(module("nano-4gb")), 14 * MB, "FP32", 8 << 30)
    assert nano.workspace_bytes == 8 << 30
    assert any(line.startswith("WARNING: the given workspace exceeds") for line in nano.arithmetic)
    tiny = planner.plan_memory(facts, 14 * MB, "FP32", workspace_bytes=4 * MB)
    assert tiny.workspace_bytes == 4 * MB
    assert any("below the 32 MB floor" in line for line in tiny.arithmetic)
    limited = planner.plan_memory(facts, 14 * MB, "FP32", tf_limit_mb=200)
    assert limited.tf_gpu_memory_limit_mb == 200
    assert any("WARNING: below the" in line for line in limited.arithmetic)


def test_refuses_a_model_too_big_for_the_board_with_numbers_and_remedies() -> None:
    facts = jetson_facts(module("nano-4gb"))
    with pytest.raises(AgentError) as info:
        planner.plan_memory(facts, 1000 * MB, "FP32")
    message = str(info.value)
    for number in ("1000 MB", "budget 2867 MB", "total 4096", "available 2867", "3000 MB",
                   "768 MB", "-901 MB", "32 MB"):  # fmt: skip
        assert number in message, number
    assert "swap" in message and "FP16" in message and "close other processes" in message
    assert "swapfile" in info.value.hint and "nvzramconfig" in info.value.hint
    # ... and the remedy is real: with a 4 GB swapfile the same model gets a plan
    swapped = planner.plan_memory(jetson_facts(module("nano-4gb"), swap_mb=4096), 1000 * MB, "FP32")
    assert swapped.workspace_bytes >= planner.WORKSPACE_FLOOR
    assert any("swappable host copies 1512" in line for line in swapped.arithmetic)
    # the 2 GB Nano refuses a 100 MB model without swap
    with pytest.raises(AgentError, match="swap"):
        planner.plan_memory(jetson_facts(module("nano-2gb")), 100 * MB, "FP16")


# --------------------------------------------------------------------------- segment sweep


def pts(*rows: tuple) -> List[SweepPoint]:
    return [SweepPoint(size, engines, pct) for size, engines, pct in rows]


SYNTHETIC = pts((3, 25, 90.0), (5, 12, 85.0), (8, 8, 85.0), (12, 4, 70.0))


def test_choice_prefers_most_converted_then_smallest_size() -> None:
    assert planner.choose_segment_size(SYNTHETIC, 10).minimum_segment_size == 8
    # 5 and 8 tie on percent within 20 engines: the smaller size wins
    assert planner.choose_segment_size(SYNTHETIC, 20).minimum_segment_size == 5
    assert planner.choose_segment_size(SYNTHETIC, None).minimum_segment_size == 5  # default 20
    assert planner.choose_segment_size(SYNTHETIC, 0).minimum_segment_size == 3  # <= 0: no limit
    assert sweep_choice(SYNTHETIC, 10) == (SYNTHETIC[2], True)


def test_choice_when_no_point_is_within_the_target() -> None:
    chosen, within = sweep_choice(SYNTHETIC, 2)
    assert (chosen.minimum_segment_size, within) == (12, False)
    tied = pts((3, 9, 60.0), (5, 4, 50.0), (8, 4, 55.0), (12, 4, 55.0))
    assert sweep_choice(tied, 3) == (tied[2], False)  # fewest, then most converted, smallest
    with pytest.raises(ValueError):
        sweep_choice([], 3)


def test_sweep_sizes() -> None:
    assert planner.sweep_sizes() == [3, 5, 8, 12, 20, 30, 50]
    assert planner.sweep_sizes(10) == [10, 12, 20, 30, 50]
    assert planner.sweep_sizes(-1) == [3, 5, 8, 12, 20, 30, 50]


def test_run_sweep_stops_at_the_first_point_within_the_target() -> None:
    table = {p.minimum_segment_size: p for p in SYNTHETIC}
    calls: List[int] = []

    def count(size: int) -> SweepPoint:
        calls.append(size)
        return table[size]

    logs: List[str] = []
    chosen, points = planner.run_sweep(count, [12, 3, 8, 5, 3, -1], 15, log=logs.append)
    assert calls == [3, 5] and chosen is SYNTHETIC[1] and points == SYNTHETIC[:2]
    assert "chose minimum_segment_size=5 (within the target of 15 engines)" in logs[-1]
    calls.clear()
    chosen, points = planner.run_sweep(count, [3, 5, 8, 12], 1, log=logs.append)
    assert calls == [3, 5, 8, 12] and chosen.minimum_segment_size == 12
    assert "none within" in logs[-1]


@pytest.fixture(scope="module")
def frozen_mobilenet() -> Any:
    """A real MobileNetV2 (alpha 0.35, 32x32), frozen as TF-TRT freezes before segmenting."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    tf.keras.utils.set_random_seed(2)
    model = tf.keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32)])
    def serve(images: Any) -> Any:
        return model(images, training=False)

    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    return frozen.graph.as_graph_def()


SIZES = list(range(1, 61))


@pytest.mark.slow
@pytest.mark.parametrize(
    "denied", [(), ("AddV2",), ("AddV2", "Relu6")], ids=["all", "deny-AddV2", "deny-AddV2-Relu6"]
)
def test_segments_of_a_real_frozen_graph(frozen_mobilenet: Any, denied: tuple) -> None:
    supported = COMMON_SUPPORTED_OPS - set(denied)
    summary = summarize_graph_def(frozen_mobilenet)
    assert summary.ops_total == len(frozen_mobilenet.node)
    points = [segments_in_graph(frozen_mobilenet, size, supported) for size in SIZES]
    engines = [p.engines for p in points]
    converted = [p.ops_converted for p in points]
    assert engines == sorted(engines, reverse=True)  # non-increasing as the size grows
    assert converted == sorted(converted, reverse=True)
    for p in points:
        assert p.percent_converted == pytest.approx(p.ops_converted / summary.ops_total * 100)
        assert 0 <= p.ops_converted < summary.ops_total  # the Placeholder never converts
    if not denied:
        assert engines[0] == 1  # everything but the input/NoOp is one segment
    else:
        assert engines[0] > 5
        # max_engines keeps the largest segments, as TF_TRT_MAX_ALLOWED_ENGINES does
        capped = segments_in_graph(frozen_mobilenet, 1, supported, max_engines=3)
        assert capped.engines == 3 and capped.ops_converted <= points[0].ops_converted
    assert segments_in_graph(frozen_mobilenet, -1, supported).engines == 0  # -1: no conversion


@pytest.mark.slow
@pytest.mark.parametrize("target", [None, 20, 8, 5, 2, 1])
def test_early_stop_matches_the_full_sweep_on_a_real_graph(
    frozen_mobilenet: Any, target: Optional[int]
) -> None:
    supported = COMMON_SUPPORTED_OPS - {"AddV2"}  # like TF_TRT_OP_DENYLIST=AddV2

    def count(size: int) -> SweepPoint:
        return segments_in_graph(frozen_mobilenet, size, supported)

    full = [count(size) for size in planner.sweep_sizes()]
    chosen, points = planner.run_sweep(count, planner.sweep_sizes(), target)
    assert chosen == planner.choose_segment_size(full, target)
    assert points == full[: len(points)]
    if target == 5:
        # 11 engines from size 3 through 20, then 6, then 1: a plateau is no place to stop
        assert [p.engines for p in full[:5]] == [11] * 5
        assert chosen.minimum_segment_size == 50 and chosen.engines == 1


# --------------------------------------------------------------------------- cache key

JETSON_FP = planner.fingerprint(jetson_facts(module("orin-nano-8gb")))

# One changed value for every ConvertOptions field that changes the artifact.
ARTIFACT_CHANGES: Dict[str, Any] = {
    "int8_mode": "qdq",
    "dla_core": 1,
    "fp32_layers": ["softmax"],
    "optimization_level": 5,
    "onnx_opset": 13,
    "nchw_inputs": ["x"],
    "backend": "native",
    "precision": "FP16",
    "signature_key": "predict",
    "tags": ["serve", "gpu"],
    "max_workspace_size_bytes": 256 * MB,
    "minimum_segment_size": 5,
    "maximum_cached_engines": 2,
    "use_calibration": False,
    "allow_build_at_runtime": False,
    "use_dynamic_shape": True,
    "dynamic_shape_profile_strategy": "Optimal",
    "build_shapes": [{"x": [1, 224, 224, 3]}],
    "build": False,
    "max_engines": 5,
    "op_denylist": ["Shape"],
    "experimental_features": ["remove_native_segments"],
    "allow_engine_native_segment_execution": False,
    "calibration_batches": 4,
    "calibration_batch_size": 2,
    "minimum_segment_size_auto": True,
}
NON_ARTIFACT_CHANGES: Dict[str, Any] = {
    "run_validation": True, "atol": 1e-3, "rtol": 1e-2, "use_cache": False,
    "show_detailed_report": False, "export_graph_viz": True, "tf_gpu_memory_limit_mb": 1024,
}  # fmt: skip


def test_every_option_field_is_classified() -> None:
    names = {f.name for f in dataclasses.fields(ConvertOptions)}
    knobs = {f.name for f in dataclasses.fields(ConverterKnobs)}
    assert set(ARTIFACT_CHANGES) | set(NON_ARTIFACT_CHANGES) == names
    assert set(ARTIFACT_CHANGES) == knobs  # the key is made of the knobs' type
    options = dataclasses.replace(ConvertOptions(), **ARTIFACT_CHANGES, **NON_ARTIFACT_CHANGES)
    assert options.knobs().to_dict() == ConverterKnobs(**ARTIFACT_CHANGES).to_dict()


def test_fingerprint() -> None:
    assert JETSON_FP == {"module": "orin-nano-8gb", "compute_capability": "8.7", "l4t": "35.4.1",
                         "tensorrt": "8.5.2", "tensorflow": "2.12.0+nv23.06"}  # fmt: skip
    facts = jetson_facts(module("orin-nano-8gb"))
    facts.tensorrt_loaded = "8.5.3"
    assert planner.fingerprint(facts)["tensorrt"] == "8.5.3"  # loaded wins over linked
    assert planner.fingerprint(host_facts()) == {
        "module": "x86_64 host", "compute_capability": None, "l4t": None, "tensorrt": None,
        "tensorflow": "2.15.1"}  # fmt: skip
    assert planner.fingerprint(facts, engines=False) == dict(
        planner.fingerprint(facts), tensorrt=None
    )  # a native build depends on no TensorRT


def test_cache_key_is_stable() -> None:
    options = ConvertOptions(precision="INT8")
    key = planner.cache_key("sha256:abc", options, JETSON_FP)
    assert len(key) == 64 and int(key, 16) >= 0
    again = planner.cache_key("sha256:abc", ConvertOptions.from_json(options.to_json()),
                              dict(reversed(list(JETSON_FP.items()))))  # fmt: skip
    assert again == key


@pytest.mark.parametrize("name", sorted(ARTIFACT_CHANGES))
def test_cache_key_changes_with_every_artifact_option(name: str) -> None:
    base = ConvertOptions(precision="INT8")  # INT8: the calibration fields count too
    changed = dataclasses.replace(base, **{name: ARTIFACT_CHANGES[name]})
    assert planner.cache_key("d", changed, JETSON_FP) != planner.cache_key("d", base, JETSON_FP)


@pytest.mark.parametrize("name", sorted(NON_ARTIFACT_CHANGES))
def test_cache_key_ignores_what_does_not_change_the_artifact(name: str) -> None:
    base = ConvertOptions(precision="FP16")
    changed = dataclasses.replace(base, **{name: NON_ARTIFACT_CHANGES[name]})
    assert planner.cache_key("d", changed, JETSON_FP) == planner.cache_key("d", base, JETSON_FP)


def test_cache_key_calibration_only_counts_for_int8() -> None:
    fp16 = ConvertOptions(precision="FP16")
    int8_only = [f.name for f in dataclasses.fields(ConverterKnobs) if f.metadata.get("int8_only")]
    assert sorted(int8_only) == [
        "calibration_batch_size",
        "calibration_batches",
        "int8_mode",
        "use_calibration",
    ]
    for name in int8_only:
        changed = dataclasses.replace(fp16, **{name: ARTIFACT_CHANGES[name]})
        assert planner.cache_key("d", changed, JETSON_FP) == planner.cache_key("d", fp16, JETSON_FP)
    int8 = ConvertOptions(precision="INT8")
    assert planner.cache_key("d", int8, JETSON_FP, "c1") != planner.cache_key(
        "d", int8, JETSON_FP, "c2"
    )
    assert planner.cache_key("d", fp16, JETSON_FP, "c1") == planner.cache_key("d", fp16, JETSON_FP)


@pytest.mark.parametrize("key", planner.FINGERPRINT_KEYS)
def test_cache_key_changes_with_every_fingerprint_field(key: str) -> None:
    other = dict(JETSON_FP, **{key: "something else"})
    options = ConvertOptions()
    assert planner.cache_key("d", options, other) != planner.cache_key("d", options, JETSON_FP)
    assert planner.cache_key("e", options, JETSON_FP) != planner.cache_key("d", options, JETSON_FP)


def test_tensorrt_version_counts_for_engine_building_backends_only() -> None:
    # Two boards alike but for TensorRT: an engine built with one does not run on the other.
    other = dict(JETSON_FP, tensorrt="8.6.2")
    for backend, differs in (("tftrt", True), ("auto", True), ("native", False)):
        options = ConvertOptions(backend=backend)
        mine, theirs = (planner.cache_key("d", options, fp) for fp in (JETSON_FP, other))
        assert (mine != theirs) is differs, backend
    assert planner.counts_tensorrt("tftrt") and planner.counts_tensorrt("auto")
    assert not planner.counts_tensorrt("native")
    # ... and so through the plan, from the board's facts
    old, new = jetson_facts(module("orin-nano-8gb")), jetson_facts(module("orin-nano-8gb"))
    new.tensorrt_loaded = "8.6.2"
    for backend, differs in (("tftrt", True), ("native", False)):
        plans = [
            planner.make_plan(f, ConvertOptions(), backend, "/m", MB, "d", None) for f in (old, new)
        ]
        assert (plans[0].cache_key != plans[1].cache_key) is differs, backend
        assert plans[0].fingerprint["tensorrt"] == ("8.5.2" if differs else None)


def test_cache_key_names_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    # Keys made before the TensorRT version counted are not the keys of now.
    key = planner.cache_key("d", ConvertOptions(), JETSON_FP)
    monkeypatch.setattr(planner, "CACHE_KEY_VERSION", planner.CACHE_KEY_VERSION - 1)
    assert planner.cache_key("d", ConvertOptions(), JETSON_FP) != key


def test_same_build_group() -> None:
    assert planner.same_build_group(JETSON_FP, dict(JETSON_FP))
    for key in planner.FINGERPRINT_KEYS:
        assert not planner.same_build_group(JETSON_FP, dict(JETSON_FP, **{key: "x"}))
    for key in ("module", "l4t", "tensorrt"):
        unknown = dict(JETSON_FP, **{key: None})
        assert not planner.same_build_group(unknown, dict(unknown)), key
    other_board = planner.fingerprint(jetson_facts(module("orin-nx-8gb")))
    assert not planner.same_build_group(JETSON_FP, other_board)  # same SoC, other module
    host = planner.fingerprint(host_facts())
    assert planner.same_build_group(host, dict(host))  # hosts: no TensorRT needed
    assert not planner.same_build_group(host, JETSON_FP)


# --------------------------------------------------------------------------- make_plan


def real_init_signature() -> inspect.Signature:
    from tensorflow.python.compiler.tensorrt.trt_convert import TrtGraphConverterV2

    return inspect.signature(TrtGraphConverterV2.__init__)


PLAN_OPTIONS = [
    ConvertOptions(precision="FP16"),
    ConvertOptions(precision="INT8", calibration_batches=8, calibration_batch_size=4),
    ConvertOptions(precision="FP32", max_workspace_size_bytes=64 * MB, minimum_segment_size=5,
                   use_dynamic_shape=True, dynamic_shape_profile_strategy="Optimal",
                   build_shapes=[{"x": [1, 32, 32, 3]}], max_engines=8, op_denylist=["Shape"]),
]  # fmt: skip


@pytest.mark.parametrize("slug", ["nano-4gb", "xavier-nx-8gb", "orin-nano-8gb", "agx-orin-64gb"])
@pytest.mark.parametrize("options", PLAN_OPTIONS, ids=["fp16", "int8", "fp32-explicit"])
def test_plan_kwargs_bind_to_the_real_converter(slug: str, options: ConvertOptions) -> None:
    facts = jetson_facts(module(slug))
    plan = planner.make_plan(facts, options, "tftrt", "/models/m", 14 * MB, "sha256:m", 20)
    bound = real_init_signature().bind(None, **plan.converter_kwargs)
    memory = planner.plan_memory(facts, 14 * MB, options.precision,
                                 options.max_workspace_size_bytes)  # fmt: skip
    assert bound.arguments["max_workspace_size_bytes"] == plan.workspace_bytes
    assert plan.workspace_bytes == memory.workspace_bytes
    if options.max_workspace_size_bytes is not None:
        assert plan.workspace_bytes == options.max_workspace_size_bytes
    assert bound.arguments["precision_mode"] == options.precision
    assert bound.arguments["minimum_segment_size"] == options.minimum_segment_size
    assert plan.env == tftrt.trt_environment(options)
    assert plan.workspace_arithmetic == memory.arithmetic
    assert plan.tf_gpu_memory_limit_mb == memory.tf_gpu_memory_limit_mb
    assert plan.build_shapes == options.build_shapes
    assert plan.fingerprint == planner.fingerprint(facts)
    resolved = dataclasses.replace(options, backend="tftrt")  # the key names the backend used
    assert plan.cache_key == planner.cache_key("sha256:m", resolved, plan.fingerprint)
    assert options.max_workspace_size_bytes in (None, 64 * MB)  # the caller's options untouched
    if options.precision == "INT8":
        assert plan.calibration is not None
        assert (plan.calibration.batches, plan.calibration.batch_size) == (5, 4)  # 20 // 4
        assert plan.calibration.samples_available == 20
    else:
        assert plan.calibration is None
    assert ConversionPlan.from_json(plan.to_json()) == plan


def test_plan_calibration_and_backends() -> None:
    facts = jetson_facts(module("orin-nano-8gb"))
    int8 = ConvertOptions(precision="INT8", calibration_batches=8, calibration_batch_size=4)
    synthesized = planner.make_plan(facts, int8, "tftrt", "/m", MB, "d", None).calibration
    assert synthesized is not None
    assert (synthesized.batches, synthesized.samples_available) == (8, 0)
    with pytest.raises(AgentError, match="at least one batch of 4 samples"):
        planner.make_plan(facts, int8, "tftrt", "/m", MB, "d", 3)
    no_calib = dataclasses.replace(int8, use_calibration=False)
    assert planner.make_plan(facts, no_calib, "tftrt", "/m", MB, "d", 3).calibration is None
    # auto resolved to tftrt shares the cache key of an explicit tftrt request
    auto = planner.make_plan(facts, ConvertOptions(backend="auto"), "tftrt", "/m", MB, "d", None)
    explicit = planner.make_plan(facts, ConvertOptions(backend="tftrt"), "tftrt", "/m", MB, "d",
                                 None)  # fmt: skip
    assert auto.cache_key == explicit.cache_key
    native = planner.make_plan(host_facts(), ConvertOptions(), "native", "/m", MB, "d", None,
                               fallback_reason="auto: no TensorRT")  # fmt: skip
    assert native.converter_kwargs == {} and native.workspace_bytes is None
    assert native.fallback_reason == "auto: no TensorRT"
    assert native.workspace_arithmetic[-1] == "native backend: no TensorRT workspace is used"
    assert native.cache_key != auto.cache_key
    # a board too small for TensorRT still gets a native plan (no engine, no workspace)
    nano = jetson_facts(module("nano-2gb"))
    with pytest.raises(AgentError, match="does not fit"):
        planner.make_plan(nano, ConvertOptions(), "tftrt", "/m", 100 * MB, "d", None)
    small = planner.make_plan(nano, ConvertOptions(), "native", "/m", 100 * MB, "d", None)
    assert "does not fit" in small.workspace_arithmetic[0] and small.workspace_bytes is None


@pytest.mark.skipif(not os.path.exists(PY38), reason="no Python 3.8 interpreter here")
def test_plan_is_identical_on_python38() -> None:
    # The agent plans on JetPack 5's Python 3.8 (stdlib only): same plan, same cache key.
    facts = jetson_facts(module("orin-nano-8gb"))
    options = PLAN_OPTIONS[1]
    code = (
        "import sys, json; sys.path.insert(0, sys.argv[1])\n"
        "from device_agent import planner\n"
        "from device_agent.protocol import DeviceFacts, ConvertOptions\n"
        "f = DeviceFacts.from_json(sys.argv[2]); o = ConvertOptions.from_json(sys.argv[3])\n"
        "print(planner.make_plan(f, o, 'tftrt', '/m', 14 << 20, 'd', 20).to_json())\n"
    )
    out = subprocess.run(
        [PY38, "-c", code, str(REPO), facts.to_json(), options.to_json()],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    here = planner.make_plan(facts, options, "tftrt", "/m", 14 * MB, "d", 20)
    assert json.loads(out) == json.loads(here.to_json())
