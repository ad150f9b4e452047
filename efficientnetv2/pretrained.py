"""Pretrained weights: keras.applications' ImageNet weights, the original automl checkpoints
and Keras weight files, copied into a model from `get_model`.

    model = efficientnetv2.get_model("efficientnetv2-b0", weights="imagenet")
    model = efficientnetv2.get_model("efficientnetv2-s", 10, weights="/ckpts/efficientnetv2-s")
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from efficientnetv2 import released
from efficientnetv2.automl_import import read_automl_checkpoint
from efficientnetv2.errors import UserError, first_line
from efficientnetv2.weights import keras_applications_values

CLASSIFIER = "predictions"

# Our names -> keras.applications constructors. keras.applications' EfficientNetB3 differs from
# the original (its width rounding), and it has no V2-XL, B8 or L2.
KERAS_APPLICATIONS: dict[str, Callable[..., keras.Model]] = {
    **{f"efficientnetv2-{v}": getattr(keras.applications, f"EfficientNetV2{v.upper()}")
       for v in ("b0", "b1", "b2", "b3", "s", "m", "l")},
    **{f"efficientnet-b{i}": getattr(keras.applications, f"EfficientNetB{i}")
       for i in (0, 1, 2, 4, 5, 6, 7)},
}


def imagenet_constructor(model_name: str | None):
    """keras.applications' constructor of `model_name`, or a UserError naming those that have
    ImageNet weights."""
    if model_name not in KERAS_APPLICATIONS:
        raise UserError(f"keras.applications has no weights for {model_name}; models with "
                        f"ImageNet weights: {', '.join(KERAS_APPLICATIONS)} (or pass an automl "
                        "checkpoint as weights=PATH)")
    return KERAS_APPLICATIONS[model_name]


def keras_application(model_name: str, include_top: bool, weights: str | None = "imagenet"
                      ) -> keras.Model:
    """keras.applications' model for `model_name` with its ImageNet weights (or a `.h5` file).

    Keras downloads the weights once into its cache (`~/.keras/models`, or `$KERAS_HOME/models`);
    offline, a UserError names the file to fetch and where to put it.
    """
    constructor = imagenet_constructor(model_name)
    kwargs = {"include_preprocessing": False} if "V2" in constructor.__name__ else {}
    try:
        return constructor(include_top=include_top, weights=weights, **kwargs)
    except Exception as e:  # Keras raises a bare Exception when a download fails
        if weights != "imagenet" or "fetch failure" not in str(e):
            raise
        app = constructor(include_top=include_top, weights=None, **kwargs)
        file_name = app.name + (".h5" if include_top else "_notop.h5")
        url = _weights_url(constructor, file_name)
        folder = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
        raise UserError(f"cannot download the ImageNet weights of {model_name} (offline?): "
                        f"fetch {url} and put {file_name} in {folder}") from None


def _weights_url(constructor, file_name: str) -> str:
    import importlib

    module = importlib.import_module(f"keras.src.applications.{constructor.__module__.rsplit('.', 1)[-1]}")
    return getattr(module, "BASE_WEIGHTS_PATH", "") + file_name


def copy_layers(model: keras.Model, values: dict[str, list[np.ndarray]], origin: str,
                keep_classifier: bool = False) -> str:
    """Sets each layer of `model` from `values` (layer name -> arrays in the layer's weight
    order). Every layer with weights must be there with equal shapes, except the classifier,
    which stays new when the source has none or another class count (a UserError with
    `keep_classifier`: scoring or serving weights needs theirs). Nothing is written unless
    every layer fits. Returns a one-line description for logs."""
    updates, new_classifier = [], None
    for layer in model.layers:
        if not layer.weights:
            continue
        arrays = values.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if arrays is None or [tuple(np.shape(a)) for a in arrays] != shapes:
            if layer.name == CLASSIFIER:
                source = "none" if arrays is None else f"{np.shape(arrays[-1])[-1]} classes"
                if keep_classifier:
                    raise UserError(f"{origin} has {source} in its classifier, the dataset "
                                    f"{shapes[-1][-1]}: fine-tune them first "
                                    "(train.ft_init_ckpt), or pick the dataset they classify")
                new_classifier = f"new {CLASSIFIER} ({source} in the source, {shapes[-1][-1]} here)"
                continue
            found = "missing" if arrays is None else f"shapes {[np.shape(a) for a in arrays]}"
            raise UserError(f"layer {layer.name!r} ({shapes}) is {found} in {origin}: "
                            "not weights of this architecture")
        updates.append((layer, arrays))
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return f"{len(updates)} layers from {origin}" + (f"; {new_classifier}" if new_classifier else "")


def layer_values(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """{layer name: its weights as arrays} of every layer with weights (`copy_layers`' input)."""
    # variable.numpy(), not get_weights(): that one warns once per variable under NumPy 2
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}


