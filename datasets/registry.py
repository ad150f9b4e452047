"""The dataset registry: each name declares its source, classes, splits and preprocessing."""

from __future__ import annotations

import dataclasses
import os

from efficientnetv2.errors import UserError

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
DIGITS = tuple(str(i) for i in range(10))


def _imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the standard (sorted WordNet id) order: the first
    WordNet lemma of each synset (from timm's synset table, in tfds' label order)."""
    with open(os.path.join(os.path.dirname(__file__), "imagenet_labels.txt"), encoding="utf-8") as f:
        return tuple(f.read().splitlines())


IMAGENET_CLASSES = _imagenet_labels()


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: its size and where it comes from (a tfds split or TFRecord files)."""

    num_images: int | None
    tfds_split: str | None = None
    files: str | None = None  # glob of TFRecord files inside data_dir
    file_slice: tuple[int | None, int | None] = (None, None)  # of the sorted files


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What a registry name means.

    source: 'tfds' (tensorflow-datasets), 'idx' (MNIST-format files, offline, else tfds),
    'tfrecord' (ImageNet-style TFRecord files), 'imagefolder' (one folder per class) or
    'synthetic' (random 64x64 images made in memory: benchmarks, smoke runs).
    """

    name: str
    source: str
    num_classes: int | None
    splits: dict[str, Split]
    tfds_name: str | None = None
    class_names: tuple[str, ...] | None = None  # None: from tfds metadata or folders
    grayscale: bool = False
    multiclass: bool = False
    debian_dir: str | None = None  # where a Debian package puts the IDX files
    debian_package: str | None = None  # the package that installs them


def _tfds(name: str, tfds_name: str, num_classes: int, train: tuple, eval_: tuple,
          minival: tuple | None = None, **kwargs) -> DatasetSpec:
    splits = {"train": Split(train[1], train[0]), "eval": Split(eval_[1], eval_[0])}
    if minival:
        splits["minival"] = Split(minival[1], minival[0])
    return DatasetSpec(name, "tfds", num_classes, splits, tfds_name, **kwargs)


REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec("imagenet", "tfrecord", 1000, {
        "train": Split(1_256_144, files="train*", file_slice=(20, None)),
        "minival": Split(25_021, files="train*", file_slice=(0, 20)),
        "eval": Split(50_000, files="val*"),
        "trainval": Split(1_281_167, files="train*"),
    }, class_names=IMAGENET_CLASSES),
    DatasetSpec("imagenet21k", "tfrecord", 21843, {
        "train": Split(12_720_275, files="imagenet21k*", file_slice=(20, None)),
        "minival": Split(25_089, files="imagenet21k*", file_slice=(16, 20)),
        "eval": Split(100_357, files="imagenet21k*", file_slice=(0, 16)),
    }, multiclass=True),
    _tfds("imagenettfds", "imagenet2012", 1000, ("train[:98%]", 1_256_144),
          ("validation", 50_000), ("train[98%:]", 25_021), class_names=IMAGENET_CLASSES),
    _tfds("cifar10", "cifar10", 10, ("train", 50_000), ("test", 10_000), ("test", 10_000)),
    _tfds("cifar100", "cifar100", 100, ("train", 50_000), ("test", 10_000), ("test", 10_000)),
    _tfds("flowers", "oxford_flowers102", 102, ("train+validation", 2_040), ("test", 6_149),
          ("validation", 1_020)),
    _tfds("tfflowers", "tf_flowers", 5, ("train[:70%]", 2_569), ("train[70%:]", 1_101),
          ("train[70%:]", 1_101)),
    _tfds("cars", "cars196", 196, ("train", 8_144), ("test", 8_041), ("test", 8_041)),
    DatasetSpec("fashion_mnist", "idx", 10, {
        "train": Split(60_000, "train"), "eval": Split(10_000, "test"),
        "minival": Split(10_000, "test")},
        tfds_name="fashion_mnist", class_names=FASHION_MNIST_CLASSES, grayscale=True,
        debian_dir="/usr/share/datasets/fashion-mnist", debian_package="dataset-fashion-mnist"),
    DatasetSpec("mnist", "idx", 10, {
        "train": Split(60_000, "train"), "eval": Split(10_000, "test"),
        "minival": Split(10_000, "test")},
        tfds_name="mnist", class_names=DIGITS, grayscale=True),
    DatasetSpec("synthetic", "synthetic", 10, {
        "train": Split(2048), "eval": Split(512), "minival": Split(512)},
        class_names=tuple(f"class_{i}" for i in range(10))),
    DatasetSpec("imagefolder", "imagefolder", None, {
        "train": Split(None), "eval": Split(None), "minival": Split(None)}),
]}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of `name` (case-insensitive)."""
    key = (name or "").lower()
    if key not in REGISTRY:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def _file_slice(text: str, key: str) -> tuple[int | None, int | None]:
    """'20:', '[0:20]' or ':-10' -> (start, stop) of the sorted files."""
    start, sep, stop = text.strip().strip("[]").partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise UserError(f"{key}={text!r} is not a slice of the files like 20: or 0:20") from None


def configured_spec(data_config) -> DatasetSpec:
    """The registry entry of `data.ds_name` with the original's dataset keys where set:
    data.num_classes, data.multiclass, data.tfds_name and, per split, data.splits.<split>.
    {num_images, tfds_split, files, slice} (a tfds split gets the slice appended:
    'train' + '[:1000]'; TFRecord files are sliced: '20:')."""
    spec = get_spec(data_config.ds_name)
    changes = {key: data_config.get(key) for key in ("num_classes", "multiclass", "tfds_name")
               if data_config.get(key) is not None}
    splits = dict(spec.splits)
    for name, given in (data_config.get("splits") or {}).items():
        given = {key: value for key, value in given.items() if value is not None}
        if not given:
            continue
        split = splits.get(name, Split(None))
        tfds_split = given.get("tfds_split", split.tfds_split)
        file_slice = split.file_slice
        if "slice" in given and spec.source == "tfrecord":
            file_slice = _file_slice(given["slice"], f"data.splits.{name}.slice")
        elif "slice" in given:
            tfds_split = f"{tfds_split or name}{given['slice']}"
        splits[name] = Split(given.get("num_images", split.num_images), tfds_split,
                             given.get("files", split.files), file_slice)
    return dataclasses.replace(spec, splits=splits, **changes)


def get_split(spec: DatasetSpec, split: str) -> Split:
    if split not in spec.splits:
        raise UserError(f"dataset {spec.name!r} has no split {split!r}; "
                        f"valid: {', '.join(spec.splits)}")
    return spec.splits[split]
