"""Benchmark: Fashion-MNIST pipeline throughput against efficientnetv2-s's training rate.

    .venv/bin/python benchmarks/input_pipeline.py [--sizes 32 64 128]

For each image size: images/s the training pipeline delivers (RandAugment magnitude 10, the
real Fashion-MNIST files), images/s one training step of efficientnetv2-s consumes on this
machine (graph mode, no XLA, SGD), and their ratio. Target: the pipeline is never the
bottleneck (ratio >= 5).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import efficientnetv2  # noqa: E402
from efficientnetv2 import hparams  # noqa: E402
from efficientnetv2.datasets import Augmentation, DataInput  # noqa: E402
from efficientnetv2.datasets.inspect import throughput  # noqa: E402


def training_rate(image_size: int, batch_size: int, steps: int) -> float:
    """Images/s of forward + backward + SGD update of efficientnetv2-s (10 classes)."""
    model = efficientnetv2.get_model("efficientnetv2-s", num_classes=10)
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)
    images = tf.random.uniform([batch_size, image_size, image_size, 3], -1, 1)
    labels = tf.one_hot(tf.random.uniform([batch_size], 0, 10, tf.int32), 10)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                      model.trainable_variables))
        return loss

    step().numpy()  # trace and warm up
    start = time.perf_counter()
    for _ in range(steps):
        step().numpy()
    rate = batch_size * steps / (time.perf_counter() - start)
    keras.backend.clear_session()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    config = hparams.build_config("efficientnetv2-s", "fashion_mnist")
    data = DataInput(config.data, "train", True, data_dir=args.data_dir)
    print(f"source: {data.source.origin}; {os.cpu_count()} CPU cores")
    print("| image size | pipeline images/s (RandAugment 10) | efficientnetv2-s train images/s | ratio |")
    print("|---|---|---|---|")
    for size in args.sizes:
        pipeline = throughput(data.dataset(64, size, Augmentation("randaug", 2, 10.0)), args.batches)
        batch = max(8, 32 * 32 * 32 // (size * size))
        train = training_rate(size, batch, steps=3)
        print(f"| {size} | {pipeline:,.0f} | {train:,.1f} | {pipeline / train:,.0f}x |", flush=True)


if __name__ == "__main__":
    main()
