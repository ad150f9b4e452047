"""Configs: base defaults, per-model and per-dataset overrides, YAML and `hparam_str`.

    config = hparams.build_config("efficientnetv2-s", "imagenet", hparam_str="train.epochs=10")
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from efficientnetv2 import OVERRIDES, UserError, resolve_options
from efficientnetv2.families import architecture, model_normalization

from .base import base_config
from .dataset_configs import DATASET_CONFIGS, dataset_config, resolve_dataset_cfg
from .model_configs import CUSTOM, model_config
from .overrides import (
    apply_overrides,
    flatten,
    load_yaml,
    own_names,
    parse_hparam_str,
    parse_overrides,
    parse_value,
)

__all__ = [
    "CUSTOM", "DATASET_CONFIGS", "apply_overrides", "base_config", "build_config", "dataset_config",
    "user_overrides",
    "flatten", "load_yaml", "loss_type", "model_arguments", "model_config", "parse_hparam_str",
    "parse_overrides", "parse_value",
]
LOSS_TYPES = ("softmax", "sigmoid", "custom")
BEST_METRICS = ("top1", "balanced_accuracy")
CLASS_WEIGHTS = ("none", "balanced")


def user_overrides(config_file: str | None = None, hparam_str: str = "",
                   extra: dict[str, Any] | None = None, sweeps: str = "") -> dict[str, dict]:
    """The user's overrides by source, in the order they apply: {source: flat keys}.
    `hparam_str` and `sweeps` are key=value pairs or a YAML file's path, as the original's;
    `extra` holds the flags' keys (None: not set)."""
    return {f"config file {config_file}": own_names(load_yaml(config_file)) if config_file else {},
            "flags": {k: v for k, v in (extra or {}).items() if v is not None},
            "`hparam_str`": own_names(parse_overrides(hparam_str)),
            "`sweeps`": own_names(parse_overrides(sweeps, "sweeps"))}


