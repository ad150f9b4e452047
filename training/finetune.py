"""Fine-tuning: initial weights from another run's checkpoint (`train.ft_init_ckpt`)."""

from __future__ import annotations

import os
from collections.abc import Callable

import ml_collections
import tensorflow as tf
import yaml

import efficientnetv2
from efficientnetv2 import hparams
from efficientnetv2.errors import UserError

from .checkpoints import ema_key, resolve_checkpoint

CLASSIFIER = "predictions"


def _run_config(checkpoint: str):
    directory = os.path.dirname(checkpoint)
    for folder in (directory, os.path.dirname(directory)):  # model_dir or model_dir/best
        path = os.path.join(folder, hparams.CONFIG_FILENAME)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                return ml_collections.ConfigDict(yaml.safe_load(f))
    raise UserError(f"no {hparams.CONFIG_FILENAME} beside {checkpoint}: train.ft_init_ckpt "
                    "takes checkpoints written by this project's training")


def load_initial_weights(model, path: str, use_ema: bool = True,
                         log: Callable[[str], None] = print) -> None:
    """Copies the weights of a checkpoint into `model`, layer by layer (by name); the
    classifier is skipped when the class counts differ. With `use_ema`, the checkpoint's
    EMA weights are used where it has them."""
    checkpoint = resolve_checkpoint(path)
    source_config = _run_config(checkpoint)
    name, overrides = hparams.model_arguments(source_config)
    source = efficientnetv2.get_model(name, source_config.model.num_classes, **overrides)
    averages = {ema_key(v): tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False)
                for v in source.trainable_variables}
    tf.train.Checkpoint(model=source, ema=averages).restore(checkpoint).expect_partial()
    saved = {key.split("/")[1] for key, _ in tf.train.list_variables(checkpoint)
             if key.startswith("ema/")}
    if use_ema and saved:
        for variable in source.trainable_variables:
            key = ema_key(variable)
            if key.replace(".", "..") in saved:  # checkpoint keys escape "." as ".."
                variable.assign(averages[key])
    copied, skipped = 0, []
    for layer in model.layers:
        if not layer.weights:
            continue
        try:
            source_layer = source.get_layer(layer.name)
        except ValueError:
            raise UserError(f"{checkpoint} ({name}) has no layer {layer.name!r}: "
                            "train.ft_init_ckpt must be a checkpoint of the same architecture")
        shapes = [tuple(w.shape) for w in layer.weights]
        source_shapes = [tuple(w.shape) for w in source_layer.weights]
        if shapes != source_shapes:
            if layer.name == CLASSIFIER:
                skipped.append(f"{CLASSIFIER} ({source_shapes[0][-1]} -> {shapes[0][-1]} classes)")
                continue
            raise UserError(f"layer {layer.name!r} has shapes {shapes} here but {source_shapes} in "
                            f"{checkpoint} ({name}): not the same architecture")
        layer.set_weights(source_layer.get_weights())
        copied += 1
    ema = "EMA " if use_ema and saved else ""
    log(f"initialised {copied} layers from the {ema}weights of {checkpoint}"
        + (f"; new {', '.join(skipped)}" if skipped else ""))
