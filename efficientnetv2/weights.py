"""Weight transfer between our models and keras.applications' EfficientNet / EfficientNetV2."""

from __future__ import annotations

import keras

from efficientnetv2.errors import UserError

_PREPROCESSING = (keras.layers.Rescaling, keras.layers.Normalization)


def _is_preprocessing(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, _PREPROCESSING)


def keras_applications_preprocessing(src_model: keras.Model) -> keras.Model:
    """The input preprocessing built into a keras.applications model, as a model of its own.

    EfficientNet V1 models (and V2 with `include_preprocessing=True`) rescale and normalise
    inside the network; our models take already-normalised images. Feeding our model the
    output of this function reproduces the keras.applications model exactly.
    """
    last = None
    for layer in src_model.layers[1:]:
        if not _is_preprocessing(layer):
            break
        last = layer
    output = last.output if last is not None else src_model.input
    return keras.Model(src_model.input, output, name=f"{src_model.name}_preprocessing")


def _source_weights(src_model: keras.Model) -> list:
    return [w for layer in src_model.layers if not _is_preprocessing(layer) for w in layer.weights]


def keras_applications_values(src_model: keras.Model, dst_model: keras.Model) -> dict[str, list]:
    """A keras.applications model's weights as {our layer name: arrays}, paired in order.

    A source without top pairs with `dst_model` less its classifier. Shapes are checked by
    whoever sets them (`pretrained.copy_layers`); a different count raises UserError.
    """
    src = _source_weights(src_model)
    src_top = any(layer.name == "predictions" for layer in src_model.layers)
    layers = [layer for layer in dst_model.layers
              if layer.weights and (src_top or layer.name != "predictions")]
    if sum(len(layer.weights) for layer in layers) != len(src):
        raise UserError(f"{src_model.name} has {len(src)} weight tensors but {dst_model.name} "
                        f"has {sum(len(layer.weights) for layer in layers)}; the two models are "
                        "different architectures")
    tensors = iter(src)
    return {layer.name: [next(tensors).numpy() for _ in layer.weights]
            for layer in layers}


def copy_from_keras_applications(src_model: keras.Model, dst_model: keras.Model) -> int:
    """Copies every weight of a keras.applications EfficientNet(V2) into our model.

    Both models create their weights in the order they compute, so weights are paired in
    order and every pair must have the same shape; any difference (another architecture,
    width or class count) raises `UserError` naming the first mismatching pair and nothing
    is written. The source's built-in preprocessing layers are skipped (see
    `keras_applications_preprocessing`). Returns the number of tensors copied.
    """
    src = _source_weights(src_model)
    dst = list(dst_model.weights)
    for index, (s, d) in enumerate(zip(src, dst)):
        if tuple(s.shape) != tuple(d.shape):
            raise UserError(
                f"weight {index} does not match: {s.path} has shape {tuple(s.shape)} but "
                f"{d.path} has {tuple(d.shape)}; the two models are different architectures")
    if len(src) != len(dst):
        raise UserError(f"{src_model.name} has {len(src)} weight tensors but {dst_model.name} "
                        f"has {len(dst)}; the two models are different architectures")
    for s, d in zip(src, dst):
        d.assign(s)
    return len(dst)
