"""Benchmark: how long a resumed run waits for its first training batch, by position.

    .venv/bin/python experiments/resume_cost.py [--images 300000] [--files 64] [--epochs 100]

Writes synthetic ImageNet-format TFRecord files (small JPEGs) once, then times the training
pipeline from its construction to the first batch when resuming at step 0, half-way through
the first epoch, after one epoch and after `--epochs` epochs; and the former positioning (one
reshuffled stream, `skip` over every example since the start) at the same positions up to one
epoch. Target: the late resume costs at most 1.5x the early one.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from efficientnetv2 import hparams  # noqa: E402
from efficientnetv2.datasets import DataInput  # noqa: E402

BATCH = 256


def write_records(folder: str, images: int, files: int) -> None:
    """`images` 16x16 JPEGs with labels 1..1000 in `files` train-* TFRecord files."""
    rng = np.random.RandomState(0)
    encoded = []
    for _ in range(64):  # 64 distinct pictures, repeated: encoding is not what is measured
        buffer = io.BytesIO()
        Image.fromarray(rng.randint(0, 255, (16, 16, 3), np.uint8)).save(buffer, "JPEG")
        encoded.append(buffer.getvalue())
    per_file = -(-images // files)
    for f in range(files):
        with tf.io.TFRecordWriter(os.path.join(folder, f"train-{f:05d}-of-{files:05d}")) as writer:
            for i in range(f * per_file, min(images, (f + 1) * per_file)):
                feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                               value=[encoded[i % 64]])),
                           "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(
                               value=[i % 1000 + 1]))}
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                             .SerializeToString())


def first_batch_seconds(data: DataInput, skip: int, repeats: int = 3) -> float:
    """The median over `repeats` of the seconds from building the pipeline to its first batch."""
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        next(iter(data.dataset(BATCH, 32, skip=skip)))
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def former_seconds(data: DataInput, skip: int) -> float:
    """The former positioning: one reshuffled stream, read from the start up to `skip`."""
    began = time.perf_counter()
    stream = data.source.dataset.shuffle(data.config.shuffle_buffer, seed=0).repeat()
    next(iter(stream.skip(skip).batch(BATCH)))
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300_000)
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100, help="the late resume's position")
    parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(), "resume_cost"))
    args = parser.parse_args()
    os.makedirs(args.data_dir, exist_ok=True)
    if not tf.io.gfile.glob(os.path.join(args.data_dir, "train-*")):
        began = time.perf_counter()
        write_records(args.data_dir, args.images, args.files)
        print(f"wrote {args.images:,} images in {args.files} files to {args.data_dir} "
              f"({time.perf_counter() - began:.0f}s)")
    config = hparams.build_config("efficientnetv2-b0", "imagenet", hparam_str="data.augname=none")
    data = DataInput(config.data, "trainval", True, data_dir=args.data_dir)
    data.source = dataclasses.replace(data.source, num_examples=args.images)  # the files' count
    epoch = args.images // BATCH * BATCH  # examples in one epoch of whole batches
    positions = {"step 0": 0, "half an epoch": epoch // 2, "one epoch": args.images,
                 f"{args.epochs} epochs": args.epochs * args.images,
                 f"{args.epochs} epochs + half": args.epochs * args.images + epoch // 2}
    first_batch_seconds(data, 0, repeats=1)  # warm-up: the first pipeline pays for tracing
    rows = [(name, first_batch_seconds(data, skip)) for name, skip in positions.items()]
    former = {name: former_seconds(data, skip) for name, skip in list(positions.items())[:3]}
    print(f"\nfirst training batch after resuming ({args.images:,} images, batch {BATCH}):\n")
    print("| position | per-epoch order (s) | one stream, skip from the start (s) |")
    print("| --- | ---: | ---: |")
    for name, seconds in rows:
        old = f"{former[name]:.2f}" if name in former else "not run"
        print(f"| {name} | {seconds:.2f} | {old} |")
    seconds = dict(rows)
    print(f"\nresume after {args.epochs} epochs / at step 0: "
          f"{seconds[f'{args.epochs} epochs'] / seconds['step 0']:.2f}x (target <= 1.5x); "
          f"inside an epoch the wait is at most one epoch of reading")

if __name__ == "__main__":
    main()
