"""savedmodel_meta: signatures read from saved_model.pb without TensorFlow, checked against
TensorFlow's own loader on real SavedModels."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest
from helpers import agent_env

from device_agent.errors import AgentError
from device_agent.savedmodel_meta import read_signature, read_signatures


def _spec_shape(spec: Any) -> List[Optional[int]]:
    return [] if spec.shape.rank is None else list(spec.shape.as_list())


def _tf_view(model_dir: Path) -> Dict[str, Any]:
    """{key: (inputs, outputs)} as TensorFlow's loader sees them, in our terms."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    out = {}
    for key, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        ins = [(k, kwargs[k].dtype.name, _spec_shape(kwargs[k])) for k in sorted(kwargs)]
        outs_map = fn.structured_outputs
        outs = [(k, outs_map[k].dtype.name, _spec_shape(outs_map[k])) for k in sorted(outs_map)]
        out[key] = (ins, outs)
    return out


def _our_view(model_dir: Path) -> Dict[str, Any]:
    return {
        key: (
            [(t.name, t.dtype, t.shape) for t in sig.inputs],
            [(t.name, t.dtype, t.shape) for t in sig.outputs],
        )
        for key, sig in read_signatures(str(model_dir)).items()
    }


@pytest.fixture(scope="module")
def multi_input_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tf.Module with int32/float/bool/unknown-rank inputs and two signatures."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                tf.TensorSpec([None, 3], tf.float32, name="features"),
            ]
        )
        def serve(self, token_ids: Any, features: Any) -> Any:
            return {
                "id_sum": tf.reduce_sum(token_ids, axis=1),
                "scaled": features * 2.0,
                "count": tf.shape(token_ids, out_type=tf.int64),
            }

        @tf.function(
            input_signature=[
                tf.TensorSpec(None, tf.float16, name="anything"),
                tf.TensorSpec([], tf.bool, name="flag"),
                tf.TensorSpec([2, 5], tf.uint8, name="pixels"),
            ]
        )
        def other(self, anything: Any, flag: Any, pixels: Any) -> Any:
            return {"out": tf.where(flag, anything, -anything), "px": tf.cast(pixels, tf.int32)}

    model = Model()
    path = tmp_path_factory.mktemp("meta") / "multi"
    tf.saved_model.save(
        model, str(path), signatures={"serving_default": model.serve, "other": model.other}
    )
    return path


def test_tiny_model_matches_tensorflow(tiny_model: Path) -> None:
    ours = _our_view(tiny_model)
    assert ours == _tf_view(tiny_model)
    sig = read_signatures(str(tiny_model))["serving_default"]
    assert sig.key == "serving_default"
    assert sig.method_name == "tensorflow/serving/predict"
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [
        ("dense_input", "float32", [None, 4])
    ]


def test_mnist_model_matches_tensorflow(mnist_model: Path) -> None:
    assert _our_view(mnist_model) == _tf_view(mnist_model)
    sig = read_signature(str(mnist_model))
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [
        ("flatten_input", "float32", [None, 28, 28])
    ]


@pytest.mark.slow
def test_mobilenet_matches_tensorflow(mobilenet_model: Path) -> None:
    ours = _our_view(mobilenet_model)
    assert ours == _tf_view(mobilenet_model)
    assert ours["serving_default"][0][0][2] == [None, 32, 32, 3]


def test_multi_input_int32_model_matches_tensorflow(multi_input_model: Path) -> None:
    ours = _our_view(multi_input_model)
    assert ours == _tf_view(multi_input_model)
    assert sorted(ours) == ["other", "serving_default"]  # __saved_model_init_op left out
    assert ours["serving_default"][0] == [
        ("features", "float32", [None, 3]),
        ("token_ids", "int32", [None, None]),
    ]
    other_inputs = {name: (dtype, shape) for name, dtype, shape in ours["other"][0]}
    assert other_inputs == {
        "anything": ("float16", []),  # unknown rank -> []
        "flag": ("bool", []),
        "pixels": ("uint8", [2, 5]),
    }
    assert ("count", "int64", [2]) in ours["serving_default"][1]


def test_signature_and_tag_errors(multi_input_model: Path) -> None:
    with pytest.raises(AgentError, match="'nope'.*other, serving_default"):
        read_signature(str(multi_input_model), "nope")
    with pytest.raises(AgentError, match=r"tagged \[gpu, serve\].*present are: \[serve\]"):
        read_signatures(str(multi_input_model), tags=["serve", "gpu"])
    assert read_signatures(str(multi_input_model), tags=None).keys() == {"other", "serving_default"}


def test_several_meta_graphs_select_by_tag_set(tmp_path: Path) -> None:
    import tensorflow as tf

    path = tmp_path / "v1"
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        x = tf.compat.v1.placeholder(tf.int64, [None, 5], name="x")
        y = tf.identity(x * 2, name="y")
        sig = tf.compat.v1.saved_model.predict_signature_def({"ids": x}, {"doubled": y})
        builder = tf.compat.v1.saved_model.Builder(str(path))
        builder.add_meta_graph_and_variables(
            sess, ["serve", "gpu"], signature_def_map={"predict_ids": sig}
        )
        builder.add_meta_graph(["train"], signature_def_map={"train_sig": sig})
        builder.save()
    sigs = read_signatures(str(path), tags=("gpu", "serve"))
    assert list(sigs) == ["predict_ids"]
    assert [(t.name, t.dtype, t.shape) for t in sigs["predict_ids"].inputs] == [
        ("ids", "int64", [None, 5])
    ]
    assert list(read_signatures(str(path), tags=["train"])) == ["train_sig"]
    with pytest.raises(AgentError) as err:
        read_signatures(str(path))
    assert "[gpu, serve]" in err.value.message and "[train]" in err.value.message
    assert str(path / "saved_model.pb") in err.value.message
    with pytest.raises(AgentError, match=r"\[train\]"):
        read_signatures(str(path), tags=None)  # two MetaGraphs: tags must choose


