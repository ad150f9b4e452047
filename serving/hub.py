"""TF-Hub modules of a run or of pretrained weights: reusable SavedModels that another project
loads with `hub.load` or `hub.KerasLayer` (tensorflow-hub; tf-keras under TensorFlow 2.16+).

Two modules, as TF-Hub publishes for every model of the original:
- `classification`: images in, logits out;
- `feature_vector`: images in, the pooled features (the classifier's input) out.

Input, the TF-Hub image convention: float32 [batch, height, width, 3], pixel values in
[0, 1], best at the run's eval size (any size works; the model was trained at that one). The
module applies the run's normalisation itself. Both modules are trainable: called with
`training=True` (what `hub.KerasLayer(..., trainable=True)` does while fitting) batch norm
uses the batch's statistics and updates its moving ones; with `training=False` it normalises
with the moving statistics, as inference does.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from efficientnetv2.datasets import preprocessing

KINDS = ("classification", "feature_vector")


def hub_module(model: keras.Model, normalization: str) -> tf.train.Checkpoint:
    """An object with the reusable SavedModel API: `__call__(images, training)`, traced for
    both values of `training`, `variables`, `trainable_variables`, `regularization_losses`."""
    @tf.function
    def call(images, training=False):
        pixels = tf.cast(images, tf.float32) * 255.0
        return model(preprocessing.normalize(pixels, normalization), training=training)

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)  # any size
    for training in (False, True):
        call.get_concrete_function(spec, training=training)
    module = tf.train.Checkpoint()
    module.__call__ = call
    module.variables = [v.value for v in model.variables]
    module.trainable_variables = [v.value for v in model.trainable_variables]
    module.regularization_losses = []
    return module


def feature_model(model: keras.Model) -> keras.Model:
    """The model up to its pooled features (the classifier's input), sharing its weights."""
    return keras.Model(model.input, model.get_layer("avg_pool").output,
                       name=f"{model.name}_feature_vector")


def save_hub_modules(model: keras.Model, normalization: str, target: str) -> list[str]:
    """Writes `target/classification` and `target/feature_vector`; returns their paths."""
    paths = []
    for kind in KINDS:
        module = hub_module(model if kind == "classification" else feature_model(model),
                            normalization)
        path = os.path.join(target, kind)
        tf.saved_model.save(module, path)
        paths.append(path)
    return paths
