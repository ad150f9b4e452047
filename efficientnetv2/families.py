"""The EfficientNet families: each model is a list of block strings plus a few scaling numbers."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Architecture:
    """What a model name means: its blocks, scaling, dropout and native eval image size."""

    blocks: tuple[str, ...]
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    dropout_rate: float = 0.2
    image_size: int = 224
    # how its inputs are normalised (normalization.py): ImageNet mean/std for V1 and V2-B0..B3
    # (the legacy V1 recipe), (x - 128) / 128 for V2-S/M/L/XL, as the original trained them
    normalization: str = "imagenet"


V2_BASE_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_c1",
    "r2_k3_s2_e4_i16_o32_c1",
    "r2_k3_s2_e4_i32_o48_c1",
    "r3_k3_s2_e4_i48_o96_se0.25",
    "r5_k3_s1_e6_i96_o112_se0.25",
    "r8_k3_s2_e6_i112_o192_se0.25",
)
V2_S_BLOCKS = (
    "r2_k3_s1_e1_i24_o24_c1",
    "r4_k3_s2_e4_i24_o48_c1",
    "r4_k3_s2_e4_i48_o64_c1",
    "r6_k3_s2_e4_i64_o128_se0.25",
    "r9_k3_s1_e6_i128_o160_se0.25",
    "r15_k3_s2_e6_i160_o256_se0.25",
)
V2_M_BLOCKS = (
    "r3_k3_s1_e1_i24_o24_c1",
    "r5_k3_s2_e4_i24_o48_c1",
    "r5_k3_s2_e4_i48_o80_c1",
    "r7_k3_s2_e4_i80_o160_se0.25",
    "r14_k3_s1_e6_i160_o176_se0.25",
    "r18_k3_s2_e6_i176_o304_se0.25",
    "r5_k3_s1_e6_i304_o512_se0.25",
)
V2_L_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r7_k3_s2_e4_i32_o64_c1",
    "r7_k3_s2_e4_i64_o96_c1",
    "r10_k3_s2_e4_i96_o192_se0.25",
    "r19_k3_s1_e6_i192_o224_se0.25",
    "r25_k3_s2_e6_i224_o384_se0.25",
    "r7_k3_s1_e6_i384_o640_se0.25",
)
V2_XL_BLOCKS = (
    "r4_k3_s1_e1_i32_o32_c1",
    "r8_k3_s2_e4_i32_o64_c1",
    "r8_k3_s2_e4_i64_o96_c1",
    "r16_k3_s2_e4_i96_o192_se0.25",
    "r24_k3_s1_e6_i192_o256_se0.25",
    "r32_k3_s2_e6_i256_o512_se0.25",
    "r8_k3_s1_e6_i512_o640_se0.25",
)
V1_BLOCKS = (
    "r1_k3_s1_e1_i32_o16_se0.25",
    "r2_k3_s2_e6_i16_o24_se0.25",
    "r2_k5_s2_e6_i24_o40_se0.25",
    "r3_k3_s2_e6_i40_o80_se0.25",
    "r3_k5_s1_e6_i80_o112_se0.25",
    "r4_k5_s2_e6_i112_o192_se0.25",
    "r1_k3_s1_e6_i192_o320_se0.25",
)

ARCHITECTURES: dict[str, Architecture] = {
    "efficientnetv2-s": Architecture(V2_S_BLOCKS, 1.0, 1.0, 0.2, 384, "scale_128"),
    "efficientnetv2-m": Architecture(V2_M_BLOCKS, 1.0, 1.0, 0.3, 480, "scale_128"),
    "efficientnetv2-l": Architecture(V2_L_BLOCKS, 1.0, 1.0, 0.4, 480, "scale_128"),
    "efficientnetv2-xl": Architecture(V2_XL_BLOCKS, 1.0, 1.0, 0.4, 512, "scale_128"),
    "efficientnetv2-b0": Architecture(V2_BASE_BLOCKS, 1.0, 1.0, 0.2, 224),
    "efficientnetv2-b1": Architecture(V2_BASE_BLOCKS, 1.0, 1.1, 0.2, 240),
    "efficientnetv2-b2": Architecture(V2_BASE_BLOCKS, 1.1, 1.2, 0.3, 260),
    "efficientnetv2-b3": Architecture(V2_BASE_BLOCKS, 1.2, 1.4, 0.3, 300),
    "efficientnet-b0": Architecture(V1_BLOCKS, 1.0, 1.0, 0.2, 224),
    "efficientnet-b1": Architecture(V1_BLOCKS, 1.0, 1.1, 0.2, 240),
    "efficientnet-b2": Architecture(V1_BLOCKS, 1.1, 1.2, 0.3, 260),
    "efficientnet-b3": Architecture(V1_BLOCKS, 1.2, 1.4, 0.3, 300),
    "efficientnet-b4": Architecture(V1_BLOCKS, 1.4, 1.8, 0.4, 380),
    "efficientnet-b5": Architecture(V1_BLOCKS, 1.6, 2.2, 0.4, 456),
    "efficientnet-b6": Architecture(V1_BLOCKS, 1.8, 2.6, 0.5, 528),
    "efficientnet-b7": Architecture(V1_BLOCKS, 2.0, 3.1, 0.5, 600),
    "efficientnet-b8": Architecture(V1_BLOCKS, 2.2, 3.6, 0.5, 672),
    "efficientnet-l2": Architecture(V1_BLOCKS, 4.3, 5.3, 0.5, 800),
}


def model_names() -> list[str]:
    """Every model name `get_model` knows, V2 first."""
    return list(ARCHITECTURES)


CUSTOM = "custom"  # the model name of an architecture given as block strings


CUSTOM_NORMALIZATION = "scale_128"  # block-string models train with the default recipe


def model_normalization(model_name) -> str:
    """A model name's input normalisation; block strings (custom models): the default's."""
    if isinstance(model_name, str) and model_name in ARCHITECTURES:
        return ARCHITECTURES[model_name].normalization
    return CUSTOM_NORMALIZATION


def architecture(model_name: str) -> Architecture:
    """What a model name means; a UserError naming the valid names otherwise."""
    if model_name not in ARCHITECTURES:
        from efficientnetv2.errors import UserError

        raise UserError(f"unknown model name {model_name!r}; valid names: "
                        f"{', '.join(ARCHITECTURES)}, or {CUSTOM} with block strings "
                        "(model.blocks)")
    return ARCHITECTURES[model_name]
