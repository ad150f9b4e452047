"""Reference figures no one here computed: the original code's parameter counts and the
paper's published ImageNet table. Tests and `--mode=summary` compare against them."""

# Parameter counts of the original automl code (1000 classes): (total, trainable).
ORIGINAL_PARAMS: dict[str, tuple[int, int]] = {
    "efficientnetv2-b0": (7_200_312, 7_139_704),
    "efficientnetv2-b1": (8_212_124, 8_141_052),
    "efficientnetv2-b2": (10_178_374, 10_096_086),
    "efficientnetv2-b3": (14_467_622, 14_358_406),
    "efficientnetv2-s": (21_612_360, 21_458_488),
    "efficientnetv2-m": (54_431_388, 54_139_356),
    "efficientnetv2-l": (119_027_848, 118_515_272),
    "efficientnetv2-xl": (208_896_832, 208_119_808),
    "efficientnet-b0": (5_330_564, 5_288_548),
    "efficientnet-b1": (7_856_232, 7_794_184),
    "efficientnet-b2": (9_177_562, 9_109_994),
    "efficientnet-b3": (12_314_268, 12_227_212),
    "efficientnet-b4": (19_466_816, 19_341_616),
    "efficientnet-b5": (30_562_520, 30_389_784),
    "efficientnet-b6": (43_265_136, 43_040_704),
    "efficientnet-b7": (66_658_680, 66_347_960),
}

# The paper's table (Tan & Le 2021): params (millions), multiply-adds (billions) at the
# eval size, ImageNet top-1 (%).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "efficientnetv2-s": (21.5, 8.4, 83.9),
    "efficientnetv2-m": (54.1, 24.7, 85.2),
    "efficientnetv2-l": (119.5, 56.3, 85.7),
    "efficientnetv2-b0": (7.1, 0.72, 78.7),
    "efficientnetv2-b1": (8.1, 1.2, 79.8),
    "efficientnetv2-b2": (10.1, 1.7, 80.5),
    "efficientnetv2-b3": (14.4, 3.0, 82.1),
}
