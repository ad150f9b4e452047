import os

import keras
import numpy as np
import pytest
from conftest import TINY, TINY_BLOCKS

import efficientnetv2
from efficientnetv2.builder import ModelOptions, scaled_blocks, survival_probability
from efficientnetv2.layers import FusedMBConv, MBConv, StochasticDepth


def test_round_filters_rule():
    assert efficientnetv2.round_filters(32, 1.0) == 32
    assert efficientnetv2.round_filters(32, 1.1) == 32  # 35.2 -> 32
    assert efficientnetv2.round_filters(16, 1.2) == 16  # 19.2 -> 16: no "never below 90%" rule
    assert efficientnetv2.round_filters(1280, 1.2) == 1536
    assert efficientnetv2.round_filters(3, 1.0) == 8  # min_depth
    assert efficientnetv2.round_repeats(3, 1.1) == 4
    assert efficientnetv2.round_repeats(2, 1.0) == 2


def test_scaled_blocks_expand_repeats_and_widths():
    options = ModelOptions(blocks=("r2_k3_s2_e4_i16_o32_c1", "r3_k5_s1_e6_i32_o40"),
                           width_coefficient=1.2, depth_coefficient=1.4)
    blocks = scaled_blocks(options)
    assert len(blocks) == 3 + 5  # ceil(2*1.4), ceil(3*1.4)
    assert (blocks[0].input_filters, blocks[0].output_filters, blocks[0].strides) == (16, 40, 2)
    assert all(b.strides == 1 for b in blocks[1:])
    assert [(b.input_filters, b.output_filters) for b in blocks[1:]] == (
        [(40, 40)] * 2 + [(40, 48)] + [(48, 48)] * 4)  # o40 * 1.2 -> 48
    assert [b.fused for b in blocks] == [True] * 3 + [False] * 5


def test_survival_probability_linear_rule():
    assert survival_probability(0.8, 0, 10) == 1.0
    assert survival_probability(0.8, 5, 10) == pytest.approx(0.9)
    assert survival_probability(None, 3, 10) is None
    model = efficientnetv2.get_model("efficientnetv2-b0")
    blocks = [layer for layer in model.layers if layer.name.startswith("blocks_")]
    assert [b.survival_prob for b in blocks] == pytest.approx(
        [1 - 0.2 * i / len(blocks) for i in range(len(blocks))])


def test_block_types_and_residuals():
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=3, feature_size=32)
    kinds = [type(layer) for layer in model.layers if layer.name.startswith("blocks_")]
    assert kinds == [FusedMBConv, MBConv, MBConv]
    block0, block1, block2 = (model.get_layer(f"blocks_{i}") for i in range(3))
    assert block0.has_residual and not block1.has_residual and block2.has_residual
    assert block1.se is not None and block1.se.reduced_filters == 2  # int(8 * 0.25)


def test_custom_model_forward_any_size():
    options = {k: v for k, v in TINY.items() if k != "blocks"}
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=5, **options)
    assert model.name == "custom"
    for size in (32, 45):
        logits = model(np.zeros((2, size, size, 3), "float32"), training=False)
        assert logits.shape == (2, 5)


def test_include_top_false_and_pooling():
    features = efficientnetv2.get_model(TINY_BLOCKS, include_top=False, feature_size=32)
    assert features(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 16, 16, 32)  # stride 4
    pooled = efficientnetv2.get_model(TINY_BLOCKS, include_top=False, pooling="avg", feature_size=32)
    assert pooled(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 32)


def test_feature_endpoints_at_every_reduction():
    blocks = ["r1_k3_s1_e1_i8_o8_c1", "r1_k3_s2_e4_i8_o16_c1", "r1_k3_s2_e4_i16_o24",
              "r1_k3_s2_e4_i24_o32_se0.25", "r2_k3_s2_e4_i32_o40_se0.25"]
    model = efficientnetv2.get_model(blocks, features_only=True)
    outputs = model(np.zeros((1, 64, 64, 3), "float32"))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "reduction_1": (1, 32, 32, 8), "reduction_2": (1, 16, 16, 16),
        "reduction_3": (1, 8, 8, 24), "reduction_4": (1, 4, 4, 32), "reduction_5": (1, 2, 2, 40)}


