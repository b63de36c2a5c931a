"""Validation: the elementwise rule on crafted arrays, then real SavedModels compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest

from device_agent.errors import AgentError
from device_agent.protocol import (
    TensorInfo,
    ValidateOptions,
    ValidateResult,
    ValidateSpec,
    result_from_dict,
)
from device_agent.validate import (
    DEFAULT_TOLERANCES,
    compare_arrays,
    compare_models,
    is_classifier,
    run_validate,
    tolerances,
)

# --------------------------------------------------------------------------- tolerances


def test_default_tolerances_loosen_with_precision() -> None:
    fp32, fp16, int8 = (DEFAULT_TOLERANCES[p] for p in ("FP32", "FP16", "INT8"))
    assert fp32[0] < fp16[0] < int8[0] and fp32[1] < fp16[1] < int8[1]
    assert tolerances("FP16") == fp16
    assert tolerances("FP16", atol=0.5) == (0.5, fp16[1])
    assert tolerances("INT8", rtol=0.0) == (int8[0], 0.0)
    with pytest.raises(AgentError, match="FP64"):
        tolerances("FP64")


def test_is_classifier() -> None:
    assert is_classifier(TensorInfo("logits", "float32", [None, 10]))
    assert not is_classifier(TensorInfo("score", "float32", [None, 1]))
    assert not is_classifier(TensorInfo("boxes", "float32", [None, 4, 4]))
    assert not is_classifier(TensorInfo("ids", "int64", [None, 10]))
    assert not is_classifier(TensorInfo("dyn", "float32", [None, None]))


# --------------------------------------------------------------------------- compare_arrays


def test_an_element_fails_only_beyond_both_tolerances() -> None:
    ref = np.array([100.0, 1.0, 0.0], dtype=np.float32)
    # [0]: abs 0.5 > atol but rel 0.005 <= rtol -> passes
    # [1]: abs 0.05 > atol and rel 0.05 > rtol -> fails
    # [2]: abs 0.005 <= atol (rel is huge against a zero reference) -> passes
    act = np.array([100.5, 1.05, 0.005], dtype=np.float32)
    check = compare_arrays(ref, act, atol=0.01, rtol=0.01, classifier=False)
    assert check.mismatched == 1 and check.elements == 3 and not check.passed

    r64, a64 = ref.astype(np.float64), act.astype(np.float64)
    abs_err = np.abs(a64 - r64)
    rel_err = abs_err / np.maximum(np.abs(r64), np.finfo(np.float64).eps)
    assert check.max_abs_err == pytest.approx(abs_err.max())
    assert check.max_rel_err == pytest.approx(rel_err.max())

    # Loosen rtol past element 1's relative error: nothing exceeds both any more.
    assert compare_arrays(ref, act, atol=0.01, rtol=0.06, classifier=False).passed
    # Only an absolute tolerance wide enough for all: passes with rtol 0 too.
    assert compare_arrays(ref, act, atol=0.6, rtol=0.0, classifier=False).passed


def test_identical_arrays_have_zero_error() -> None:
    ref = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    check = compare_arrays(ref, ref.copy(), atol=0.0, rtol=0.0, classifier=False)
    assert check.passed and check.max_abs_err == 0.0 and check.max_rel_err == 0.0
    assert check.top1_agreement is None and check.elements == 20


def test_nan_handling() -> None:
    ref = np.array([1.0, np.nan, np.inf, 2.0])
    same = compare_arrays(ref, ref.copy(), atol=1e-6, rtol=1e-6, classifier=False)
    assert same.passed and same.max_abs_err == 0.0  # NaN vs NaN, inf vs inf match

    nan_out = np.array([np.nan, np.nan, np.inf, 2.0])  # NaN where the reference is finite
    check = compare_arrays(ref, nan_out, atol=1e9, rtol=1e9, classifier=False)
    assert not check.passed and check.mismatched == 1 and check.max_abs_err == float("inf")

    finite_out = np.array([1.0, 0.0, np.inf, 2.0])  # finite where the reference is NaN
    assert not compare_arrays(ref, finite_out, atol=1e9, rtol=1e9, classifier=False).passed
    flipped_inf = np.array([1.0, np.nan, -np.inf, 2.0])
    assert not compare_arrays(ref, flipped_inf, atol=1e9, rtol=1e9, classifier=False).passed


def test_top1_agreement_counts_rows_with_the_same_argmax() -> None:
    ref = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    act = ref.copy()
    act[1] = [0.1, 0.8, 0.1]  # argmax 0 -> 1
    check = compare_arrays(ref, act, atol=1e-3, rtol=1e-3, classifier=True)
    assert check.top1_agreement == pytest.approx(0.75)
    assert compare_arrays(ref, act, 1e-3, 1e-3, classifier=False).top1_agreement is None


def test_shape_and_dtype_mismatch_are_errors() -> None:
    with pytest.raises(AgentError) as err:
        compare_arrays(np.zeros((2, 10)), np.zeros((2, 5)), 1e-5, 1e-5, classifier=True)
    assert "[2, 10]" in err.value.message and "[2, 5]" in err.value.message
    with pytest.raises(AgentError, match="dtypes"):
        compare_arrays(np.zeros(3), np.zeros(3, dtype=bool), 1e-5, 1e-5, classifier=False)


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def resaved_mnist(mnist_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mnist SavedModel loaded and written again with tf.saved_model.save."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(mnist_model))
    path = tmp_path_factory.mktemp("resaved") / "mnist"
    tf.saved_model.save(
        loaded, str(path), signatures={"serving_default": loaded.signatures["serving_default"]}
    )
    return path


@pytest.fixture(scope="module")
def perturbed_mnist(mnist_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Keras mnist model with noise added to its last Dense layer's kernel."""
    import tensorflow as tf

    model = tf.keras.models.load_model(str(mnist_model))
    last = model.layers[-1]
    kernel = last.kernel.numpy()
    noise = np.random.default_rng(3).normal(0.0, 0.05, kernel.shape).astype(kernel.dtype)
    last.kernel.assign(kernel + noise)
    path = tmp_path_factory.mktemp("perturbed") / "mnist"
    model.save(str(path))
    return path


