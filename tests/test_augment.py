import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from efficientnetv2.datasets import augment

IMAGE = tf.constant(np.random.RandomState(0).randint(0, 256, (24, 24, 3)), tf.float32)
SEED = tf.constant([1, 2], tf.int64)


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_every_op_keeps_shape_and_range(name):
    out = augment.OPS[name](IMAGE, 7.0, SEED).numpy()
    assert out.shape == (24, 24, 3)
    assert out.min() >= 0 and out.max() <= 255


def test_equalize_matches_pil():
    ours = augment.OPS["Equalize"](IMAGE, 0.0, SEED).numpy().astype(np.uint8)
    reference = np.asarray(ImageOps.equalize(Image.fromarray(IMAGE.numpy().astype(np.uint8))))
    np.testing.assert_array_equal(ours, reference)


def test_ops_follow_their_levels():
    np.testing.assert_array_equal(augment.OPS["Invert"](IMAGE, 0.0, SEED), 255 - IMAGE)
    np.testing.assert_array_equal(augment.OPS["Solarize"](IMAGE, 10.0, SEED), IMAGE)  # threshold 256
    np.testing.assert_array_equal(augment.OPS["Rotate"](IMAGE, 0.0, SEED), IMAGE)
    np.testing.assert_array_equal(augment.OPS["Brightness"](IMAGE, 5.0, SEED), IMAGE)  # factor 1.0


def test_randaugment_strength_grows_with_magnitude():
    def change(magnitude):
        seeds = tf.random.experimental.stateless_split(SEED, 40)
        return np.mean([np.abs(augment.randaugment(IMAGE, s, 2, magnitude).numpy() - IMAGE.numpy()).mean()
                        for s in seeds])
    assert change(15) > change(5) > 0


def test_autoaugment_is_deterministic_per_seed():
    a = augment.autoaugment(IMAGE, SEED).numpy()
    np.testing.assert_array_equal(a, augment.autoaugment(IMAGE, SEED).numpy())
