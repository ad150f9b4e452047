"""Benchmark: the test-time views of trained runs, compared on their evaluation split.

    .venv/bin/python experiments/test_time_views.py runs/r13 runs/r14 [--batch 500]

For each run (folder or checkpoint; its EMA weights and saved config): top-1 on the eval split
for each set of views that `eval.flip_average`, `eval.shift_average=1` and
`eval.shift_diagonal` give, from one pass of all 18 views, then the mean over the runs. The
README's table of test-time views is this script's output.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from efficientnetv2.datasets import DataInput  # noqa: E402
from efficientnetv2.datasets.preprocessing import eval_views  # noqa: E402
from efficientnetv2.inference import TestTimeViews  # noqa: E402
from efficientnetv2.run_folder import restore_model  # noqa: E402

VIEW_SETS = {
    "the image alone (1)": TestTimeViews(),
    "mirrored (2)": TestTimeViews(flip=True),
    "moved 1px each way (5)": TestTimeViews(shift=1),
    "moved 1px each way, mirrored (10)": TestTimeViews(flip=True, shift=1),
    "moved 1px each way and diagonally (9)": TestTimeViews(shift=1, diagonal=True),
    "moved 1px each way and diagonally, mirrored (18)": TestTimeViews(flip=True, shift=1,
                                                                      diagonal=True),
}
ALL = TestTimeViews(flip=True, shift=1, diagonal=True)


def positions(views: TestTimeViews) -> list[int]:
    """Where `views`' views are among ALL.images()' (the image, its moves, then mirrored)."""
    unflipped = [0] + [1 + ALL.moves().index(move) for move in views.moves()]
    return unflipped + ([i + 1 + len(ALL.moves()) for i in unflipped] if views.flip else [])


def view_logits(model, dataset: tf.data.Dataset, fill) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, 18, classes] of ALL's views (black border `fill`) and labels [N]."""
    views = dataclasses.replace(ALL, fill=fill)

    @tf.function
    def batch_logits(images):
        return tf.stack([model(view, training=False) for view in views.images(images)], 1)
    logits, labels = [], []
    for images, targets in dataset:
        logits.append(batch_logits(images).numpy())
        labels.append(np.argmax(targets.numpy(), -1))
    return np.concatenate(logits), np.concatenate(labels)


def top1_by_view_set(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1 (%) of the mean logits of each view set."""
    return {name: 100 * float(np.mean(
        np.argmax(logits[:, positions(views)].mean(1), -1) == labels))
        for name, views in VIEW_SETS.items()}


def run_top1(path: str, batch: int) -> dict[str, float]:
    restored = restore_model(path)
    config = restored.config
    data = DataInput(config.data, config.eval.split, False)
    dataset = data.dataset(batch, config.eval.isize)
    return top1_by_view_set(*view_logits(restored.model, dataset, eval_views(config).fill))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders or checkpoints")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    table = {path: run_top1(path, args.batch) for path in args.runs}
    print("| views | " + " | ".join(table) + " | mean |")
    print("| --- " * (len(table) + 2) + "|")
    for name in VIEW_SETS:
        figures = [table[path][name] for path in table]
        print(f"| {name} | " + " | ".join(f"{f:.2f}" for f in figures)
              + f" | {np.mean(figures):.2f} |")


if __name__ == "__main__":
    main()