# --------------------------------------------------------------------------- wire format


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len(number: int, payload: bytes) -> bytes:
    return _tag(number, 2) + _varint(len(payload)) + payload


def _unknowns() -> bytes:
    """One unknown field of every wire type: varint, fixed64, fixed32, bytes, a group."""
    group = _tag(90, 3) + _tag(1, 0) + _varint(7) + _tag(91, 3) + _tag(91, 4) + _tag(90, 4)
    return (
        _tag(80, 0) + _varint(-5) + _tag(81, 1) + b"\x01" * 8 + _tag(82, 5) + b"\x02" * 4
        + _len(83, b"\xff\xfe anything") + group
    )  # fmt: skip


def _crafted_pb(graph_def: bytes) -> bytes:
    dims = b"".join(
        _len(2, _tag(1, 0) + _varint(size) + _len(2, b"dimname") + _unknowns())
        for size in (-1, 2**40, 3)
    )
    tensor = _len(1, b"graph_x:0") + _tag(2, 0) + _varint(9) + _unknowns() + _len(3, dims)
    out_tensor = _len(1, b"y:0") + _tag(2, 0) + _varint(101) + _len(3, _tag(3, 0) + b"\x01")
    signature = (
        _len(1, _len(1, b"x") + _len(2, tensor))
        + _len(2, _len(1, b"y") + _len(2, out_tensor))
        + _len(3, b"tensorflow/serving/predict")
        + _unknowns()
    )
    meta_info = _len(1, b"v1") + _len(4, b"serve") + _unknowns()
    meta_graph = (
        _len(2, graph_def)
        + _len(1, meta_info)
        + _unknowns()
        + _len(5, _len(1, b"sig") + _len(2, signature))
        + _len(5, _len(1, b"__saved_model_init_op") + _len(2, b""))
    )
    return _tag(1, 0) + _varint(1) + _len(2, meta_graph) + _unknowns()


def test_crafted_file_negative_int64_and_unknown_fields(tmp_path: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    data = _crafted_pb(graph_def=b"")
    proto = saved_model_pb2.SavedModel.FromString(data)  # the real parser agrees it is valid
    real = proto.meta_graphs[0].signature_def["sig"].inputs["x"]
    assert [d.size for d in real.tensor_shape.dim] == [-1, 2**40, 3]
    (tmp_path / "saved_model.pb").write_bytes(data)
    sig = read_signatures(str(tmp_path))["sig"]
    assert [(t.name, t.dtype, t.shape) for t in sig.inputs] == [("x", "int64", [None, 2**40, 3])]
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs] == [("y", "float32", [])]
    # graph_def is skipped by its length, never parsed: garbage there changes nothing.
    (tmp_path / "saved_model.pb").write_bytes(_crafted_pb(graph_def=b"\xff" * 1000))
    assert read_signatures(str(tmp_path))["sig"] == sig


def test_large_graph_def_parses_fast(tmp_path: Path, tiny_model: Path) -> None:
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel.FromString((tiny_model / "saved_model.pb").read_bytes())
    node = proto.meta_graphs[0].graph_def.node.add(name="big", op="Const")
    node.attr["value"].tensor.tensor_content = b"\x01" * (100 << 20)
    data = proto.SerializeToString()
    del proto, node
    assert len(data) > 100 << 20
    (tmp_path / "saved_model.pb").write_bytes(data)
    del data
    start = time.perf_counter()
    sigs = read_signatures(str(tmp_path))
    elapsed = time.perf_counter() - start
    assert sigs == read_signatures(str(tiny_model))
    assert elapsed < 0.5, f"{elapsed:.3f}s for a 100 MB saved_model.pb"


# --------------------------------------------------------------------------- errors


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as err:
        read_signatures(str(tmp_path))
    assert str(tmp_path / "saved_model.pb") in err.value.message
    assert err.value.hint


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").mkdir()  # a directory where the file should be
    with pytest.raises(AgentError, match="saved_model.pb"):
        read_signatures(str(tmp_path))


@pytest.mark.parametrize("seed", range(20))
def test_random_bytes_raise_agent_error(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (tmp_path / "saved_model.pb").write_bytes(rng.bytes(int(rng.integers(1, 5000))))
    with pytest.raises(AgentError, match="saved_model.pb"):
        read_signatures(str(tmp_path))


def test_truncated_and_empty_files_raise_agent_error(tmp_path: Path, mnist_model: Path) -> None:
    data = (mnist_model / "saved_model.pb").read_bytes()
    pb = tmp_path / "saved_model.pb"
    for cut in sorted({0, 1, 2, 3, 5, 10, 100, *range(0, len(data), max(1, len(data) // 60))}):
        pb.write_bytes(data[:cut])
        with pytest.raises(AgentError, match="not a valid SavedModel protobuf"):
            read_signatures(str(tmp_path))


def test_no_tensorflow_import(mnist_model: Path) -> None:
    code = (
        "import json, sys\n"
        "from device_agent.savedmodel_meta import read_signatures\n"
        f"sigs = read_signatures({str(mnist_model)!r})\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules,\n"
        "                  'sigs': {k: s.to_dict() for k, s in sigs.items()}}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=agent_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["tf"] is False
    assert out["sigs"]["serving_default"]["inputs"] == [
        {"name": "flatten_input", "dtype": "float32", "shape": [None, 28, 28]}
    ]
