"""Benchmark: the training input pipeline's images/s per CPU core, at ImageNet scale.

    .venv/bin/python experiments/input_pipeline.py [--images 1200] [--batches 20]
        [--fashion_dir /usr/share/datasets/fashion-mnist] [--profile]

Writes ImageNet-format TFRecord files of realistic JPEGs (about 400x350 px, quality 90) to a
temporary folder, then measures the `imagenet` training pipeline (EfficientNetV2-S's recipe:
random-area crop, flip, RandAugment with 2 layers) at each progressive stage of V2-S
(128 px with magnitude 5 up to 300 px with magnitude 15), and the Fashion-MNIST pipeline at
the user's command's stage sizes. Per stage it prints images/s, images/s per core (this
machine's cores all work on it) and the cores that would feed the 2,460 images/s one H200
trains V2-S at (300 px; 4,080 at 128 px). `--profile` adds where the time goes at 300 px:
decoding, cropping and resizing, and each RandAugment op. Last line:
`per core at 300 px: N images/s`.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from efficientnetv2 import hparams  # noqa: E402
from efficientnetv2.datasets import Augmentation, DataInput, augment, preprocessing  # noqa: E402
from efficientnetv2.datasets.inspect import throughput  # noqa: E402
from efficientnetv2.training.progressive import all_stages  # noqa: E402
from efficientnetv2.training.reporting import h200_v2s_images_per_sec  # noqa: E402

FILES = 24  # train-00000-of-00024 ...: the `imagenet` train split reads files 20 and up


def _photo(rng: np.random.RandomState) -> bytes:
    """A JPEG of about 400x350 px with photo-like content: smooth colour fields, edges, noise."""
    width, height = rng.randint(360, 441), rng.randint(310, 391)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        fx, fy, phase = rng.uniform(0.005, 0.05, 2).tolist() + [rng.uniform(0, 6.3)]
        image[..., channel] = 128 + 90 * np.sin(fx * x + fy * y + phase)
    for _ in range(rng.randint(3, 8)):  # objects
        top, left = rng.randint(0, height - 40), rng.randint(0, width - 40)
        image[top:top + rng.randint(30, 150), left:left + rng.randint(30, 150)] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 12, image.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def write_records(folder: str, images: int) -> float:
    """`images` JPEGs spread over the train files the split reads; returns the mean JPEG KB."""
    rng = np.random.RandomState(0)
    per_file = max(1, images // 4)
    sizes = []
    for index in range(FILES):
        path = os.path.join(folder, f"train-{index:05d}-of-{FILES:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(per_file if index >= 20 else 1):
                encoded = _photo(rng)
                sizes.append(len(encoded))
                feature = {
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
                    "image/class/label": tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[int(rng.randint(1, 1001))])),
                }
                writer.write(tf.train.Example(
                    features=tf.train.Features(feature=feature)).SerializeToString())
    return float(np.mean(sizes)) / 1024


def _row(label: str, rate: float, cores: int, gpu_rate: float | None) -> str:
    per_core = rate / cores
    feed = f"{gpu_rate / per_core:,.1f}" if gpu_rate else "-"
    return f"| {label} | {rate:,.0f} | {per_core:,.0f} | {feed} |"


def profile(folder: str, batches: int) -> list[str]:
    """Images/s of each part of the 300 px training view, on the same decoded images."""
    records = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(os.path.join(folder, "train-*")))[20:])
    parse = lambda r: tf.io.parse_single_example(  # noqa: E731
        r, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"]
    encoded = records.map(parse).cache().repeat()
    seed = tf.constant([1, 2], tf.int64)
    decoded = encoded.map(lambda e: tf.io.decode_jpeg(e, channels=3)).take(64).cache().repeat()
    resized = decoded.map(lambda im: preprocessing.resize(im, 300)).take(64).cache().repeat()

    def rate(dataset, fn) -> float:  # one pixel of each result: outputs of any size batch
        mapped = dataset.map(lambda x: (fn(x)[0, 0], 0), num_parallel_calls=tf.data.AUTOTUNE)
        return throughput(mapped.batch(64), batches)

    recipe = preprocessing.recipe_for(hparams.build_config("efficientnetv2-s", "imagenet").data)
    parts = [("decode JPEG", encoded, lambda e: tf.io.decode_jpeg(e, channels=3)),
             ("decode, then random-area crop, resize (before)", encoded,
              lambda e: recipe.train_image(tf.io.decode_jpeg(e, channels=3), 300, seed)),
             ("decode inside the crop, resize (now)", encoded,
              lambda e: recipe.train_image(e, 300, seed, encoded=True)),
             ("random-area crop + resize to 300", decoded,
              lambda im: preprocessing.resize(preprocessing.random_crop(im, seed, 0.05), 300)),
             ("flip", resized, lambda im: preprocessing.random_flip(im, seed))]
    parts += [(f"RandAugment op {name} (magnitude 15)", resized,
               lambda im, n=name: augment.apply_op(n, im, 15.0, seed))
              for name in augment.RANDAUGMENT_OPS]
    return [f"| {label} | {rate(data, fn):,.0f} |" for label, data, fn in parts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--fashion_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    folder = tempfile.mkdtemp(prefix="imagenet_records_")
    kb = write_records(folder, args.images)
    print(f"{args.images} JPEGs of about 400x350 px ({kb:.0f} KB on average) in {folder}; "
          f"{cores} CPU cores")
    print("| pipeline | images/s | per core | cores to feed one H200 |")
    print("| --- | ---: | ---: | ---: |")
    config = hparams.build_config("efficientnetv2-s", "imagenet")
    data = DataInput(config.data, "train", True, data_dir=folder)
    per_core_300 = 0.0
    for stage in all_stages(config):
        aug = Augmentation("randaug", config.data.ra_num_layers, stage.ram)
        rate = throughput(data.dataset(64, stage.image_size, aug), args.batches)
        print(_row(f"imagenet, {stage.image_size} px, RandAugment 2 x {stage.ram:g}", rate, cores,
                   h200_v2s_images_per_sec(stage.image_size)), flush=True)
        if stage.image_size == 300:
            per_core_300 = rate / cores
    magnitude = 15.0  # V2-M's final stage, the reference
    rate = throughput(data.dataset(64, 300, Augmentation("randaug", 2, magnitude)), args.batches)
    print(_row(f"imagenet, 300 px, RandAugment 2 x {magnitude:g}", rate, cores, h200_v2s_images_per_sec(300)),
          flush=True)
    per_core_300 = min(per_core_300, rate / cores)
    if os.path.isdir(args.fashion_dir):
        fashion = hparams.build_config("efficientnetv2-s", "fashion_mnist")
        data = DataInput(fashion.data, "train", True, data_dir=args.fashion_dir)
        for stage in all_stages(fashion):
            aug = Augmentation(fashion.data.augname, fashion.data.ra_num_layers, stage.ram)
            rate = throughput(data.dataset(64, stage.image_size, aug), args.batches)
            print(_row(f"fashion_mnist, {stage.image_size} px, RandAugment 2 x {stage.ram:g}", rate,
                       cores, h200_v2s_images_per_sec(stage.image_size)), flush=True)
    if args.profile:
        print("\n| part of the 300 px training view | images/s |\n| --- | ---: |")
        print("\n".join(profile(folder, args.batches)))
    print(f"per core at 300 px: {per_core_300:,.0f} images/s")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:.0f} s)")
