"""Parameter and FLOPs table of models beside the original's counts and the paper's figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np

from efficientnetv2.families import ARCHITECTURES
from efficientnetv2.flops import count_multiply_adds
from efficientnetv2.reference import ORIGINAL_PARAMS, PUBLISHED


@dataclasses.dataclass
class ModelSummary:
    """Figures of one model: counted here, and the references beside them."""

    name: str
    image_size: int
    total_params: int
    trainable_params: int
    multiply_adds: int

    @property
    def original_params(self) -> tuple[int, int] | None:
        return ORIGINAL_PARAMS.get(self.name)

    @property
    def matches_original(self) -> bool | None:
        if self.original_params is None:
            return None
        return self.original_params == (self.total_params, self.trainable_params)


def count_trainable(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def summarize(name: str, build: Callable[[], keras.Model], image_size: int | None = None
              ) -> ModelSummary:
    """Builds the model, counts its parameters and multiply-adds, then frees it."""
    model = build()
    native = ARCHITECTURES[name].image_size if name in ARCHITECTURES else 224
    size = image_size or native
    summary = ModelSummary(name, size, model.count_params(), count_trainable(model),
                           count_multiply_adds(model, size))
    keras.backend.clear_session(free_memory=True)
    return summary


def _check(summary: ModelSummary) -> str:
    return {True: "yes", False: "NO", None: "-"}[summary.matches_original]


def format_table(summaries: list[ModelSummary]) -> str:
    """A markdown table; FLOPs are multiply-adds, as in the paper."""
    header = ("| model | image | params (total) | params (trainable) | = original | "
              "multiply-adds (B) | paper params (M) | paper multiply-adds (B) |")
    lines = [header, "|" + "---|" * 8]
    for s in summaries:
        paper = PUBLISHED.get(s.name)
        paper_params, paper_flops = (f"{paper[0]}", f"{paper[1]}") if paper else ("-", "-")
        lines.append(f"| {s.name} | {s.image_size} | {s.total_params:,} | "
                     f"{s.trainable_params:,} | {_check(s)} | {s.multiply_adds / 1e9:.3f} | "
                     f"{paper_params} | {paper_flops} |")
    return "\n".join(lines)
