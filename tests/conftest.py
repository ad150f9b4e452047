"""Shared test settings: quiet TensorFlow, tiny architectures, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# A two-stage architecture with both block types, SE and a residual: builds in a second.
TINY_BLOCKS = ["r1_k3_s1_e1_i8_o8_c1", "r2_k3_s2_e4_i8_o16_se0.25"]
TINY = {"blocks": TINY_BLOCKS, "feature_size": 32}


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()
