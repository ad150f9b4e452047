"""Configs: base defaults, per-model and per-dataset overrides, YAML and `--hparam_str`.

    config = hparams.build_config("efficientnetv2-s", "imagenet", hparam_str="train.epochs=10")
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections
import yaml

from efficientnetv2 import OVERRIDES, UserError, resolve_options

from .base import base_config
from .dataset_configs import DATASET_CONFIGS, dataset_config
from .model_configs import CUSTOM, model_config
from .overrides import (
    apply_overrides,
    flatten,
    load_yaml,
    parse_hparam_str,
    parse_value,
)

__all__ = [
    "CUSTOM", "DATASET_CONFIGS", "base_config", "build_config", "dataset_config",
    "flatten", "load_yaml", "model_arguments", "model_config", "parse_hparam_str",
    "parse_value", "save_config",
]
CONFIG_FILENAME = "config.yaml"


def build_config(model_name: str = "efficientnetv2-s", dataset_cfg: str = "imagenet",
                 config_file: str | None = None, hparam_str: str = "",
                 extra: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """base < model < dataset < YAML file < `extra` (flags) < hparam_str, then validated."""
    config = base_config()
    apply_overrides(config, flatten(model_config(model_name)), f"model config {model_name}")
    apply_overrides(config, flatten(dataset_config(dataset_cfg)), f"dataset config {dataset_cfg}")
    if config_file:
        apply_overrides(config, load_yaml(config_file), f"config file {config_file}")
    apply_overrides(config, {k: v for k, v in (extra or {}).items() if v is not None}, "flags")
    apply_overrides(config, parse_hparam_str(hparam_str), "--hparam_str")
    if config.model.model_name == CUSTOM and not config.model.blocks:
        raise UserError("model 'custom' needs block strings: "
                        "--hparam_str=model.blocks=r1_k3_s1_e1_i16_o16_c1|r2_k3_s2_e4_i16_o32")
    model_name_or_blocks, overrides = model_arguments(config)
    resolve_options(model_name_or_blocks, overrides)
    return config


def model_arguments(config: ml_collections.ConfigDict) -> tuple[Any, dict[str, Any]]:
    """(model name or block strings, overrides) to pass to `efficientnetv2.get_model`."""
    model = config.model
    overrides = {key: model[key] for key in OVERRIDES if key != "blocks"}
    if model.blocks:
        overrides["blocks"] = list(model.blocks)
    name = model.model_name if model.model_name != CUSTOM else list(model.blocks)
    return name, overrides


def save_config(config: ml_collections.ConfigDict, directory: str) -> str:
    """Writes the run's final config as YAML in `directory`; returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, CONFIG_FILENAME)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(config.to_dict(), f, sort_keys=False)
    return path