def _h5_has_top(path: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
    except (OSError, KeyError) as e:
        raise UserError(f"{path} is not a keras.applications weights file ({e})") from None
    return CLASSIFIER in names


def _imagenet_values(model: keras.Model, model_name: str | None, weights: str = "imagenet"
                     ) -> dict[str, list[np.ndarray]]:
    """keras.applications' weights (ImageNet, or a `.h5` file of them) by our layer names."""
    has_top = any(layer.name == CLASSIFIER for layer in model.layers)
    if weights == "imagenet":
        app_top = has_top and model.get_layer(CLASSIFIER).units == 1000
    else:
        app_top = _h5_has_top(weights)
    return keras_applications_values(keras_application(model_name, app_top, weights), model)


def _checkpoint_in(folder: str) -> str:
    """The latest checkpoint of a folder: by its `checkpoint` file, else the newest `.index`."""
    latest = tf.train.latest_checkpoint(folder)
    if latest:
        return latest
    indexes = sorted((os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".index")),
                     key=os.path.getmtime)
    return indexes[-1][: -len(".index")] if indexes else folder


def load_pretrained(model: keras.Model, model_name: str | None, weights: str,
                    use_ema: bool = True, keep_classifier: bool = False) -> str:
    """Loads `weights` into `model`: 'imagenet' (keras.applications), a released checkpoint
    of the original by name (`efficientnetv2-s-21k-ft1k`: released.py, downloaded once), an
    automl checkpoint (prefix or folder), a keras.applications `.h5` file or a `.weights.h5`
    file of `model.save_weights` (see copy_layers for `keep_classifier`). Returns a one-line
    description."""
    def copy(values, origin):
        return copy_layers(model, values, origin, keep_classifier)
    if released.is_released(weights):
        if model_name and model_name != released.architecture(weights):
            raise UserError(f"the released {weights} weights are {released.architecture(weights)}'s, "
                            f"not {model_name}'s; use model {released.architecture(weights)}")
        values, ema = read_automl_checkpoint(model, _checkpoint_in(released.fetch(weights)), use_ema)
        return copy(values, f"the {'EMA ' if ema else ''}weights of the released {weights}")
    if weights == "imagenet":
        return copy(_imagenet_values(model, model_name),
                    f"the ImageNet weights of {model_name} (keras.applications)")
    path = _checkpoint_in(weights) if os.path.isdir(weights) else weights
    if path.endswith(".weights.h5"):
        twin = keras.models.clone_model(model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                twin.load_weights(path)
            except ValueError as e:  # Keras warns of the mismatch first: this line says it
                raise UserError(f"cannot load {path}: {first_line(e)}; a .weights.h5 file must "
                                "come from model.save_weights of the same architecture") from None
        for warning in caught:  # a load that worked keeps its warnings
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
        return copy(layer_values(twin), path)
    if path.endswith(".h5"):
        return copy(_imagenet_values(model, model_name, path), path)
    if not tf.io.gfile.exists(path + ".index"):
        found = "is not a weights file" if os.path.exists(path) else "not found"
        raise UserError(f"weights {weights!r} {found}: give 'imagenet', a released name "
                        "(efficientnetv2-s, efficientnetv2-s-21k, efficientnetv2-s-21k-ft1k, ...), "
                        "an automl checkpoint (folder or prefix), a keras.applications .h5 or a "
                        ".weights.h5 file")
    values, ema = read_automl_checkpoint(model, path, use_ema)
    return copy(values, f"{'the EMA of ' if ema else ''}automl checkpoint {path}")
