"""What a run shows and leaves: a progress bar, TensorBoard summaries, a CSV log and a PNG
of the training curves with the progressive stages marked."""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
import tensorflow as tf

from efficientnetv2.files import atomic_write

LOG_FILE = "log.csv"


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed), loaded on first
    use: training and studies draw PNGs with it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
CONFUSION_MAX_CLASSES = 100  # evaluation counts a confusion matrix up to this many classes
PER_CLASS_SHOWN = 20  # the per-class line names every class up to this many, else the worst
MULTILABEL = ("global_ap", "precision_1", "recall_1", "precision_5", "recall_5")
FIELDS = ("kind", "step", "epoch", "stage", "image_size", "ram", "mixup", "cutmix", "dropout",
          "learning_rate", "weight_decay", "loss", "accuracy", "balanced_accuracy", "top5",
          "images_per_sec", "seconds") + MULTILABEL
AP_BUCKETS = 200  # sigmoid-score buckets of the multi-label global average precision
MULTILABEL_STATS = 3 + 2 * AP_BUCKETS


def multilabel_counts(labels, logits, mask):
    """One batch's multi-label counts, summed over the eval split by the caller: positive
    labels among the top 1 and top 5 logits, positive labels, and the sigmoid scores of the
    positive and of the negative labels in AP_BUCKETS buckets."""
    positive = tf.cast(labels > 0.5, tf.float32)
    k = min(5, int(logits.shape[-1]))
    hits = tf.gather(positive, tf.math.top_k(logits, k).indices, batch_dims=1) * mask[:, None]
    bucket = tf.cast(tf.minimum(tf.sigmoid(logits) * AP_BUCKETS, AP_BUCKETS - 1), tf.int32)
    bucket = tf.reshape(bucket, [-1])

    def histogram(weights):
        return tf.math.unsorted_segment_sum(tf.reshape(weights * mask[:, None], [-1]), bucket,
                                            AP_BUCKETS)
    return tf.concat([tf.stack([tf.reduce_sum(hits[:, :1]), tf.reduce_sum(hits),
                                tf.reduce_sum(positive * mask[:, None])]),
                      histogram(positive), histogram(1.0 - positive)], 0)


def multilabel_metrics(counts: np.ndarray, images: float, k5: int = 5) -> dict:
    """The original's multi-label metrics from `multilabel_counts` summed over `images`:
    global average precision over every (image, class) pair (precision at each of the
    AP_BUCKETS score thresholds, weighted by the recall it adds), and precision and recall at
    1 and 5 (micro-averaged: hits over k x images, hits over positive labels; `k5` is 5, or
    the classes when fewer)."""
    hits_1, hits_5, positives = counts[:3]
    positive_hist, negative_hist = counts[3:3 + AP_BUCKETS], counts[3 + AP_BUCKETS:]
    true = np.cumsum(positive_hist[::-1])  # scores at or above each threshold, high to low
    false = np.cumsum(negative_hist[::-1])
    precision = np.where(true + false > 0, true / np.maximum(true + false, 1e-12), 0.0)
    recall = true / max(positives, 1e-12)
    global_ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    return {"global_ap": global_ap,
            "precision_1": float(hits_1 / max(images, 1)),
            "recall_1": float(hits_1 / max(positives, 1e-12)),
            "precision_5": float(hits_5 / max(k5 * images, 1)),
            "recall_5": float(hits_5 / max(positives, 1e-12))}


class MetricsLog:
    """Rows of `log.csv` (train rows per loop, eval rows per evaluation), and the same
    values as TensorBoard scalars under `tensorboard/{train,eval}`. On resume the rows
    after the restored step (written before a kill) are dropped. `summaries`: the kinds
    written to TensorBoard (runtime.skip_host_call leaves out train)."""

    def __init__(self, directory: str, resume_step: int = 0, enabled: bool = True,
                 summaries: tuple[str, ...] = ("train", "eval")):
        self.path = os.path.join(directory, LOG_FILE)
        self.enabled = enabled
        self.writers = {}
        self.evaluated = set()  # (step, image size) of the eval rows
        if not enabled:
            return
        rows = [r for r in read_log(self.path) if int(r["step"]) <= resume_step] if resume_step else []
        self.evaluated = {(int(r["step"]), int(r["image_size"])) for r in rows if r["kind"] == "eval"}
        with atomic_write(self.path) as f:  # a kill now must not lose the rows kept
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.writers = {kind: tf.summary.create_file_writer(os.path.join(directory, "tensorboard", kind))
                        for kind in summaries}

    def write(self, kind: str, step: int, **values) -> None:
        if not self.enabled:
            return
        if kind == "eval":
            self.evaluated.add((step, values["image_size"]))
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, FIELDS).writerow({"kind": kind, "step": step, **values})
        if kind in self.writers:
            write_scalars(self.writers[kind], step, values)


def write_scalars(writer, step: int, values: dict) -> None:
    """`values` (but the wall seconds) as TensorBoard scalars at `step`."""
    with writer.as_default(step=step):
        for name, value in values.items():
            if name != "seconds" and value is not None:
                tf.summary.scalar(name, value)
    writer.flush()


def write_eval_summary(directory: str, name: str | None, result) -> str:
    """An evaluation of --mode=eval as TensorBoard scalars in `tensorboard/eval_<name>`
    (`tensorboard/eval` without a name, beside training's own evaluations), as the
    original's `eval_name`; returns the folder."""
    folder = os.path.join(directory, "tensorboard", f"eval_{name}" if name else "eval")
    writer = tf.summary.create_file_writer(folder)
    write_scalars(writer, result.step, {"accuracy": result.top1, "top5": result.top5,
                                        "balanced_accuracy": result.balanced_accuracy,
                                        "loss": result.loss, "image_size": result.image_size})
    writer.close()
    return folder


