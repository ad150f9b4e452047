"""From-scratch defaults chosen from the user's own folder (`data.auto`, on in `imagefolder`).

What a careful engineer would choose by hand after looking at the folder: the image size
from the images' own sizes (capped on a machine without a GPU or TPU, where every pixel is
slow), the crop (a small shift for small images), a layout whose last feature map keeps at
least 2x2 pixels, the batch and the epochs from the number of images, and warm-up, EMA and
evaluation cadence from the steps that makes. Every choice is written into the config (and
so into the run's `config.yaml`); a key the user set (`--config_file`, flags,
`--hparam_str`) is never changed.
"""

from __future__ import annotations

import dataclasses
import math
import re

import ml_collections

from efficientnetv2.datasets.imagefolder import FolderStats
from efficientnetv2.families import ARCHITECTURES

# Images a run sees in all (epochs = this / training images), between MIN and MAX epochs:
# ~7 minutes of B0 at 32-64 px on 2 CPU cores, minutes on a GPU.
IMAGES_SEEN = 60_000
MIN_EPOCHS, MAX_EPOCHS = 10, 100
CPU_MAX_ISIZE = 64  # px: without a GPU/TPU, larger images cost more time than they give
MIN_ISIZE = 16
MIN_FEATURE_MAP = 2  # px: the last feature map's side, at least
MIN_BATCH, MAX_BATCH = 16, 128
SMALL_IMAGES = 64  # px: below, a shift of up to 1/8 of the image instead of a random-area crop
EVALUATIONS = 5  # --mode=traineval evaluates about this many times
# From random weights on a small folder, the model's first stages only, the last at stride 1
# (a last map of 1/8 of the image, as CIFAR networks keep): on 2,000 56 px glyphs in 12
# epochs B0's 21 blocks stayed at chance (5.8%) where its first four stages reached 65%, and
# 80% with the last one at stride 1 (docs/results.md).
SMALL_FOLDER = 20_000  # training images
COMPACT_STAGES = 4
# Runs that see fewer images than this get no dropout or stochastic depth: on the glyphs the
# model's 0.2 / 0.8 held the compact network at 56% where it reached 80% without them (and
# fine-tuned on 300 of them, survival 0.8 gave 36.6% where 1.0 gave 38.0%).
SHORT_RUN = 1_000_000  # images seen
# A folder whose largest class holds this many times the images of its smallest keeps the
# checkpoint of the best balanced accuracy. Class-weighted loss (train.class_weights) is not
# chosen: on two folders of 10x imbalance it lowered both top-1 and balanced accuracy
# (docs/results.md, imbalanced folders).
IMBALANCE = 3.0


@dataclasses.dataclass(frozen=True)
class Choice:
    key: str
    value: object
    why: str


def _power_of_two_at_most(value: float) -> int:
    return 2 ** max(0, int(math.floor(math.log2(max(value, 1)))))


def _feature_map(size: int, strides: list[int]) -> int:
    for stride in strides:
        size = math.ceil(size / stride)
    return size


def _strides(blocks: list[str]) -> list[int]:
    return [int(re.search(r"_s(\d)", block).group(1)) for block in blocks]


def image_size(stats: FolderStats, native: int, accelerator: bool) -> tuple[int, str]:
    """The training and evaluation size: the images' median shorter side, rounded to 4 px,
    between 16 px and the model's own size (or CPU_MAX_ISIZE without an accelerator)."""
    cap = native if accelerator else min(native, CPU_MAX_ISIZE)
    seen = stats.short_side or native
    size = max(MIN_ISIZE, min(cap, int(round(seen / 4)) * 4))
    why = f"the images' median shorter side is {seen}px"
    if seen > cap:
        why += (f"; capped at the model's own {native}px" if cap == native else
                f"; capped at {cap}px without a GPU/TPU (set eval.isize for more)")
    return size, why


def compact(blocks: list[str]) -> list[str]:
    """The first COMPACT_STAGES stages, the last of them at stride 1."""
    kept = list(blocks[:COMPACT_STAGES])
    kept[-1] = re.sub(r"_s2", "_s1", kept[-1], count=1)
    return kept


def layout(blocks: list[str], stem_stride: int, size: int, fixed: set[str]
           ) -> tuple[int, list[str] | None, str]:
    """(stem stride, blocks or None when unchanged, why): stride-2 steps become stride 1,
    the stem's first and then the stages' from the last, until the last feature map of a
    `size` px image is at least MIN_FEATURE_MAP px."""
    before = _feature_map(size, [stem_stride] + _strides(blocks))
    changed = list(blocks)
    if "model.stem_stride" not in fixed and before < MIN_FEATURE_MAP:
        stem_stride = 1
    if "model.blocks" not in fixed:
        for index in reversed(range(len(changed))):
            if _feature_map(size, [stem_stride] + _strides(changed)) >= MIN_FEATURE_MAP:
                break
            changed[index] = re.sub(r"_s2", "_s1", changed[index], count=1)
    after = _feature_map(size, [stem_stride] + _strides(changed))
    why = (f"last feature map {after}x{after}" if after == before else
           f"last feature map {after}x{after} instead of {before}x{before}")
    return stem_stride, (changed if changed != blocks else None), why


