"""Import of the original automl checkpoints (EfficientNetV2 and EfficientNet V1).

The original models are TF1-style name-based checkpoints whose variables are named after the
original Keras layers, under the model's name:

    efficientnetv2-s/stem/conv2d/kernel
    efficientnetv2-s/blocks_3/tpu_batch_normalization_1/moving_mean
    efficientnetv2-s/blocks_3/se/conv2d_1/bias
    efficientnetv2-s/head/dense/kernel

Inside a block the original numbers its convolutions (`conv2d`, `conv2d_1`) and batch norms
(`tpu_batch_normalization`, `_1`, `_2`) in the order it creates them; the depthwise conv is
`depthwise_conv2d` and the squeeze-excite convs are `se/conv2d` and `se/conv2d_1`. When the
checkpoint holds `ExponentialMovingAverage` shadow variables (the released ones do), those are
the weights to use, as the original's eval did.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from efficientnetv2.errors import UserError, first_line

EMA_SUFFIX = "/ExponentialMovingAverage"
BN = "tpu_batch_normalization"
_CONVS = ("expand_conv", "project_conv")  # in the order the original creates them
_NORMS = ("expand_bn", "depthwise_bn", "project_bn")
_FIXED = {"depthwise_conv": "depthwise_conv2d", "se/reduce": "se/conv2d",
          "se/expand": "se/conv2d_1", "conv": "conv2d", "bn": BN}


def _numbered(base: str, index: int) -> str:
    return base if index == 0 else f"{base}_{index}"


def _sublayer_names(layer: keras.layers.Layer) -> dict[str, str]:
    """Our sub-layer paths inside one stem/block/head layer -> the original's names."""
    present = {w.path.split("/", 1)[1].rsplit("/", 1)[0] for w in layer.weights}
    names = {sub: _FIXED[sub] for sub in present if sub in _FIXED}
    convs = [c for c in _CONVS if c in present]
    names.update({c: _numbered("conv2d", i) for i, c in enumerate(convs)})
    norms = [n for n in _NORMS if n in present]
    names.update({n: _numbered(BN, i) for i, n in enumerate(norms)})
    return names


def automl_names(model: keras.Model) -> dict[str, str]:
    """Every weight path of `model` -> the original's variable name (without the model prefix).

    Raises UserError for a model with layers the original does not have (a custom head).
    """
    mapping = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name == "predictions":
            for w in layer.weights:
                mapping[w.path] = f"head/dense/{w.path.rsplit('/', 1)[1]}"
            continue
        if layer.name not in ("stem", "head") and not layer.name.startswith("blocks_"):
            raise UserError(f"layer {layer.name!r} has no counterpart in the original models")
        subs = _sublayer_names(layer)
        for w in layer.weights:
            _, rest = w.path.split("/", 1)
            sub, variable = rest.rsplit("/", 1)
            if variable == "kernel" and sub == "depthwise_conv":
                variable = "depthwise_kernel"
            mapping[w.path] = f"{layer.name}/{subs[sub]}/{variable}"
    return mapping


def _model_prefix(names: set[str], path: str) -> str:
    stems = sorted(n[: -len("/stem/conv2d/kernel")] for n in names
                   if n.endswith("/stem/conv2d/kernel"))
    if not stems:
        raise UserError(f"{path} is not an automl EfficientNet checkpoint (no "
                        "'<model>/stem/conv2d/kernel' variable)")
    return stems[0]


def read_automl_checkpoint(model: keras.Model, path: str, use_ema: bool = True
                           ) -> tuple[dict[str, list[np.ndarray]], bool]:
    """The original checkpoint's values for `model`'s layers, by layer name, in the order of
    each layer's weights; and whether EMA shadow variables were used.

    The classifier is left out when the checkpoint has none (`copy_layers` keeps a new one
    for another class count). Any other weight missing from the checkpoint or of another
    shape raises UserError naming it.
    """
    try:
        reader = tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"cannot read checkpoint {path}: {first_line(e)}") from None
    shapes = reader.get_variable_to_shape_map()
    prefix = _model_prefix(set(shapes), path)
    has_ema = any(n.endswith(EMA_SUFFIX) for n in shapes)
    use_ema = use_ema and has_ema
    mapping = automl_names(model)
    by_layer: dict[str, list[np.ndarray]] = {}
    for layer in model.layers:
        values = []
        for w in layer.weights:
            name = f"{prefix}/{mapping[w.path]}"
            if name not in shapes and BN in name:  # checkpoints trained on GPU
                name = name.replace(BN, "batch_normalization")
            if name not in shapes:
                if layer.name == "predictions":
                    values = None
                    break
                raise UserError(f"{path} has no variable {prefix}/{mapping[w.path]} for "
                                f"{w.path}: not a checkpoint of this architecture")
            if tuple(shapes[name]) != tuple(w.shape) and layer.name != "predictions":
                raise UserError(f"{name} has shape {tuple(shapes[name])} in {path} but "
                                f"{w.path} has {tuple(w.shape)}: another architecture")
            ema = name + EMA_SUFFIX
            values.append(reader.get_tensor(ema if use_ema and ema in shapes else name))
        if values:
            by_layer[layer.name] = values
    return by_layer, use_ema
