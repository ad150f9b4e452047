"""Where examples come from: tfds, IDX files (offline), TFRecord files, image folders.

Every source gives a `Source`: a tf.data.Dataset of (image, label) where the image is either
decoded uint8 [H, W, C] or encoded bytes, and the label an int64 class id (or a multi-hot
float vector for multi-label data).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from efficientnetv2.errors import UserError, first_line

from . import idx
from .imagefolder import scan_image_folder
from .registry import DatasetSpec, get_split


@dataclasses.dataclass
class Source:
    """A split's examples. Besides the in-order `dataset`, a source that allows it says how
    to reach any example directly (`table` and `read_item`: the examples' tensors, first axis
    the example) or any file (`files` and `read_files`), so that training can start an epoch
    in any order, and resume, without reading what came before."""

    dataset: tf.data.Dataset
    num_examples: int | None
    class_names: list[str]
    encoded: bool  # images are encoded bytes (decoded in the pipeline)
    origin: str  # where the data came from, for logs
    skipped: list[str] = dataclasses.field(default_factory=list)
    in_memory: bool = False  # already in memory: caching would only copy it
    multilabel: bool = False  # labels are multi-hot vectors (a folder's labels.csv)
    table: tuple | None = None
    read_item: Callable | None = None  # one element of `table` -> (image, label)
    files: list[str] | None = None
    read_files: Callable | None = None  # a string tensor of files -> dataset of records
    parse: Callable | None = None  # a record -> (image, label)

    def first(self, count: int) -> Source:
        """The source of the first `count` examples."""
        if self.table is not None:
            table = tuple(t[:count] for t in self.table)
            return dataclasses.replace(self, dataset=_table_dataset(table, self.read_item),
                                       num_examples=count, table=table)
        return dataclasses.replace(self, dataset=self.dataset.take(count), num_examples=count,
                                   files=None, read_files=None, parse=None)


def _table_dataset(table: tuple, read_item: Callable) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(table).map(read_item)


def _table_source(table: tuple, read_item: Callable, class_names: list[str], encoded: bool,
                  origin: str, **kwargs) -> Source:
    return Source(_table_dataset(table, read_item), int(table[0].shape[0]), class_names, encoded,
                  origin, table=table, read_item=read_item, **kwargs)


def _pair(image, label):
    return image, label


def _tfds_class_names(ds_info, num_classes: int) -> list[str]:
    try:
        return list(ds_info.features["label"].names)
    except (KeyError, AttributeError):
        return [str(i) for i in range(num_classes)]


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    """Whether a tfds download could reach the internet (a 3-second probe)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tfds(spec: DatasetSpec, split: str, data_dir: str | None, places: list[str] | None = None,
              try_gcs: bool = False) -> Source:
    """A tfds dataset: prepared under `data_dir` (or tfds' default), downloaded if missing;
    with `try_gcs` (data.try_gcs), read from Google's prepared copy when there."""
    import tensorflow_datasets as tfds

    info = get_split(spec, split)
    tfds_place = f"tfds {spec.tfds_name!r} in {data_dir or 'the default tfds data dir'}"
    tried = "; ".join((places or []) + [tfds_place])

    def load(download: bool):
        return tfds.load(spec.tfds_name, split=info.tfds_split, data_dir=data_dir, download=download,
                         as_supervised=True, with_info=True, shuffle_files=False, try_gcs=try_gcs)
    try:
        dataset, ds_info = load(download=False)
    except Exception:  # not prepared: download it, unless offline (tfds retries for minutes)
        if not _online():
            raise UserError(f"dataset {spec.name!r} split {split!r} not found (tried: {tried}) "
                            f"and this machine is offline; prepare it with tfds on a machine "
                            f"with internet and pass `data_dir` (see README.md, Data)") from None
        try:
            dataset, ds_info = load(download=True)
        except Exception as e:  # tfds raises many types for a missing or unreachable dataset.
            raise UserError(f"dataset {spec.name!r} split {split!r} not found (tried: {tried}); "
                            f"tfds said: {first_line(e)}. Prepare it with tfds or pass `data_dir` "
                            f"(see README.md, Data)") from None
    try:
        num = ds_info.splits[info.tfds_split].num_examples
    except (KeyError, ValueError):  # split metadata absent (e.g. mock data): the declared size
        num = info.num_images
    names = list(spec.class_names or _tfds_class_names(ds_info, spec.num_classes))
    return Source(dataset, num, names, False, f"tfds:{spec.tfds_name}[{info.tfds_split}]")


def load_idx(spec: DatasetSpec, split: str, data_dir: str | None) -> Source:
    """MNIST-format files from `data_dir`, else the Debian package's folder, else tfds."""
    file_split = get_split(spec, split).tfds_split  # 'train' or 'test'
    places = [d for d in (data_dir, spec.debian_dir) if d]
    missing = idx.missing_files(data_dir, file_split) if data_dir else []
    if missing:  # never mix a user's files with the Debian package's
        raise UserError(f"`data_dir` {data_dir} holds IDX files but not {', '.join(missing)}[.gz] "
                        f"of the {file_split} split; add them there, or leave `data_dir` unset "
                        f"to use {spec.debian_dir or 'tfds'}")
    for directory in places:
        if idx.has_idx_files(directory, file_split):
            images, labels = idx.load_idx(directory, file_split, spec.num_classes)
            return _table_source((tf.constant(images), tf.constant(labels)), _pair,
                                 list(spec.class_names), False, f"idx:{directory}/{file_split}",
                                 in_memory=True)
    tried = [f"IDX files ({'/'.join(idx.FILES[file_split])}[.gz]) in {d}"
             + (f" (apt-get install {spec.debian_package})" if d == spec.debian_dir else "")
             for d in places]
    return load_tfds(spec, split, data_dir, tried)


