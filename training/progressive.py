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


@dataclasses.dataclass(frozen=True)
class StepPlan:
    """Where every training step belongs: epochs of `steps_per_epoch` steps, and stage k
    of S covering steps [k * total // S, (k + 1) * total // S)."""

    steps_per_epoch: int
    total_steps: int
    num_stages: int

    def stage_start(self, index: int) -> int:
        return self.total_steps * index // self.num_stages

    def stage_of(self, step: int) -> int:
        """The stage that trains step `step` (the last stage for step == total_steps)."""
        return next(k for k in range(self.num_stages) if step < self.stage_start(k + 1)) \
            if step < self.total_steps else self.num_stages - 1

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def next_boundary(self, step: int) -> int:
        """The first epoch end or stage end after `step`."""
        epoch_end = (self.epoch_of(step) + 1) * self.steps_per_epoch
        stage_end = self.stage_start(self.stage_of(step) + 1)
        return min(epoch_end, stage_end, self.total_steps)
