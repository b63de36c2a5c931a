"""Input synthesis from a serving signature, on real SavedModels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_agent.errors import AgentError
from device_agent.protocol import TensorInfo
from device_agent.signature import (
    concrete_shape,
    describe_inputs,
    describe_outputs,
    load_signature,
    synth_inputs,
)


def test_describe_and_synthesize_from_a_real_model(mnist_model: Path) -> None:
    _, fn = load_signature(str(mnist_model), "serving_default")
    inputs, outputs = describe_inputs(fn), describe_outputs(fn)
    assert [(i.name, i.dtype, i.shape) for i in inputs] == [
        ("flatten_input", "float32", [None, 28, 28])
    ]
    assert outputs[0].shape == [None, 10]
    arrays = synth_inputs(inputs, 5, seed=3)
    assert arrays["flatten_input"].shape == (5, 28, 28)
    assert arrays["flatten_input"].dtype == np.float32
    again = synth_inputs(inputs, 5, seed=3)
    np.testing.assert_array_equal(arrays["flatten_input"], again["flatten_input"])
    out = fn(flatten_input=arrays["flatten_input"])
    assert out[outputs[0].name].shape == (5, 10)


def test_missing_signature_lists_the_available_ones(mnist_model: Path) -> None:
    with pytest.raises(AgentError, match="serving_default") as err:
        load_signature(str(mnist_model), "predict")
    assert "--signature" in (err.value.hint or "")


def test_dynamic_inner_dims_need_a_shape() -> None:
    ids = TensorInfo("input_ids", "int32", [None, None])
    with pytest.raises(AgentError, match="input_ids") as err:
        concrete_shape(ids, 4, {})
    assert "--input-shape input_ids=" in (err.value.hint or "")
    assert concrete_shape(ids, 4, {"input_ids": [1, 128]}) == [4, 128]
    arrays = synth_inputs([ids], 2, {"input_ids": [1, 384]})
    assert arrays["input_ids"].shape == (2, 384) and arrays["input_ids"].dtype == np.int32
    with pytest.raises(AgentError, match="rank"):
        concrete_shape(ids, 1, {"input_ids": [1, 2, 3]})


def test_strings_cannot_be_synthesized() -> None:
    with pytest.raises(AgentError, match="string"):
        synth_inputs([TensorInfo("text", "string", [None])], 1)
