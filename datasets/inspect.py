"""Look before training: a PNG grid of pipeline images and the pipeline's throughput."""

from __future__ import annotations

import math
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def write_grid(images: np.ndarray, labels: np.ndarray, class_names: list[str], path: str,
               title: str) -> str:
    """Images in [-1, 1] with their (possibly mixed) labels as titles, saved as a PNG."""
    count = len(images)
    cols = min(8, count)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, labels):
        ax.imshow(np.clip((image + 1.0) / 2.0, 0.0, 1.0))
        top = np.argsort(label)[::-1][:2]
        text = class_names[top[0]]
        if label[top[1]] > 0.01:  # a mixed label
            text = f"{label[top[0]]:.2f} {text}\n{label[top[1]]:.2f} {class_names[top[1]]}"
        ax.set_title(text, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def first_batch(dataset: tf.data.Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = next(iter(dataset))
    return images.numpy()[:count], labels.numpy()[:count]


def throughput(dataset: tf.data.Dataset, batches: int, warmup: int = 2) -> float:
    """Images per second the pipeline delivers after `warmup` batches."""
    iterator = iter(dataset)
    for _ in range(warmup):
        next(iterator)
    start, count = time.perf_counter(), 0
    for _ in range(batches):
        images, _ = next(iterator)
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)
