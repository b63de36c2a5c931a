"""Every protocol dataclass round-trips through JSON; validation names the bad field."""

from __future__ import annotations

import json

import pytest

from device_agent.protocol import (
    PROTOCOL_VERSION,
    BenchOptions,
    BenchResult,
    BenchRun,
    BenchSpec,
    ConversionSummary,
    ConvertOptions,
    ConvertResult,
    ConvertSpec,
    DeviceFacts,
    Engine,
    Event,
    JetsonInfo,
    JobSpec,
    JobState,
    LatencyStats,
    NonConverted,
    ProtocolError,
    TensorInfo,
    ValidateSpec,
    result_from_dict,
    spec_from_json,
)


def sample_convert_result() -> ConvertResult:
    summary = ConversionSummary(
        engines=[
            Engine(
                name="TRTEngineOp_000_000",
                nodes=12,
                ops={"Conv2D": 4, "Relu6": 8},
                input_dtypes=["float32"],
                output_dtypes=["float32"],
                input_shapes=["[-1,32,32,3]"],
                output_shapes=["[-1,10]"],
            )
        ],
        ops_total=20,
        ops_converted=12,
        percent_converted=60.0,
        op_histogram={"Identity": 2},
        inputs=[TensorInfo("x", "float32", [None, 32, 32, 3])],
        outputs=[TensorInfo("y", "float32", [None, 10])],
        non_converted=[NonConverted("Shape", 2, "Denylisted")],
    )
    return ConvertResult(
        device="nano",
        status="succeeded",
        backend="tftrt",
        precision="FP16",
        output_model="/m/out",
        summary=summary,
        options=ConvertOptions(precision="FP16", build_shapes=[{"x": [1, 32]}]),
    )


@pytest.mark.parametrize(
    "obj",
    [
        sample_convert_result(),
        BenchResult(
            device="d",
            status="succeeded",
            backend="native",
            options=BenchOptions(),
            runs=[
                BenchRun(
                    batch_size=8,
                    iterations=100,
                    throughput_per_s=10.5,
                    latency_ms=LatencyStats(1, 2, 3, 4, 2.5, 0.5, 9, 0.3, 0.12),
                )
            ],
        ),
        DeviceFacts(
            "0.1",
            1,
            "3.8.10",
            "aarch64",
            "nx",
            7600,
            5000,
            3800,
            20000,
            "2.11.0",
            jetson=JetsonInfo(module="Jetson Xavier NX", l4t="35.3.1", jetpack="5.1.1"),
        ),
        BenchSpec(model="/m", bench=BenchOptions(batch_sizes=[1, 4])),
        Event(seq=3, ts=1.5, kind="status", status="running", data={"a": [1, 2]}),
        JobState(
            job_id="j",
            kind="convert",
            status="failed",
            created_at=1,
            updated_at=2,
            error="x",
            log_tail="a\nb",
        ),
    ],
    ids=lambda o: type(o).__name__,
)
def test_round_trip(obj: object) -> None:
    text = obj.to_json()  # type: ignore[attr-defined]
    back = type(obj).from_json(text)  # type: ignore[attr-defined]
    assert back == obj
    assert json.loads(back.to_json()) == json.loads(text)


def test_unknown_fields_from_a_newer_writer_are_ignored() -> None:
    data = sample_convert_result().to_dict()
    data["added_in_protocol_2"] = {"x": 1}
    assert result_from_dict("convert", data) == sample_convert_result()


def test_version_and_kind_checks() -> None:
    with pytest.raises(ProtocolError, match="protocol"):
        BenchSpec(model="/m", protocol=PROTOCOL_VERSION + 1).validate()
    with pytest.raises(ProtocolError, match="kind"):
        JobSpec(kind="train", model="/m").validate()
    with pytest.raises(ProtocolError, match="kind"):
        BenchSpec(kind="convert", model="/m").validate()  # a kind's fields, another's name
    with pytest.raises(ProtocolError, match="'train'"):
        spec_from_json('{"kind": "train", "model": "/m"}')
    with pytest.raises(ProtocolError, match="None"):
        spec_from_json('{"model": "/m"}')


@pytest.mark.parametrize(
    "spec",
    [
        ConvertSpec(model="/m", convert=ConvertOptions(precision="INT8"), calib="/c", output="/o"),
        BenchSpec(model="/m", bench=BenchOptions(batch_sizes=[2]), native="/n"),
        ValidateSpec(model="/m", converted="/c"),
    ],
    ids=lambda s: s.kind,
)
def test_one_spec_per_kind_decodes_as_its_own_type(spec: JobSpec) -> None:
    back = spec_from_json(spec.to_json())
    assert type(back) is type(spec) and back == spec
    assert json.loads(spec.to_json())["kind"] == spec.kind
    with pytest.raises(ProtocolError):
        result_from_dict("train", {})


@pytest.mark.parametrize(
    "change, word",
    [
        ({"precision": "FP8"}, "precision"),
        ({"backend": "onnx"}, "backend"),
        ({"dynamic_shape_profile_strategy": "Fastest"}, "strategy"),
        ({"minimum_segment_size": 0}, "minimum_segment_size"),
        ({"maximum_cached_engines": 0}, "maximum_cached_engines"),
        ({"max_workspace_size_bytes": -5}, "workspace"),
    ],
)
def test_convert_options_validation(change: dict, word: str) -> None:
    with pytest.raises(ProtocolError, match=word):
        ConvertOptions(**change).validate()
    ConvertOptions(minimum_segment_size=-1).validate()  # -1 disables conversion; allowed


def test_bench_options_validation() -> None:
    with pytest.raises(ProtocolError):
        BenchOptions(batch_sizes=[]).validate()
    with pytest.raises(ProtocolError):
        BenchOptions(batch_sizes=[0]).validate()
    with pytest.raises(ProtocolError):
        BenchOptions(iterations=0).validate()