def test_stem_stride_one_keeps_the_input_size_and_the_parameters():
    blocks = ["r1_k3_s2_e1_i8_o8_c1", "r2_k3_s2_e4_i8_o16_se0.25"]
    strided = efficientnetv2.get_model(blocks, num_classes=3, feature_size=32)
    full = efficientnetv2.get_model(blocks, num_classes=3, feature_size=32, stem_stride=1)
    assert full.count_params() == strided.count_params()
    x = np.zeros((1, 28, 28, 3), "float32")
    assert full.get_layer("stem")(x).shape == (1, 28, 28, 8)
    assert strided.get_layer("stem")(x).shape == (1, 14, 14, 8)
    features = efficientnetv2.feature_extractor(full)(x)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "reduction_1": (1, 14, 14, 8), "reduction_2": (1, 7, 7, 16)}
    unstrided_first = efficientnetv2.get_model(["r1_k3_s1_e1_i8_o8_c1"] + blocks[1:],
                                               num_classes=3, feature_size=32, stem_stride=1)
    features = efficientnetv2.feature_extractor(unstrided_first)(x)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "reduction_0": (1, 28, 28, 8), "reduction_1": (1, 14, 14, 16)}
    with pytest.raises(efficientnetv2.UserError, match="stem_stride 3 must be 1 or 2"):
        efficientnetv2.get_model(blocks, stem_stride=3)


def test_feature_extractor_shares_weights_with_full_model():
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=2, feature_size=32)
    extractor = efficientnetv2.feature_extractor(model)
    assert {id(w) for w in extractor.weights} <= {id(w) for w in model.weights}


def test_options_are_applied():
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=2, activation="relu",
                                     bn_momentum=0.99, bn_epsilon=1e-5, dropout_rate=0.5,
                                     feature_size=32, synchronized_bn=True)
    bn = model.get_layer("stem").bn
    assert (bn.momentum, bn.epsilon, bn.synchronized) == (0.99, 1e-5, True)
    assert model.get_layer("top_dropout").rate == 0.5
    assert model.get_layer("stem").options.activation == "relu"


def test_channels_first_has_the_same_parameters():
    last = efficientnetv2.get_model("efficientnetv2-b0")
    first = efficientnetv2.get_model("efficientnetv2-b0", data_format="channels_first")
    assert first.input_shape == (None, 3, None, None)
    assert first.count_params() == last.count_params()