def read_log(path: str) -> list[dict]:
    """The rows of a log.csv; a last row that a kill cut short is left out."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if None not in row.values()]


class Progress:
    """One progress line per epoch: bar, step, loss, accuracy, learning rate, image size,
    images/s, the epoch's ETA and (given the run's steps left) the whole run's. Redrawn in
    place on a terminal; one line per update otherwise (logs)."""

    WIDTH = 24

    def __init__(self, enabled: bool = True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.epoch_steps = 0
        self.rate = None

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        self.epoch_steps = steps
        if self.enabled:
            self.stream.write(f"epoch {epoch + 1}/{epochs}\n")

    def update(self, done: int, seconds_per_step: float, loss: float, accuracy: float, lr: float,
               size: int, images_per_sec: float, run_steps_left: int = 0) -> None:
        if not self.enabled:
            return
        filled = int(self.WIDTH * done / max(self.epoch_steps, 1))
        eta = (self.epoch_steps - done) * seconds_per_step
        line = (f"[{'=' * filled}{'.' * (self.WIDTH - filled)}] {done}/{self.epoch_steps} "
                f"loss {loss:.4f} acc {accuracy:.4f} lr {lr:.3g} {size}px "
                f"{images_per_sec:,.0f} img/s ETA {duration(eta)}"
                + (f" (run {duration(run_steps_left * seconds_per_step)})"
                   if run_steps_left > self.epoch_steps - done else ""))
        end = "\n" if not self.tty or done >= self.epoch_steps else ""
        self.stream.write(("\r" + line + "\033[K" if self.tty else line) + end)
        self.stream.flush()


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def plot_curves(log_path: str, out_path: str, title: str) -> str:
    """Loss and accuracy against epochs (train and eval), stage starts marked with the
    stage's image size; written as a PNG."""
    rows = read_log(log_path)
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    plt = pyplot()
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "top-1 accuracy")):
        ax.plot([float(r["epoch"]) for r in train], [float(r[key]) for r in train],
                label=f"train {label}", color="tab:blue")
        if evals:
            ax.plot([float(r["epoch"]) for r in evals], [float(r[key]) for r in evals],
                    "o-", label=f"eval {label}", color="tab:orange")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    stage, start = None, 0.0
    for r in train:
        if r["stage"] != stage:
            stage = r["stage"]
            for ax in (loss_ax, acc_ax):
                ax.axvline(start, color="gray", linestyle="--", linewidth=0.8)
            acc_ax.text(start, 0.02, f" stage {int(stage) + 1}\n {r['image_size']}px", fontsize=8,
                        transform=acc_ax.get_xaxis_transform(), color="dimgray")
        start = float(r["epoch"])
    acc_ax.set_ylim(0, 1)
    loss_ax.legend()
    acc_ax.legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(out_path, "wb") as f:
        fig.savefig(f, dpi=110, format="png")
    plt.close(fig)
    return out_path


def per_class_counts(labels, logits, mask, classes: int):
    """[2, classes]: per true class (the labels' argmax), the correct top-1 predictions and
    the images, of a batch (`mask` 0 for padding)."""
    target = tf.argmax(labels, axis=1, output_type=tf.int32)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), target), tf.float32)
    return tf.stack([tf.math.unsorted_segment_sum(hits * mask, target, classes),
                     tf.math.unsorted_segment_sum(mask, target, classes)])


def balanced_accuracy(hits, images) -> float:
    """The mean per-class recall over the classes that have images: what top-1 would be if
    every class were as frequent (a rare class counts as much as a common one)."""
    present = np.asarray(images) > 0
    if not present.any():
        return 0.0
    return float(np.mean(np.asarray(hits)[present] / np.asarray(images)[present]))


def per_class_line(confusion, class_names: list[str]) -> str:
    """Per-class top-1 (recall) from a [true, predicted] confusion matrix, as one log line:
    every class, or the worst PER_CLASS_SHOWN of many."""
    totals = confusion.sum(axis=1)
    accuracy = [confusion[i, i] / total if total else float("nan") for i, total in enumerate(totals)]
    order = range(len(accuracy))
    label = "per-class top-1"
    if len(accuracy) > PER_CLASS_SHOWN:
        order = sorted(order, key=lambda i: accuracy[i])[:PER_CLASS_SHOWN]
        label = f"per-class top-1, the {PER_CLASS_SHOWN} worst"
    return f"{label}: " + ", ".join(f"{class_names[i]} {accuracy[i]:.3f} ({totals[i]})"
                                    for i in order)


def plot_confusion(confusion, class_names: list[str], out_path: str, title: str) -> str:
    """The confusion matrix as a PNG: rows true classes, columns predictions, each row in
    shares of its class (counts written in the cells for up to 20 classes)."""
    plt = pyplot()
    count = len(class_names)
    shares = confusion / confusion.sum(axis=1, keepdims=True).clip(min=1)
    side = min(16.0, 2.5 + 0.45 * count)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(count)
    ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_yticks(ticks, [class_names[i] for i in ticks], fontsize=7)
    if count <= PER_CLASS_SHOWN:
        for i in ticks:
            for j in ticks:
                if confusion[i, j]:
                    ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: top-1 {confusion.trace() / max(confusion.sum(), 1):.4f}", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path