def build_config(model_name: str = "efficientnetv2-s", dataset_cfg: str = "imagenet",
                 config_file: str | None = None, hparam_str: str = "",
                 extra: dict[str, Any] | None = None, sweeps: str = "",
                 initial_run: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
    """base < model < dataset < YAML file < `extra` (flags) < hparam_str < sweeps, then
    resolved (image sizes, preprocessing recipe) and validated.

    `imagefolder` with `train.ft_init_ckpt` set builds the `imagefolderft` config instead;
    `initial_run` is the saved config of the run that `train.ft_init_ckpt` names, whose
    network fine-tuning takes (run_folder.build_config reads it).
    """
    sources = user_overrides(config_file, hparam_str, extra, sweeps)
    given = {key: value for flat in sources.values() for key, value in flat.items()}
    dataset_cfg = resolve_dataset_cfg(dataset_cfg, given.get("train.ft_init_ckpt"))
    config = base_config()
    apply_overrides(config, flatten(model_config(model_name)), f"model config {model_name}")
    apply_overrides(config, flatten(dataset_config(dataset_cfg)), f"dataset config {dataset_cfg}")
    for source, flat in sources.items():
        apply_overrides(config, flat, source)
    if initial_run is not None:
        adopt_initial_network(config, given, initial_run)
    if (config.data.auto and config.data.ds_name == "imagefolder" and config.data.data_dir
            and os.path.isdir(config.data.data_dir)):  # else the data loader says what is wrong
        plan_from_folder(config, given)
    check_ranges(config)
    resolve_image_sizes(config)
    if config.train.ft_init_ckpt and "data.normalization" not in given:
        config.data.normalization = initial_weights_normalization(config, initial_run)
    resolve_preprocessing(config)
    config.train.loss_type = loss_type(config)  # recorded: a later default cannot change it
    config.train.class_weights = config.train.class_weights or "none"  # `none` parses as None
    if config.train.class_weights not in CLASS_WEIGHTS:
        raise UserError(f"train.class_weights {config.train.class_weights!r} must be one of "
                        f"{', '.join(CLASS_WEIGHTS)}")
    if config.eval.best_metric not in BEST_METRICS:
        raise UserError(f"eval.best_metric {config.eval.best_metric!r} must be one of "
                        f"{', '.join(BEST_METRICS)}")
    if config.model.model_name == CUSTOM and not config.model.blocks:
        raise UserError("model 'custom' needs block strings: "
                        "`hparam_str`=model.blocks=r1_k3_s1_e1_i16_o16_c1|r2_k3_s2_e4_i16_o32")
    model_name_or_blocks, overrides = model_arguments(config)
    resolve_options(model_name_or_blocks, overrides)
    return config


# What makes a run's network: fine-tuning from a run takes these from its config.yaml.
NETWORK_KEYS = ("blocks", "width_coefficient", "depth_coefficient", "activation", "feature_size",
                "depth_divisor", "min_depth", "stem_stride", "bn_type", "gn_groups")


def adopt_initial_network(config: ml_collections.ConfigDict, given: dict[str, Any],
                          run: ml_collections.ConfigDict) -> None:
    """Fine-tuning from a run folder (`run`: its saved config): the network is the run's (its
    blocks, scaling and stem, which `data.auto` may have chosen), except keys the user set."""
    source = run.model
    for key in NETWORK_KEYS:
        if f"model.{key}" not in given and key in source:
            config.model[key] = source[key]
    if ("model.blocks" not in given and not source.get("blocks")
            and source.model_name != config.model.model_name and source.model_name != CUSTOM):
        config.model.blocks = list(architecture(source.model_name).blocks)  # its model's


def initial_weights_normalization(config: ml_collections.ConfigDict,
                                  run: ml_collections.ConfigDict | None = None) -> str:
    """How the inputs of `train.ft_init_ckpt`'s weights were normalised when they were
    trained: a run's recorded `data.normalization`; for keras.applications' ImageNet weights,
    a Keras file or an automl checkpoint, the model's own recipe's (ImageNet mean/std for
    V2-B0..B3 and V1, (x - 128) / 128 for V2-S/M/L/XL and custom models)."""
    from efficientnetv2.datasets.preprocessing import recipe_for

    if run is not None:
        return recipe_for(run.data).normalization
    return model_normalization(config.model.model_name)


def plan_from_folder(config: ml_collections.ConfigDict, given: dict[str, Any]) -> None:
    """Sets what `data.auto` chooses from the image folder (keys in `given` stay) and records
    the reasons in `data.auto_plan`."""
    import tensorflow as tf

    from efficientnetv2.datasets.imagefolder import folder_stats

    from . import folder_plan

    stats = folder_stats(config.data.data_dir, config.data.val_fraction)
    accelerator = bool(tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))
    choices = folder_plan.plan(config, stats, set(given), accelerator)
    apply_overrides(config, {c.key: c.value for c in choices}, "data.auto")
    config.data.auto_plan = folder_plan.describe(stats, choices)


# key -> the values that make sense, as an interval ("(0, inf)": positive)
RANGES = {"train.batch_size": "[1, inf)", "eval.batch_size": "[1, inf)",
          "eval.every_epochs": "[1, inf)", "train.epochs": "[0, inf)", "train.stages": "[0, inf)",
          "runtime.iterations_per_loop": "[1, inf)", "runtime.keep_checkpoint_max": "[1, inf)",
          "data.max_train_examples": "[0, inf)", "data.max_eval_examples": "[0, inf)",
          "train.min_steps": "[0, inf)", "runtime.log_step_count_steps": "[0, inf)",
          "train.seed": f"[0, {2**31 - 1}]",
          **{f"data.splits.{split}.num_images": "[1, inf)"
             for split in ("train", "eval", "minival", "trainval")},
          "train.lr_base": "[0, inf)", "train.lr_min": "[0, inf)", "train.lr_warmup_epoch": "[0, inf)",
          "train.lr_decay_epoch": "(0, inf)", "train.lr_decay_factor": "(0, 1]",
          "train.label_smoothing": "[0, 1)", "train.ema_decay": "[0, 1)",
          "train.weight_decay": "[0, inf)", "train.weight_decay_inc": "[0, inf)",
          "train.gclip": "[0, inf)", "train.rmsprop_ms_init": "[0, inf)",
          "train.dropout_base": "[0, 1)", "data.mixup_alpha": "[0, inf)",
          "data.cutmix_alpha": "[0, inf)", "data.random_erasing": "[0, 1]"}