@pytest.mark.parametrize("kwargs, message", [
    ({"model_name": "efficientnetv2-q"}, "valid names: efficientnetv2-s"),
    ({"model_name": "efficientnetv2-s", "widht_coefficient": 2.0}, "did you mean 'width_coefficient'"),
    ({"model_name": "efficientnetv2-s", "activation": "sigmoidish"}, "unknown activation"),
    ({"model_name": "efficientnetv2-s", "num_classes": 0}, "num_classes"),
    ({"model_name": ["r1_k3_s1_e1_i8"]}, "block string"),
    ({"model_name": "efficientnetv2-s", "survival_prob": 1.5}, "survival_prob"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(efficientnetv2.UserError, match=message):
        efficientnetv2.get_model(**kwargs)


def test_stochastic_depth_drops_whole_samples_and_keeps_expectation():
    layer = StochasticDepth(0.5, seed=1)
    x = np.ones((2000, 2, 2, 3), "float32")
    assert np.array_equal(layer(x, training=False), x)
    y = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = y.reshape(2000, -1)
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    assert np.all(per_sample.min(axis=1) == per_sample.max(axis=1))  # whole sample kept or dropped
    assert per_sample.mean() == pytest.approx(1.0, abs=0.08)


def test_model_saves_and_loads_with_identical_outputs(tmp_path):
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=4, feature_size=32)
    x = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-6)
    assert list(efficientnetv2.feature_endpoints(loaded)) == ["reduction_1", "reduction_2"]


def test_training_mode_uses_batch_statistics_and_dropout():
    model = efficientnetv2.get_model(TINY_BLOCKS, num_classes=4, feature_size=32, dropout_rate=0.5)
    x = np.random.RandomState(0).uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
    assert not np.allclose(model(x, training=True), model(x, training=False))
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


def test_group_norm_conv_dropout_headbias_and_the_originals_activation_names():
    model = efficientnetv2.get_model(TINY_BLOCKS + ["r1_k3_s1_e4_i16_o24"], 5, bn_type="gn",
                                     gn_groups=16, conv_dropout=0.5, headbias=-2.0,
                                     activation="hswish", dropout_rate=0.0, survival_prob=None)
    kinds = {type(layer).__name__ for block in model.layers for layer in
             getattr(block, "_layers", [])}
    assert "GroupNormalization" in kinds and "BatchNormalization" not in kinds
    norm = model.get_layer("blocks_3").expand_bn  # 16 x 4 = 64 channels: 16 groups
    assert norm.groups == 16 and model.get_layer("blocks_1").project_bn.groups == 16
    assert model.get_layer("blocks_3").project_bn.groups == 8  # gcd(16, 24)
    np.testing.assert_array_equal(model.get_layer("predictions").bias.numpy(), -2.0)
    assert model.get_layer("stem").options.activation == "hard_silu"
    images = np.random.RandomState(0).uniform(-1, 1, (2, 16, 16, 3)).astype("float32")
    # conv_dropout: random in training, off in inference; a block that does not expand has none
    assert not np.allclose(model(images, training=True), model(images, training=True))
    np.testing.assert_allclose(model(images), model(images))
    assert model.get_layer("blocks_0").conv_dropout is None


def test_local_pooling_gives_the_same_values_with_average_pool_ops():
    import tensorflow as tf

    plain = efficientnetv2.get_model(TINY_BLOCKS, 4, **{**TINY, "blocks": TINY_BLOCKS})
    local = efficientnetv2.get_model(TINY_BLOCKS, 4, local_pooling=True,
                                     **{**TINY, "blocks": TINY_BLOCKS})
    local.set_weights([w.numpy() for w in plain.weights])
    images = np.random.RandomState(1).uniform(-1, 1, (2, 24, 24, 3)).astype("float32")
    np.testing.assert_allclose(local(images), plain(images), rtol=1e-5, atol=1e-6)
    graph = tf.function(lambda x: local(x)).get_concrete_function(
        tf.TensorSpec([1, 24, 24, 3], tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "AvgPool" in ops and "Mean" not in ops  # the head's pool and the SE's


def test_the_model_library_runs_on_the_jax_backend_without_tensorflow(tmp_path):
    """A fresh process with KERAS_BACKEND=jax: `import efficientnetv2` and get_model never
    import TensorFlow, and weights saved under TensorFlow give the same logits."""
    import json
    import subprocess
    import sys

    blocks = TINY_BLOCKS + ["r1_k3_s1_e4_i16_o24_se0.25"]
    model = efficientnetv2.get_model(blocks, 5, feature_size=32, survival_prob=None)
    images = np.random.RandomState(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    model.save_weights(str(tmp_path / "tiny.weights.h5"))
    np.save(tmp_path / "images.npy", images)
    script = f"""
import json, sys
import numpy as np
import efficientnetv2
model = efficientnetv2.get_model({blocks!r}, 5, feature_size=32, survival_prob=None)
model.load_weights({str(tmp_path / "tiny.weights.h5")!r})
logits = np.asarray(model(np.load({str(tmp_path / "images.npy")!r}), training=False))
import keras
print(json.dumps({{"backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules,
                  "logits": logits.tolist()}}))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and not result["tensorflow"]
    np.testing.assert_allclose(result["logits"], model(images, training=False), rtol=1e-4, atol=1e-5)