class Events:
    """A recording emit(kind, message, **data)."""

    def __init__(self) -> None:
        self.items: List[Tuple[str, str, Dict[str, Any]]] = []

    def __call__(self, kind: str, message: str, **data: Any) -> None:
        self.items.append((kind, message, data))

    def text(self) -> str:
        return "\n".join(m for _, m, _ in self.items)


def test_model_against_a_resaved_copy_of_itself_passes(
    mnist_model: Path, resaved_mnist: Path
) -> None:
    events = Events()
    options = ValidateOptions(samples=3, batch_size=4)
    report = compare_models(str(mnist_model), str(resaved_mnist), options, emit=events)
    assert report.passed and report.samples == 3 and report.inputs_from == "generated"
    assert (report.atol, report.rtol) == DEFAULT_TOLERANCES["FP32"]
    check = report.outputs["dense_1"]
    assert check.passed and check.mismatched == 0
    assert check.max_abs_err <= 1e-6 and check.max_rel_err <= 1e-5
    assert check.elements == 3 * 4 * 10
    assert check.top1_agreement == 1.0
    assert "atol=0.0001" in events.text()  # the tolerances are stated


def test_perturbed_model_fails_fp32_and_passes_huge_tolerances(
    mnist_model: Path, perturbed_mnist: Path
) -> None:
    report = compare_models(
        str(mnist_model), str(perturbed_mnist), ValidateOptions(samples=4, batch_size=2)
    )
    assert not report.passed
    check = report.outputs["dense_1"]
    assert not check.passed and check.mismatched > 0 and check.elements == 80
    assert check.max_abs_err > report.atol and check.max_rel_err > report.rtol
    assert check.top1_agreement is not None and 0.0 <= check.top1_agreement <= 1.0

    loose = ValidateOptions(samples=4, batch_size=2, atol=1e3, rtol=1e3)
    relaxed = compare_models(str(mnist_model), str(perturbed_mnist), loose)
    assert relaxed.passed and (relaxed.atol, relaxed.rtol) == (1e3, 1e3)
    # same inputs (same seeds): the errors do not depend on the tolerances
    assert relaxed.outputs["dense_1"].max_abs_err == pytest.approx(check.max_abs_err)


def test_mismatched_signatures_are_an_error_naming_both(
    tiny_model: Path, mnist_model: Path
) -> None:
    with pytest.raises(AgentError) as err:
        compare_models(str(tiny_model), str(mnist_model), ValidateOptions(samples=1))
    message = err.value.message
    assert str(tiny_model) in message and str(mnist_model) in message
    assert "dense_1" in message and "'dense'" in message


def test_real_samples_are_reported_as_calibration(mnist_model: Path, resaved_mnist: Path) -> None:
    from edge.ops.demo_model import synthetic_digits

    images, _ = synthetic_digits(12, seed=5)
    images = images.astype(np.float64)  # cast to the signature's float32 on the way in
    batches = iter([{"flatten_input": images[i : i + 4]} for i in range(0, 12, 4)])
    report = compare_models(str(mnist_model), str(resaved_mnist), ValidateOptions(), batches)
    assert report.passed and report.inputs_from == "calibration" and report.samples == 3
    assert report.outputs["dense_1"].elements == 120

    with pytest.raises(AgentError, match="flatten_input"):
        compare_models(
            str(mnist_model), str(resaved_mnist), ValidateOptions(), iter([{"x": images[:1]}])
        )


def test_run_validate_succeeds_even_when_validation_fails(
    mnist_model: Path, perturbed_mnist: Path
) -> None:
    spec = ValidateSpec(
        model=str(mnist_model),
        converted=str(perturbed_mnist),
        validation=ValidateOptions(samples=2),
    )
    events = Events()
    result = run_validate(spec, events)
    assert isinstance(result, ValidateResult)
    # status is about the job; the verdict is validation.passed (the CLI sets the exit code)
    assert result.status == "succeeded" and result.error is None
    assert result.validation is not None and not result.validation.passed
    assert result.model == str(mnist_model) and result.converted == str(perturbed_mnist)
    assert "validation FAILED" in events.text()
    back = result_from_dict("validate", json.loads(result.to_json()))
    assert back == result


def test_run_validate_defaults_and_missing_converted(mnist_model: Path, tmp_path: Path) -> None:
    spec = ValidateSpec(model=str(mnist_model), converted=str(mnist_model))
    result = run_validate(spec, Events())
    assert result.validation is not None and result.validation.passed
    assert result.validation.samples == ValidateOptions().samples
    with pytest.raises(AgentError, match="converted"):
        run_validate(ValidateSpec(model=str(mnist_model)), Events())
    missing = ValidateSpec(model=str(mnist_model), converted=str(tmp_path / "no"))
    with pytest.raises(AgentError, match="does not exist"):
        run_validate(missing, Events())
