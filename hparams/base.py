"""The base config: every key a run can set, with the original's defaults.

Per-model and per-dataset configs (model_configs.py, dataset_configs.py) override parts of
it; `--config_file` and `--hparam_str` override last. README.md documents every key.
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict


def base_config() -> ml_collections.ConfigDict:
    """A fresh copy of the defaults (sections: model, train, eval, data, runtime)."""
    return ml_collections.ConfigDict({
        "model": {
            "model_name": "efficientnetv2-s",
            "blocks": config_dict.placeholder(list),  # None: the model name's blocks.
            "width_coefficient": 1.0,
            "depth_coefficient": 1.0,
            "dropout_rate": 0.2,
            "survival_prob": 0.8,
            "activation": "silu",
            "bn_momentum": 0.9,
            "bn_epsilon": 1e-3,
            "synchronized_bn": False,
            "data_format": "channels_last",
            "feature_size": 1280,
            "depth_divisor": 8,
            "min_depth": 8,
            "num_classes": config_dict.placeholder(int),  # None: the dataset's.
        },
        "train": {
            "epochs": 350,
            "batch_size": 4096,
            "stages": 0,
            "sched": False,
            "isize": config_dict.placeholder(int),
            "optimizer": "rmsprop",
            "lr_sched": "exponential",
            "lr_base": 0.016,
            "lr_decay_epoch": 2.4,
            "lr_decay_factor": 0.97,
            "lr_warmup_epoch": 5.0,
            "lr_min": 0.0,
            "ema_decay": 0.9999,
            "weight_decay": 1e-5,
            "weight_decay_inc": 0.0,
            "weight_decay_exclude": ".*(bias|gamma|beta).*",
            "label_smoothing": 0.1,
            "loss_type": config_dict.placeholder(str),  # softmax, or sigmoid if multiclass.
            "gclip": 0.0,
            "min_steps": 0,
            "split": "train",
            "ft_init_ckpt": config_dict.placeholder(str),
            "ft_init_ema": True,
            "varsexp": config_dict.placeholder(str),
            "seed": 0,
            "dropout_base": 0.1,  # first stage's dropout when train.sched is on.
        },
        "eval": {
            "batch_size": 64,
            "isize": config_dict.placeholder(int),
            "split": "eval",
        },
        "data": {
            "ds_name": "imagenet",
            "data_dir": config_dict.placeholder(str),
            "augname": "randaug",
            "ra_num_layers": 2,
            "ram": 15,
            "mixup_alpha": 0.0,
            "cutmix_alpha": 0.0,
            "ibase": 128,
            "min_crop_area": 0.05,  # random-area crop: fraction of the image, at least.
            "crop_padding": 32,  # eval centre crop keeps size / (size + crop_padding).
            "cache": True,
            "shuffle_buffer": 16384,
            "val_fraction": 0.1,  # imagefolder without val/: seeded share of each class.
            "multiclass": False,
            "max_train_examples": 0,  # keep only the first N training examples (0: all).
            "max_eval_examples": 0,  # keep only the first N eval examples (0: all).
        },
        "runtime": {
            "strategy": "default",
            "iterations_per_loop": 100,
            "mixed_precision": config_dict.placeholder(bool),  # None: on for GPU/TPU.
            # None: XLA on GPUs and TPUs, off on CPUs (where TF's own kernels are faster:
            # 2.1x the training throughput of efficientnetv2-b0 at 32 px, --mode=bench).
            "xla": config_dict.placeholder(bool),
            "keep_checkpoint_max": 5,
        },
    })