def _tfrecord_parser(spec: DatasetSpec):
    if spec.multiclass:
        features = {"image": tf.io.FixedLenFeature([], tf.string),
                    "labels": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)}

        def parse(record):
            parsed = tf.io.parse_single_example(record, features)
            multi_hot = tf.reduce_max(tf.one_hot(parsed["labels"], spec.num_classes), axis=0)
            return parsed["image"], multi_hot
    else:
        features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                    "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            parsed = tf.io.parse_single_example(record, features)
            # Labels are 1..1000 in these files; 0 was reserved for background.
            return parsed["image/encoded"], parsed["image/class/label"] - 1
    return parse


def load_tfrecord(spec: DatasetSpec, split: str, data_dir: str) -> Source:
    """ImageNet-style TFRecord files (see tensorflow/tpu's imagenet_to_gcs.py)."""
    info = get_split(spec, split)
    files = sorted(tf.io.gfile.glob(os.path.join(data_dir, info.files)))[slice(*info.file_slice)]
    if not files:
        raise UserError(f"no TFRecord files {info.files!r} (slice {info.file_slice}) in "
                        f"{data_dir} for {spec.name!r} split {split!r}")
    parse = _tfrecord_parser(spec)
    names = list(spec.class_names or [str(i) for i in range(spec.num_classes)])
    return Source(tf.data.TFRecordDataset(files).map(parse), info.num_images, names, True,
                  f"tfrecord:{data_dir}/{info.files}", files=files,
                  read_files=tf.data.TFRecordDataset, parse=parse)


def load_imagefolder(spec: DatasetSpec, split: str, data_dir: str | None,
                     val_fraction: float, seed: int) -> Source:
    """A user's folder of class sub-folders (see imagefolder.py)."""
    scan = scan_image_folder(data_dir, split, val_fraction, seed)
    if scan.multilabel:
        labels = np.zeros([len(scan.paths), len(scan.class_names)], np.float32)
        for row, indices in enumerate(scan.labels):
            labels[row, indices] = 1.0
    else:
        labels = np.asarray(scan.labels, np.int32)
    return _table_source((tf.constant(scan.paths, tf.string), tf.constant(labels)),
                         lambda path, label: (tf.io.read_file(path), label), scan.class_names,
                         True, f"imagefolder:{scan.root}", skipped=scan.skipped,
                         multilabel=scan.multilabel)


def load_synthetic(spec: DatasetSpec, split: str, seed: int, size: int = 64) -> Source:
    """Random uint8 images with labels cycling over the classes; the same for a seed."""
    count = get_split(spec, split).num_images
    images = tf.random.stateless_uniform([count, size, size, 3], [seed, len(split)], 0, 256, tf.int32)
    labels = tf.range(count, dtype=tf.int64) % spec.num_classes
    return _table_source((tf.cast(images, tf.uint8), labels), _pair, list(spec.class_names), False,
                         f"synthetic[{split}]", in_memory=True)


NULL_DATA_DIR = "null"


def load_null(spec: DatasetSpec, split: str, data_dir: str | None) -> Source:
    """The original's null input: the split's `num_images` black images, each labelled with
    no class (multi-label data: classes 2 and 3), for smoke tests without data."""
    count = get_split(spec, split).num_images or 1
    classes = spec.num_classes or 1
    black = tf.zeros([8, 8, 3], tf.uint8)
    if spec.multiclass:
        label = tf.constant(np.isin(np.arange(classes), [2, 3]).astype(np.float32))
    else:
        label = tf.constant(-1, tf.int64)  # one_hot(-1): all zeros
    names = list(spec.class_names or [str(i) for i in range(classes)])
    return _table_source((tf.range(count, dtype=tf.int64),), lambda _: (black, label), names,
                         False, f"null input [{split}]: black images without labels ("
                         + ("data_dir=null, the original's smoke-test input)" if data_dir else
                            "no data_dir was given: pass the folder of its files for real data)"),
                         in_memory=True)


def is_null(spec: DatasetSpec, data_dir: str | None) -> bool:
    """`data_dir`=null, or no data_dir for a dataset of TFRecord files: the null input."""
    return data_dir == NULL_DATA_DIR or (not data_dir and spec.source == "tfrecord")


def load_source(spec: DatasetSpec, split: str, data_dir: str | None, val_fraction: float = 0.1,
                seed: int = 0, try_gcs: bool = False) -> Source:
    """The examples of `split` of the registry entry `spec`."""
    if is_null(spec, data_dir):
        return load_null(spec, split, data_dir)
    if data_dir and not os.path.isdir(data_dir) and not data_dir.startswith("gs://"):
        what = "is not a folder" if os.path.exists(data_dir) else "does not exist"
        raise UserError(f"data_dir {data_dir!r} {what}; pass the folder holding the dataset's "
                        "files to `data_dir`")
    if spec.source == "tfds":
        return load_tfds(spec, split, data_dir, try_gcs=try_gcs)
    if spec.source == "idx":
        return load_idx(spec, split, data_dir)
    if spec.source == "tfrecord":
        return load_tfrecord(spec, split, data_dir)
    if spec.source == "synthetic":
        return load_synthetic(spec, split, seed)
    return load_imagefolder(spec, split, data_dir, val_fraction, seed)
