"""Per-dataset training configs, selected case-insensitively by `--dataset_cfg`.

Each entry overrides parts of the base config; `data.ds_name` names the input pipeline in
the datasets registry.
"""

from __future__ import annotations

import copy

from efficientnetv2.errors import UserError

_FINETUNE = {
    # Fine-tuning uses less regularization because it trains for few steps.
    "model": {"dropout_rate": 0.000001, "survival_prob": 0.8},
    "train": {"batch_size": 512, "stages": 0, "sched": False, "epochs": 15, "isize": 1.0,
              "optimizer": "rmsprop", "lr_sched": "constant", "lr_base": 0.0005,
              "lr_warmup_epoch": 1.0, "ema_decay": 0.9996, "weight_decay": 1e-5,
              "label_smoothing": 0.1, "min_steps": 10000},
    "data": {"ds_name": "imagenettfds", "augname": "ft", "mixup_alpha": 0.0,
             "cutmix_alpha": 0.0},
}


def _finetune(ds_name: str) -> dict:
    config = copy.deepcopy(_FINETUNE)
    config["data"]["ds_name"] = ds_name
    return config


# A user's own folders (--data_dir), from scratch: AdamW with warm-up and cosine decay, a
# random-area crop of at least 25% (a shift for small images) and a flip, no RandAugment (on
# 1,000 28 px images it held B0 at 43% where the crop alone gave 58% after 12 epochs), the
# whole image at evaluation (no centre crop), label smoothing, EMA, the model's dropout and
# stochastic depth. The network, sizes, crop, batch, epochs, regularisation of short runs,
# warm-up, EMA and eval cadence come from the folder (data.auto, hparams/folder_plan.py).
_IMAGEFOLDER = {
    "model": {"dropout_rate": 0.2, "survival_prob": 0.8},
    "train": {"epochs": 30, "batch_size": 64, "isize": 224, "stages": 0, "sched": False,
              "optimizer": "adamw", "lr_sched": "cosine", "lr_base": 0.008,
              "lr_warmup_epoch": 1.0, "ema_decay": 0.999, "weight_decay": 0.05,
              "weight_decay_inc": 0.0, "label_smoothing": 0.1, "min_steps": 0},
    "data": {"ds_name": "imagefolder", "augname": "none", "min_crop_area": 0.25,
             "crop_padding": 0, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "auto": True,
             "aug_consts_size": 224},
    "eval": {"batch_size": 64, "isize": 224},
}


DATASET_CONFIGS: dict[str, dict] = {
    "imagenet": {
        "data": {"ds_name": "imagenet"},
        "train": {"epochs": 350, "lr_base": 0.016, "lr_warmup_epoch": 5.0,
                  "lr_sched": "exponential", "label_smoothing": 0.1},
        "eval": {"batch_size": 8},
    },
    "imagenet21k": {
        "model": {"dropout_rate": 0.000001, "survival_prob": 1.0},
        "data": {"ds_name": "imagenet21k", "augname": "none",
                 "mixup_alpha": 0.0, "cutmix_alpha": 0.0},
        "train": {"epochs": 60, "lr_base": 0.008, "lr_warmup_epoch": 1.0,
                  "lr_sched": "cosine", "label_smoothing": 0.0, "isize": 224,
                  "stages": 0, "sched": False},
        "eval": {"batch_size": 128, "isize": 224},
    },
    "imagenetft": _finetune("imagenettfds"),
    "cifar10ft": _finetune("cifar10"),
    "cifar100ft": _finetune("cifar100"),
    "flowersft": _finetune("flowers"),
    "tfflowersft": _finetune("tfflowers"),
    "carsft": _finetune("cars"),
    # The seed Fashion-MNIST write-up's FashionMNISTFt: the original's cifar10Ft recipe on
    # Fashion-MNIST (fine-tuning from train.ft_init_ckpt; docs/results.md measures it).
    "fashion_mnistft": _finetune("fashion_mnist"),
    # Training from scratch on 28x28 grayscale (upsampled): 4 progressive stages from 32 to
    # 64 px, augmentation magnitude 5 -> 10, dropout 0.1 -> 0.2, a short EMA horizon for ~7k
    # steps. The recipe (augname, normalisation) is the model's, as on ImageNet.
    "fashion_mnist": {
        "data": {"ds_name": "fashion_mnist", "ram": 10, "mixup_alpha": 0.0, "cutmix_alpha": 0.0,
                 "ibase": 32, "min_crop_area": 0.8, "aug_consts_size": 224},
        "model": {"dropout_rate": 0.2, "survival_prob": 0.8},
        "train": {"epochs": 30, "batch_size": 256, "isize": 64, "stages": 4, "sched": True,
                  "optimizer": "rmsprop", "lr_sched": "cosine", "lr_base": 0.016,
                  "lr_warmup_epoch": 2.0, "ema_decay": 0.999, "weight_decay": 1e-5,
                  "weight_decay_inc": 1.0, "label_smoothing": 0.1, "dropout_base": 0.1},
        "eval": {"batch_size": 256, "isize": 64},
    },
    "mnist": {
        "data": {"ds_name": "mnist", "augname": "none", "ibase": 32, "min_crop_area": 0.5},
        "train": {"epochs": 10, "batch_size": 256, "isize": 32, "stages": 0, "sched": False,
                  "lr_sched": "cosine", "lr_warmup_epoch": 1.0, "ema_decay": 0.999},
        "eval": {"batch_size": 256, "isize": 32},
    },
    # Random images made in memory: benchmarks and smoke runs without any files.
    "synthetic": {
        "data": {"ds_name": "synthetic", "augname": "none", "ibase": 32},
        "train": {"epochs": 1, "batch_size": 64, "isize": 64, "stages": 0, "sched": False},
        "eval": {"batch_size": 64, "isize": 64},
    },
    # With train.ft_init_ckpt set, `imagefolder` becomes `imagefolderft` (resolve_dataset_cfg).
    "imagefolder": _IMAGEFOLDER,
    # The same folders fine-tuned from initial weights (train.ft_init_ckpt): the same recipe,
    # the network of the initial weights (hparams.adopt_initial_network) and their input
    # normalisation. The original's fine-tuning recipe (RMSprop at a constant 0.0005 per 256
    # images, flip and cutout) fine-tuned a Fashion-MNIST network on 300 letter images to
    # 8.2% where this recipe reached 38.0%, and the same network from scratch 33.4%
    # (docs/results.md); the tfds *ft configs keep the original's.
    "imagefolderft": copy.deepcopy(_IMAGEFOLDER),
}


def resolve_dataset_cfg(name: str, ft_init_ckpt: str | None) -> str:
    """`imagefolder` with initial weights means the fine-tuning recipe, `imagefolderft`."""
    return "imagefolderft" if name.lower() == "imagefolder" and ft_init_ckpt else name


def _spelling(name: str) -> str:
    return name.lower().replace("_", "")


def dataset_config(name: str) -> dict:
    """The overrides of a dataset config name, case and underscores aside (the original's
    `Cifar10Ft`, the seeds' `FashionMNISTFt`)."""
    by_spelling = {_spelling(key): key for key in DATASET_CONFIGS}
    if _spelling(name) not in by_spelling:
        raise UserError(f"unknown dataset config {name!r}; valid: {', '.join(DATASET_CONFIGS)}")
    return copy.deepcopy(DATASET_CONFIGS[by_spelling[_spelling(name)]])
