"""What one GPU would take: a projection from EfficientNetV2-S's training rates measured on an
NVIDIA H200 (docs/gpu.md), for the run-time estimate a CPU run prints."""

from __future__ import annotations

import numpy as np

# EfficientNetV2-S training on one NVIDIA H200 (bf16, batch 128, data on the GPU, XLA),
# measured 2026-12-04: image size -> images/s. docs/gpu.md.
H200_V2S_RATES = {128: 4080.0, 300: 2460.0}
V2S_MULTIPLY_ADDS_300 = 5.37e9  # its 8.8e9 at 384 px, scaled by the pixels


def h200_v2s_images_per_sec(image_size: int) -> float:
    """V2-S's measured H200 training rate at `image_size`: log-linear between the two
    measured sizes, flat outside them."""
    (small, fast), (large, slow) = sorted(H200_V2S_RATES.items())
    size = min(max(image_size, small), large)
    return fast * (slow / fast) ** (np.log(size / small) / np.log(large / small))


def gpu_images_per_sec(image_size: int, multiply_adds: float) -> float:
    """A projection of one H200's training rate for a model of `multiply_adds` per image at
    `image_size`: V2-S's rate at that size, scaled by V2-S's multiply-adds over the model's."""
    v2s = V2S_MULTIPLY_ADDS_300 * (image_size / 300) ** 2
    return h200_v2s_images_per_sec(image_size) * v2s / max(multiply_adds, 1.0)
