"""Benchmark: the naive peer of `make demo`, a plain keras `model.fit` on Fashion-MNIST.

    .venv/bin/python experiments/peer_fit.py [--epochs 5] [--size 32] [--batch 128]
        [--lr 0.002] [--data_dir /usr/share/datasets/fashion-mnist]

keras.applications' EfficientNetV2 builder with the B0 blocks at width 0.5 and depth 0.5 (no
weights), AdamW with warmup and cosine decay, random flip and pad-and-crop, trained by
`model.fit` on the 60,000 training images resized to `--size`, then evaluated on the 10,000
test images. Prints the test top-1 and the wall time: the figure `make demo` is compared with.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras.src.applications.efficientnet_v2 import DEFAULT_BLOCKS_ARGS, EfficientNetV2  # noqa: E402

from efficientnetv2.datasets.idx import load_idx  # noqa: E402
from efficientnetv2.datasets.preprocessing import normalize  # noqa: E402

CLASSES = 10


def dataset(images, labels, size: int, batch: int, train: bool) -> tf.data.Dataset:
    """Images scaled to [-1, 1] at `size` px, 3 channels; flip and pad-and-crop when training."""

    def prepare(image, label):
        image = tf.image.grayscale_to_rgb(tf.image.resize(tf.cast(image, tf.float32), (size, size)))
        if train:  # padding with black, the images' background
            image = tf.image.random_flip_left_right(image)
            image = tf.image.random_crop(
                tf.image.resize_with_crop_or_pad(image, size + size // 8, size + size // 8),
                (size, size, 3))
        return normalize(image, "scale_255"), label

    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if train:
        data = data.shuffle(len(images), seed=0)
    return data.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--size", type=int, default=32, help="image size (px)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    parser.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    start = time.perf_counter()
    train = dataset(*load_idx(args.data_dir, "train", CLASSES), args.size, args.batch, True)
    test = dataset(*load_idx(args.data_dir, "test", CLASSES), args.size, 256, False)
    model = EfficientNetV2(0.5, 0.5, args.size, blocks_args=DEFAULT_BLOCKS_ARGS["efficientnetv2-b0"],
                           name="peer", weights=None, classes=CLASSES,
                           input_shape=(args.size, args.size, 3), include_preprocessing=False)
    steps = args.epochs * len(train)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps - len(train) // 2, warmup_target=args.lr, warmup_steps=len(train) // 2)
    model.compile(keras.optimizers.AdamW(schedule, weight_decay=0.05),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"peer: {model.count_params():,} params, {args.epochs} epochs at {args.size} px, "
          f"batch {args.batch}", flush=True)
    model.fit(train, epochs=args.epochs, verbose=2, shuffle=False)  # the dataset shuffles
    _, accuracy = model.evaluate(test, verbose=0)
    print(f"peer model.fit: test top-1 {accuracy:.4f}, {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