def plan(config: ml_collections.ConfigDict, stats: FolderStats, fixed: set[str],
         accelerator: bool) -> list[Choice]:
    """The choices for the keys in neither `fixed` nor already chosen; not yet applied."""
    arch = ARCHITECTURES.get(config.model.model_name)
    native = arch.image_size if arch else 224
    blocks = list(config.model.blocks or (arch.blocks if arch else []))
    choices = []
    size, why = image_size(stats, native, accelerator)
    if "eval.isize" not in fixed:
        choices.append(Choice("eval.isize", size, why))
    else:
        size = config.eval.isize
    if "train.isize" not in fixed:
        choices.append(Choice("train.isize", size, "the eval size"))
    if size < SMALL_IMAGES and not fixed & {"data.pad_crop", "data.min_crop_area"}:
        choices.append(Choice("data.pad_crop", max(1, round(size / 8)),
                              f"a shift of up to 1/8 of images under {SMALL_IMAGES}px, "
                              "as for CIFAR, instead of a random-area crop"))
    images = max(stats.train_images, 1)
    from_scratch = not config.train.ft_init_ckpt
    compacted = (from_scratch and images < SMALL_FOLDER and "model.blocks" not in fixed
                 and len(blocks) > COMPACT_STAGES)
    if compacted:
        blocks = compact(blocks)
    stem, new_blocks, why = layout(blocks, config.model.stem_stride, size, fixed)
    if stem != config.model.stem_stride:
        choices.append(Choice("model.stem_stride", stem, why))
    if compacted:
        why = (f"the first {COMPACT_STAGES} stages, the last at stride 1: from random weights "
               f"on under {SMALL_FOLDER:,} images deeper stages do not learn in a short run; {why}")
    if new_blocks or compacted:
        choices.append(Choice("model.blocks", new_blocks or blocks, why))
    batch = config.train.batch_size
    if "train.batch_size" not in fixed:
        batch = min(MAX_BATCH, max(MIN_BATCH, _power_of_two_at_most(images / 16)),
                    _power_of_two_at_most(images))
        choices.append(Choice("train.batch_size", batch, f"{images:,} training images"))
        if "eval.batch_size" not in fixed:
            choices.append(Choice("eval.batch_size", max(batch, 64), "the training batch"))
    epochs = config.train.epochs
    if "train.epochs" not in fixed:
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(IMAGES_SEEN / images)))
        choices.append(Choice("train.epochs", epochs,
                              f"{epochs * images:,} images seen ({MIN_EPOCHS}-{MAX_EPOCHS} epochs)"))
    steps = max(1, max(1, images // batch) * epochs)
    if epochs * images < SHORT_RUN:
        for key, value in (("model.dropout_rate", 0.0), ("model.survival_prob", 1.0)):
            if key not in fixed:
                choices.append(Choice(key, value, f"a short run ({epochs * images:,} images seen) "
                                      "learns more without it"))
    if "train.lr_warmup_epoch" not in fixed:
        choices.append(Choice("train.lr_warmup_epoch", round(max(0.5, epochs / 20), 1),
                              "5% of the epochs"))
    if "train.ema_decay" not in fixed:
        decay = min(0.9998, max(0.99, 1 - 10 / steps))
        choices.append(Choice("train.ema_decay", round(decay, 4),
                              f"averages about the last 10% of {steps:,} steps"))
    counts = [count for count in stats.class_counts if count > 0]
    if len(counts) > 1 and max(counts) >= IMBALANCE * min(counts) and "eval.best_metric" not in fixed:
        choices.append(Choice("eval.best_metric", "balanced_accuracy",
                              f"the largest class holds {max(counts) / min(counts):.1f}x the "
                              "smallest's images"))
    if "eval.every_epochs" not in fixed:
        choices.append(Choice("eval.every_epochs", max(1, round(epochs / EVALUATIONS)),
                              f"about {EVALUATIONS} evaluations"))
    return choices


def describe(stats: FolderStats, choices: list[Choice]) -> str:
    """The start-of-run line: what the folder holds, what was chosen and why."""
    said = "; ".join(f"{c.key}={_short(c.value)} ({c.why})" for c in choices)
    return (f"data.auto: {stats.train_images:,} training images in {stats.num_classes} classes, "
            f"median shorter side {stats.short_side}px; chose {said or 'nothing (all set)'}")


def _short(value: object) -> str:
    if isinstance(value, list):
        return "|".join(value)
    return f"{value:g}" if isinstance(value, float) else str(value)
