"""EfficientNetV2 and EfficientNet (V1) as Keras 3 models built from block strings.

    import efficientnetv2
    model = efficientnetv2.get_model("efficientnetv2-s", num_classes=10)
    model = efficientnetv2.get_model(["r1_k3_s1_e1_i16_o16_c1", "r2_k3_s2_e4_i16_o32_se0.25"])

Models take normalised images, any size, channels last: `preprocess_input(pixels, name)`
turns 0..255 pixels into what that model's recipe expects ((x - 128) / 128 for V2-S/M/L/XL
and custom models, ImageNet mean/std for V2-B0..B3 and V1). `get_model(name,
weights="imagenet")` loads pretrained weights (see `pretrained.py`). Submodules (`weights`,
`pretrained`, `hparams`, `datasets`, `training`, `serving`, ...) load on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import keras
from absl import logging

from efficientnetv2.block_strings import (
    BlockArgs,
    decode_block_string,
    decode_block_strings,
    encode_block_string,
    encode_block_strings,
)
from efficientnetv2.builder import (
    CUSTOM,
    OVERRIDES,
    ModelOptions,
    build_model,
    feature_endpoints,
    feature_extractor,
    resolve_options,
    round_filters,
    round_repeats,
)
from efficientnetv2.errors import UserError
from efficientnetv2.families import ARCHITECTURES, model_names, model_normalization

__all__ = [
    "ARCHITECTURES", "CUSTOM", "OVERRIDES", "BlockArgs", "ModelOptions", "UserError",
    "decode_block_string", "decode_block_strings", "encode_block_string",
    "encode_block_strings", "feature_endpoints", "feature_extractor", "get_model",
    "model_names", "preprocess_input", "round_filters", "round_repeats",
]
_SUBMODULES = ("automl_import", "block_strings", "builder", "datasets", "effnetv2_model",
               "errors", "families", "normalization",
               "flops", "hparams", "inference", "layers", "pretrained", "reference", "released",
               "serving", "summary", "training", "weights")


def __getattr__(name: str):
    """`efficientnetv2.weights` etc. without importing every submodule (and TensorFlow's
    data and training code) at `import efficientnetv2`."""
    if name in _SUBMODULES:
        return importlib.import_module(f"efficientnetv2.{name}")
    raise AttributeError(f"module 'efficientnetv2' has no attribute {name!r}")


def preprocess_input(images, model_name_or_config="efficientnetv2-s"):
    """keras.applications' convention: pixels 0..255 (array or tensor, channels last) in,
    the values the model's preprocessing recipe (and its ImageNet weights) expect out, as a
    float32 tensor. `model_name_or_config`: a model name, a list of block strings (custom
    models use the default recipe) or a run's config (its `data.normalization`)."""
    from efficientnetv2.normalization import normalize

    source = model_name_or_config
    if hasattr(source, "data"):  # a run's config
        name = source.data.get("normalization") or model_normalization(source.model.model_name)
    else:
        name = model_normalization(source)
    return normalize(images, name)


def get_model(model_name: str | Sequence[str], num_classes: int = 1000, include_top: bool = True,
              *, input_shape: tuple | None = None, pooling: str | None = None,
              features_only: bool = False, weights: str | None = None,
              **overrides) -> keras.Model:
    """Builds an EfficientNet(V2) as a functional Keras model.

    Args:
      model_name: a name from `model_names()` or a list of block strings (a custom model).
      num_classes: size of the classifier (with `include_top`).
      include_top: add pooling, dropout and the classifier; otherwise output the head's
        feature map (or a pooled vector with `pooling='avg'|'max'`).
      input_shape: fixed input shape; default any size, 3 channels.
      features_only: return a model whose outputs are the endpoints `reduction_1..5`.
      weights: None (random), 'imagenet' (keras.applications' weights, downloaded once),
        an automl checkpoint (folder or prefix; its EMA weights), a keras.applications `.h5`
        file or a `.weights.h5` file of `model.save_weights`. With another class count the
        classifier stays new.
      **overrides: any of `OVERRIDES` (width_coefficient, dropout_rate, survival_prob,
        activation, bn_momentum, bn_epsilon, synchronized_bn, data_format, blocks, ...).
    Raises:
      UserError (a ValueError) for unknown names, bad block strings or bad options.
    """
    name, options = resolve_options(model_name, overrides)
    if weights == "imagenet":  # before building: a model without them fails at once
        from efficientnetv2.pretrained import imagenet_constructor

        imagenet_constructor(model_name if isinstance(model_name, str) else None)
    model = build_model(options, num_classes=num_classes, include_top=include_top and not features_only,
                        input_shape=input_shape, pooling=pooling, name=name)
    if weights:
        from efficientnetv2.pretrained import load_pretrained

        logging.info("loaded %s", load_pretrained(
            model, model_name if isinstance(model_name, str) else None, weights))
    return feature_extractor(model) if features_only else model
