"""The original's Python names (automl's `effnetv2_model`, as its README uses them): code
written against it runs after changing its import line.

    from efficientnetv2 import effnetv2_model
    model = keras.Sequential([keras.Input([224, 224, 3]),
                              effnetv2_model.get_model("efficientnetv2-b0", include_top=False),
                              keras.layers.Dropout(0.2), keras.layers.Dense(4, "softmax")])
    net = effnetv2_model.EffNetV2Model("efficientnetv2-s")
    endpoints = net(images)  # endpoints[0]: the logits; endpoints[i]: reduction level i

`model_config` takes the original's model keys (act_fn, blocks_args, num_classes, bn_type,
dropout_rate, ...); `weights` its names: 'imagenet', 'imagenet21k', 'imagenet21k-ft1k' (the
released checkpoints, see released.py), a checkpoint path, or None.
"""

from __future__ import annotations

import ast
from typing import Any

import keras

from efficientnetv2.builder import OVERRIDES, feature_endpoints
from efficientnetv2.errors import UserError

# the original's weights names -> the suffix of the released checkpoint's name
RELEASED_SUFFIXES = {"imagenet": "", "imagenet21k": "-21k", "imagenet21k-ft1k": "-21k-ft1k"}
# the original's model keys spelled otherwise here
KEY_NAMES = {"act_fn": "activation", "blocks_args": "blocks"}


def _model_options(model_config: dict | str | None) -> tuple[int, dict[str, Any]]:
    """(num_classes, get_model overrides) from the original's `model_config`: a dict or a
    'key=value,...' string; unset (None) keys keep the model's own values."""
    if isinstance(model_config, str):
        pairs = [item.split("=", 1) for item in model_config.split(",") if item.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise UserError(f"model_config {model_config!r} is not key=value pairs")
        model_config = {key.strip(): _literal(value) for key, value in pairs}
    given = {KEY_NAMES.get(key, key): value for key, value in dict(model_config or {}).items()
             if value is not None and key != "model_name"}
    num_classes = int(given.pop("num_classes", 1000))
    unknown = sorted(set(given) - set(OVERRIDES))
    if unknown:
        raise UserError(f"model_config keys {', '.join(unknown)} are not model settings; "
                        f"valid: {', '.join(sorted(set(OVERRIDES) | set(KEY_NAMES)))}")
    return num_classes, given


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _outputs(model_name: str, model_config, include_top: bool, weights: str | None = None):
    """The functional model of `model_name` and its outputs [top, reduction_1, ...]; without
    the top, the head's pooled features (as the original's model without a classifier)."""
    from efficientnetv2 import get_model as build

    num_classes, overrides = _model_options(model_config)
    if weights in RELEASED_SUFFIXES and model_name.startswith("efficientnetv2-"):
        weights = model_name + RELEASED_SUFFIXES[weights]
    model = build(model_name, num_classes, include_top=include_top,
                  pooling=None if include_top else "avg", weights=weights, **overrides)
    return model, [model.output, *feature_endpoints(model).values()]


class EffNetV2Model(keras.Model):
    """The original's model class: called on images [batch, height, width, 3], it returns
    [logits, reduction_1, ..., reduction_5] (`with_endpoints=False`: the logits only)."""

    def __init__(self, model_name: str = "efficientnetv2-s", model_config=None,
                 include_top: bool = True, name: str | None = None):
        super().__init__(name=name or model_name)
        model, outputs = _outputs(model_name, model_config, include_top)
        self.model_name = model_name
        self.network = keras.Model(model.input, outputs, name=model.name)

    def call(self, inputs, training=None, with_endpoints: bool = True):
        outputs = self.network(inputs, training=training)
        return outputs if with_endpoints else outputs[0]


def get_model(model_name: str, model_config=None, include_top: bool = True,
              weights: str | None = "imagenet", training: bool = True,
              with_endpoints: bool = False, **kwargs) -> keras.Model:
    """The original's `get_model`: a Keras model of `model_name` with `weights`, whose
    output is the logits (without the top: the pooled features), or [output, reduction_1,
    ...] with `with_endpoints`. `training` is accepted for the original's signature: Keras
    decides it when the model is called."""
    del training
    model, outputs = _outputs(model_name, model_config, include_top, weights)
    if kwargs:
        raise UserError(f"get_model got unknown arguments {', '.join(sorted(kwargs))}")
    return keras.Model(model.input, outputs if with_endpoints else outputs[0], name=model.name)
