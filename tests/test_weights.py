"""Logit parity with keras.applications, an implementation no one here wrote."""

import keras
import numpy as np
import pytest

import efficientnetv2
from efficientnetv2.weights import copy_from_keras_applications, keras_applications_preprocessing


def _randomize_batch_norm(model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so that a wrong block changes the logits."""
    rng = np.random.RandomState(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.weights
            n = gamma.shape[0]
            gamma.assign(rng.uniform(0.5, 1.0, n))
            beta.assign(rng.normal(0, 0.3, n))
            mean.assign(rng.normal(0, 0.1, n))
            variance.assign(rng.uniform(0.5, 1.5, n))


def _images(size: int = 224) -> np.ndarray:
    return np.random.RandomState(1).uniform(0, 255, (2, size, size, 3)).astype("float32")


def _logits_pair(src: keras.Model, dst: keras.Model, x: np.ndarray):
    _randomize_batch_norm(src)
    copy_from_keras_applications(src, dst)
    reference = keras.ops.convert_to_numpy(src(x, training=False))
    ours = keras.ops.convert_to_numpy(dst(keras_applications_preprocessing(src)(x), training=False))
    return reference, ours


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


def _v2_b0_reference() -> keras.Model:
    return keras.applications.EfficientNetV2B0(weights=None, include_preprocessing=False,
                                               classifier_activation=None)


def test_v2_b0_logits_match_keras_applications():
    reference, ours = _logits_pair(_v2_b0_reference(), efficientnetv2.get_model("efficientnetv2-b0"),
                                   _images() / 127.5 - 1)
    assert np.max(np.abs(reference)) > 0.1  # a meaningful signal, not all zeros
    assert _relative_error(reference, ours) < 1e-4


def test_v1_b0_logits_match_keras_applications_with_its_normalization():
    src = keras.applications.EfficientNetB0(weights=None, classifier_activation=None)
    reference, ours = _logits_pair(src, efficientnetv2.get_model("efficientnet-b0"), _images())
    assert np.max(np.abs(reference)) > 0.1
    assert _relative_error(reference, ours) < 1e-4


V2_B0_BLOCKS = efficientnetv2.ARCHITECTURES["efficientnetv2-b0"].blocks


def test_a_wrong_stride_is_caught_by_the_logits():
    # Same weight shapes as V2-B0 (stage 4 stride 1 instead of 2), different computation.
    wrong = [b.replace("r3_k3_s2", "r3_k3_s1") for b in V2_B0_BLOCKS]
    assert wrong != list(V2_B0_BLOCKS)
    reference, ours = _logits_pair(_v2_b0_reference(), efficientnetv2.get_model(wrong),
                                   _images() / 127.5 - 1)
    assert _relative_error(reference, ours) > 1e-2


def test_a_wrong_block_type_is_caught_at_copy_time():
    wrong = [b.replace("_c1", "_c0") if b.startswith("r1_") else b for b in V2_B0_BLOCKS]
    with pytest.raises(efficientnetv2.UserError, match="different architectures"):
        copy_from_keras_applications(_v2_b0_reference(), efficientnetv2.get_model(wrong))


def test_a_wrong_activation_is_caught():
    reference, ours = _logits_pair(_v2_b0_reference(),
                                   efficientnetv2.get_model("efficientnetv2-b0", activation="relu"),
                                   _images() / 127.5 - 1)
    assert _relative_error(reference, ours) > 1e-2


def test_shape_mismatch_names_the_weights_and_writes_nothing():
    dst = efficientnetv2.get_model("efficientnetv2-b0", num_classes=10)
    before = [w.numpy().copy() for w in dst.weights]
    with pytest.raises(efficientnetv2.UserError, match="predictions"):
        copy_from_keras_applications(_v2_b0_reference(), dst)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, dst.weights))
