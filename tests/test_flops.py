import pytest

import efficientnetv2
from efficientnetv2.flops import count_multiply_adds
from efficientnetv2.reference import PUBLISHED


@pytest.mark.parametrize("name, size", [("efficientnetv2-b0", 224), ("efficientnetv2-s", 384)])
def test_multiply_adds_match_the_paper(name, size):
    counted = count_multiply_adds(efficientnetv2.get_model(name), size) / 1e9
    assert counted == pytest.approx(PUBLISHED[name][1], rel=0.01)


def test_multiply_adds_of_a_single_conv_are_exact():
    import keras
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    outputs = keras.layers.DepthwiseConv2D(3, padding="same")(outputs)
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(outputs)))
    # conv: 8*8 outputs * 3*3*3*4; depthwise: 8*8 * 3*3*4; dense: 4*5
    assert count_multiply_adds(model, 16) == 64 * 108 + 64 * 36 + 20


def test_channels_first_counts_the_same():
    blocks = ["r1_k3_s1_e1_i8_o8_c1", "r1_k3_s2_e4_i8_o16_se0.25"]
    last = count_multiply_adds(efficientnetv2.get_model(blocks), 64)
    first = count_multiply_adds(efficientnetv2.get_model(blocks, data_format="channels_first"), 64)
    assert first == last
