"""Parameter counts of every model equal the original code's (DESIGN.md)."""

import pytest

import efficientnetv2
from efficientnetv2.reference import ORIGINAL_PARAMS
from efficientnetv2.summary import count_trainable


@pytest.mark.parametrize("name", sorted(ORIGINAL_PARAMS))
def test_parameter_counts_equal_the_original(name):
    model = efficientnetv2.get_model(name, num_classes=1000)
    assert (model.count_params(), count_trainable(model)) == ORIGINAL_PARAMS[name]


def test_b8_builds_with_few_classes():
    # b8 has no reference count; it must still build (l2, 4.3x wider, is left to --mode=summary).
    model = efficientnetv2.get_model("efficientnet-b8", num_classes=10)
    assert model.output_shape == (None, 10)
