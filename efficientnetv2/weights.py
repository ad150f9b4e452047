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


def copy_from_keras_applications(src_model: keras.Model, dst_model: keras.Model) -> int:
    """Copies every weight of a keras.applications EfficientNet(V2) into our model.

    Both models create their weights in the order they compute, so weights are paired in
    order and every pair must have the same shape; any difference (another architecture,
    width or class count) raises `UserError` naming the first mismatching pair and nothing
    is written. The source's built-in preprocessing layers are skipped (see
    `keras_applications_preprocessing`). Returns the number of tensors copied.
    """
    src = [w for layer in src_model.layers if not _is_preprocessing(layer) for w in layer.weights]
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
