"""Per-model configs: the architecture's scaling plus the training recipe of the original."""

from __future__ import annotations

from efficientnetv2.families import CUSTOM, architecture

V1_AUGNAME = "effnetv1_autoaug"  # the original's legacy EfficientNet-V1 preprocessing
V1_TRAIN_FRACTION = 0.8  # V1 models train at 0.8 of the eval size (then // 16 * 16)
# V2 training recipes: (train size, RandAugment magnitude, mixup/cutmix alpha, augmentation).
V2_RECIPES = {
    "efficientnetv2-s": (300, 10, 0.0, "randaug"),
    "efficientnetv2-m": (384, 15, 0.2, "randaug"),
    "efficientnetv2-l": (384, 20, 0.5, "randaug"),
    "efficientnetv2-xl": (384, 20, 0.5, "randaug"),
    # b0-b3 use the V1 scaling and preprocessing for a fair comparison with EfficientNet.
    "efficientnetv2-b0": (192, 0, 0.0, V1_AUGNAME),
    "efficientnetv2-b1": (192, 0, 0.0, V1_AUGNAME),
    "efficientnetv2-b2": (208, 0, 0.0, V1_AUGNAME),
    "efficientnetv2-b3": (240, 0, 0.0, V1_AUGNAME),
}


def model_config(model_name: str) -> dict:
    """Overrides of the base config for a model name (or 'custom' for `model.blocks`)."""
    if model_name == CUSTOM:
        return {"model": {"model_name": CUSTOM}, "train": {"isize": 224}, "eval": {"isize": 224}}
    arch = architecture(model_name)
    config = {
        "model": {
            "model_name": model_name,
            "width_coefficient": arch.width_coefficient,
            "depth_coefficient": arch.depth_coefficient,
            "dropout_rate": arch.dropout_rate,
        },
        "eval": {"isize": arch.image_size},
    }
    if model_name in V2_RECIPES:
        train_size, magnitude, mix, augname = V2_RECIPES[model_name]
        config["train"] = {"isize": train_size, "stages": 4, "sched": True}
        config["data"] = {"augname": augname, "ram": magnitude,
                          "mixup_alpha": mix, "cutmix_alpha": mix}
    else:
        config["train"] = {"isize": V1_TRAIN_FRACTION}
        config["data"] = {"augname": V1_AUGNAME}
    return config