# The original's keys that are accepted but change nothing here, and why.
WITHOUT_EFFECT = {
    "data.tfds_split": "the original reads it nowhere; data.splits.<split>.tfds_split chooses",
    "data.resize": "the original reads it nowhere",
    "runtime.use_async_checkpointing": "checkpoints are written whole before training goes on",
}


def without_effect(config: ml_collections.ConfigDict) -> list[str]:
    """A note for each key of WITHOUT_EFFECT that the config sets."""
    notes = []
    for key, reason in WITHOUT_EFFECT.items():
        section, name = key.split(".")
        value = config[section].get(name)
        if value not in (None, False):
            notes.append(f"note: {key}={value} has no effect here ({reason})")
    return notes


def _inside(value: float, interval: str) -> bool:
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    above = value >= low if interval[0] == "[" else value > low
    below = value <= high if interval[-1] == "]" else value < high
    return above and below


def check_ranges(config: ml_collections.ConfigDict) -> None:
    """Values outside what makes sense (a batch of 0, a negative rate, label smoothing of 5)
    as one-line errors naming the key and its range."""
    for key, interval in RANGES.items():
        *sections, name = key.split(".")
        node = config
        for section in sections:
            node = node[section]
        value = node.get(name)
        if isinstance(value, (int, float)) and not _inside(value, interval):
            raise UserError(f"{key}={value} must be in {interval}")


def resolve_image_sizes(config: ml_collections.ConfigDict) -> None:
    """Checks the sizes and turns a fractional `train.isize` (a float <= 16) into pixels:
    int(eval.isize * isize) // 16 * 16, as the original."""
    eval_size, isize = config.eval.isize, config.train.isize
    if not isinstance(eval_size, int) or eval_size <= 0:
        raise UserError(f"eval.isize={eval_size!r} must be a positive number of pixels")
    if isize is None:
        isize = eval_size
    if isinstance(isize, bool) or not isinstance(isize, (int, float)) or isize <= 0:
        raise UserError(f"train.isize={isize!r} must be a positive number of pixels, or a "
                        "fraction of eval.isize such as 0.8 or 1.0")
    if isinstance(isize, float) and isize <= 16:
        pixels = int(eval_size * isize) // 16 * 16
        if pixels <= 0:
            raise UserError(f"train.isize={isize} of eval.isize={eval_size} is under 16 pixels; "
                            "give train.isize in pixels")
        isize = pixels
    config.train.isize = int(isize)


def resolve_preprocessing(config: ml_collections.ConfigDict) -> None:
    """Records the recipe `data.augname` selects and the normalisation and crop area it uses
    (the recipe's own where unset) in the config, so every run's config.yaml says them."""
    from efficientnetv2.datasets.preprocessing import recipe_for

    recipe = recipe_for(config.data)
    config.data.recipe = recipe.name
    config.data.normalization = recipe.normalization
    config.data.min_crop_area = recipe.min_crop_area


def loss_type(config: ml_collections.ConfigDict) -> str:
    """'softmax', 'sigmoid' or 'custom' (sigmoid summed over the classes): `train.loss_type`,
    softmax when unset (for multi-label data too, on labels scaled to sum to 1, as the
    original). Training, evaluation and export all ask here."""
    kind = config.train.loss_type or "softmax"
    if kind not in LOSS_TYPES:
        raise UserError(f"train.loss_type {kind!r} must be one of {', '.join(LOSS_TYPES)}")
    return kind


def model_arguments(config: ml_collections.ConfigDict) -> tuple[Any, dict[str, Any]]:
    """(model name or block strings, overrides) to pass to `efficientnetv2.get_model`."""
    model = config.model
    overrides = {key: model[key] for key in OVERRIDES if key != "blocks"}
    overrides["bn_type"] = model.bn_type or "bn"  # unset: tpu_bn on a TPU (the Evaluator's)
    if model.blocks:
        overrides["blocks"] = list(model.blocks)
    name = model.model_name if model.model_name != CUSTOM else list(model.blocks)
    return name, overrides
