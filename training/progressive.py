"""Progressive learning: per-stage image size and regularization (the paper's rule).

For stage k of S (k from 0) the image size is `int(ibase + (isize - ibase) * (k + 1) / S)`;
RandAugment magnitude, mixup and cutmix alpha and dropout go linearly (numpy linspace over
the stages) from their start values (5, 0, 0, `train.dropout_base`) to the config's values.
`train.stages=0` trains at `train.isize` in one stage; `train.sched=false` keeps the
config's regularization in every stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np

RAM_START = 5.0


@dataclasses.dataclass(frozen=True)
class Stage:
    index: int
    image_size: int
    ram: float
    mixup_alpha: float
    cutmix_alpha: float
    dropout_rate: float


def num_stages(config) -> int:
    return max(1, int(config.train.stages or 0))


def stage_settings(config, index: int) -> Stage:
    """The settings of stage `index` of the config's progressive schedule."""
    stages = num_stages(config)
    if not 0 <= index < stages:
        raise ValueError(f"stage {index} out of range for {stages} stages")
    isize = int(config.train.isize)
    final = (float(config.data.ram), float(config.data.mixup_alpha),
             float(config.data.cutmix_alpha), float(config.model.dropout_rate))
    if config.train.stages:
        ibase = config.data.ibase or isize // 2
        size = int(ibase + (isize - ibase) * (index + 1) / stages)
    else:
        size = isize
    if config.train.stages and config.train.sched:
        starts = (RAM_START, 0.0, 0.0, float(config.train.dropout_base))
        values = [float(np.linspace(a, b, stages)[index]) for a, b in zip(starts, final)]
    else:
        values = list(final)
    return Stage(index, size, *values)


def all_stages(config) -> list[Stage]:
    return [stage_settings(config, k) for k in range(num_stages(config))]
