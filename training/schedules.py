"""Learning-rate schedules with linear warmup, and the weight-decay ramp.

The base rate is `train.lr_base * batch_size / 256`. After `lr_warmup_epoch` epochs of linear
warmup from 0: exponential (x `lr_decay_factor` every `lr_decay_epoch` epochs, staircase),
cosine or linear decay over all steps, or constant; never below `lr_min`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from efficientnetv2.errors import UserError

SCHEDULES = ("exponential", "cosine", "linear", "constant")


@keras.saving.register_keras_serializable(package="efficientnetv2")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The original's learning-rate schedule as a Keras schedule (a function of the step)."""

    def __init__(self, kind: str, base_lr: float, total_steps: int, warmup_steps: int = 0,
                 decay_steps: int = 1, decay_factor: float = 0.97, lr_min: float = 0.0):
        if kind not in SCHEDULES:
            raise UserError(f"train.lr_sched {kind!r} must be one of {', '.join(SCHEDULES)}")
        self.kind = kind
        self.base_lr = float(base_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(warmup_steps)
        self.decay_steps = max(1, int(decay_steps))
        self.decay_factor = float(decay_factor)
        self.lr_min = float(lr_min)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        progress = step / self.total_steps
        if self.kind == "exponential":
            lr = self.base_lr * self.decay_factor ** tf.floor(step / self.decay_steps)
        elif self.kind == "cosine":
            lr = 0.5 * self.base_lr * (1.0 + tf.cos(math.pi * progress))
        elif self.kind == "linear":
            lr = (1.0 - progress) * self.base_lr
        else:
            lr = tf.constant(self.base_lr)
        if self.warmup_steps:
            lr = tf.where(step < self.warmup_steps, self.base_lr * step / self.warmup_steps, lr)
        return tf.maximum(lr, self.lr_min)

    def get_config(self) -> dict:
        return {"kind": self.kind, "base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay_steps": self.decay_steps,
                "decay_factor": self.decay_factor, "lr_min": self.lr_min}


def learning_rate_schedule(train_config, steps_per_epoch: int, total_steps: int) -> WarmupSchedule:
    """The schedule a train config asks for; peak and floor scaled by batch_size / 256."""
    scale = train_config.batch_size / 256.0
    return WarmupSchedule(
        train_config.lr_sched,
        train_config.lr_base * scale,
        total_steps,
        warmup_steps=int(train_config.lr_warmup_epoch * steps_per_epoch),
        decay_steps=int(train_config.lr_decay_epoch * steps_per_epoch),
        decay_factor=train_config.lr_decay_factor,
        lr_min=train_config.lr_min * scale)


def weight_decay(base: float, increase: float, step, total_steps: int):
    """The weight-decay ramp: (1 + increase * step / total_steps) * base."""
    return (1.0 + increase * tf.cast(step, tf.float32) / max(1, total_steps)) * base
