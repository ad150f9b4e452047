"""Optimizer, loss and regularization from the train config (Keras 3 optimizers and losses)."""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf

from efficientnetv2.errors import UserError

OPTIMIZERS = ("rmsprop", "sgd", "momentum", "adam", "adamw")


class RMSprop(keras.optimizers.RMSprop):
    """Keras' RMSprop with the mean square of the gradients starting at `initial_mean_square`:
    1 in TF1's `RMSPropOptimizer` (the original's main.py), 0 in Keras (its main_tf2.py)."""

    def __init__(self, initial_mean_square: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_mean_square = float(initial_mean_square)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        for velocity in self._velocities:
            velocity.assign(keras.ops.full_like(velocity, self.initial_mean_square))

    def get_config(self):
        return {**super().get_config(), "initial_mean_square": self.initial_mean_square}


def build_optimizer(train_config, learning_rate, mixed_float16: bool = False,
                    weight_decay=None, not_decayed: list | None = None
                    ) -> keras.optimizers.Optimizer:
    """The optimizer `train.optimizer` names, with gradient clipping by global norm
    (`train.gclip` > 0; under tf.distribute each replica's gradient is clipped before the
    sum, as the original's CrossShardOptimizer does). rmsprop has the original's settings
    (decay 0.9, momentum 0.9, epsilon 0.001, the mean square starting at
    `train.rmsprop_ms_init`); momentum is plain momentum 0.9 (Nesterov's with
    `train.nesterov`); adamw applies `train.weight_decay` as decoupled weight decay to every
    variable but `not_decayed` (`weight_decay`, when given, is a variable the training loop
    updates every step: the weight-decay ramp). `mixed_float16` wraps it in Keras' dynamic
    loss scaling. The EMA of the weights is the training loop's (`average_of`), as for the
    batch-norm statistics."""
    common = {"learning_rate": learning_rate, "global_clipnorm": train_config.gclip or None}
    name = train_config.optimizer
    if name == "rmsprop":
        optimizer = RMSprop(rho=0.9, momentum=0.9, epsilon=0.001,
                            initial_mean_square=train_config.rmsprop_ms_init, **common)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(**common)
    elif name == "momentum":
        optimizer = keras.optimizers.SGD(momentum=0.9, nesterov=bool(train_config.get("nesterov")),
                                          **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(**common)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=train_config.weight_decay, **common)
        optimizer.exclude_from_weight_decay(var_list=not_decayed or [])
        if weight_decay is not None:
            optimizer.weight_decay = weight_decay
    else:
        raise UserError(f"train.optimizer {name!r} must be one of {', '.join(OPTIMIZERS)}")
    if mixed_float16:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def average_of(variable) -> keras.Variable:
    """A variable to hold `variable`'s EMA, starting at its value, created like it (so that
    it updates the same way under a tf.distribute strategy)."""
    return keras.Variable(variable.numpy(), trainable=False, name=f"{variable.name}_average",
                          aggregation=variable.aggregation,
                          synchronization=variable.synchronization)


def ema_decay_at(decay: float, step):
    """The original's EMA decay with warm-up: min(decay, (1 + n) / (10 + n)) after n updates."""
    n = tf.cast(step, tf.float32) + 1.0
    return tf.minimum(decay, (1.0 + n) / (10.0 + n))


def loss_function(kind: str, label_smoothing: float):
    """Per-example loss on logits: softmax (categorical) or sigmoid (binary) cross-entropy
    with label smoothing; `kind` comes from `hparams.loss_type`. Softmax takes the labels
    scaled to sum to 1, as the original's loss for multi-hot labels (one-hot and mixed
    labels already do). custom is the original's: sigmoid cross-entropy summed over the
    classes, without label smoothing."""
    if kind == "custom":
        def summed_sigmoid_loss(labels, logits):
            return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=tf.cast(labels, logits.dtype), logits=logits), axis=-1)
        return summed_sigmoid_loss
    if kind != "softmax":
        return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing,
                                               reduction=None)
    categorical = keras.losses.CategoricalCrossentropy(
        from_logits=True, label_smoothing=label_smoothing, reduction=None)

    def softmax_loss(labels, logits):
        total = tf.reduce_sum(labels, axis=-1, keepdims=True)
        return categorical(labels / tf.maximum(total, 1e-12), logits)
    return softmax_loss


def class_weights(kind: str, counts) -> np.ndarray:
    """Per-class loss weights: ones, or (balanced) N / (classes * count) for the classes that
    have examples, so that each class weighs alike in all and the mean weight is 1."""
    counts = np.asarray(counts, np.float64)
    if kind == "none" or not counts.size:
        return np.ones_like(counts, np.float32)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _compile(pattern: str, key: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UserError(f"{key} {pattern!r} is not a valid regular expression ({e})") from None


def trained_variables(model: keras.Model, varsexp: str | None) -> list:
    """The variables to train: all trainable ones, or those whose path matches `varsexp`
    (e.g. 'head|predictions' trains the head only); the rest stay frozen."""
    variables = model.trainable_variables
    if not varsexp:
        return variables
    pattern = _compile(varsexp, "train.varsexp")
    chosen = [v for v in variables if pattern.search(v.path)]
    if not chosen:
        raise UserError(f"train.varsexp {varsexp!r} matches no variable; paths look like "
                        f"{variables[0].path!r}, {variables[-1].path!r}")
    return chosen


def decayed_variables(variables: list, exclude: str | None) -> list:
    """The variables under L2 weight decay: those whose path does not match `exclude`."""
    if not exclude:
        return list(variables)
    pattern = _compile(exclude, "train.weight_decay_exclude")
    return [v for v in variables if not pattern.match(v.path)]


def l2_loss(variables: list):
    """sum(v**2) / 2 over the variables (TensorFlow's l2_loss), in float32."""
    if not variables:
        return tf.constant(0.0)
    return tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in variables])
