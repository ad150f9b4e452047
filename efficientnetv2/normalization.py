"""How each model's inputs are normalised: pixels 0..255 -> (x - offset) / scale.

A model's own normalisation is a property of its registry entry (families.py); training
recipes (datasets/preprocessing.py), configs and `preprocess_input` all read this table.
"""

from __future__ import annotations

import keras
import numpy as np

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STDDEV = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# name -> (offset, scale): normalised = (x - offset) / scale, x in 0..255.
NORMALIZATIONS = {
    "scale_128": (128.0, 128.0),  # [-1, 1) as (x - 128) / 128: the default recipe
    "scale_255": (127.5, 127.5),  # [-1, 1] as (x / 255 - 0.5) / 0.5: the ft recipe
    "imagenet": (IMAGENET_MEAN, IMAGENET_STDDEV),  # ImageNet mean/std: the effnetv1 recipe
}


def normalize(image, normalization: str = "scale_128"):
    """0..255 -> what the model takes: (x - offset) / scale of `NORMALIZATIONS[normalization]`.
    Keras ops: works in tf.data pipelines, eagerly and on a Keras model's symbolic inputs."""
    offset, scale = NORMALIZATIONS[normalization]
    return (keras.ops.cast(image, "float32") - np.float32(offset)) / np.float32(scale)
