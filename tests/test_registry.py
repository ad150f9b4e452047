"""Every registry entry builds its pipeline on mock data through the real code path."""

import io

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import data_config
from PIL import Image

from efficientnetv2 import UserError
from efficientnetv2.datasets import REGISTRY, DataInput

TFDS_ENTRIES = [name for name, spec in REGISTRY.items() if spec.tfds_name and name != "fashion_mnist"]


@pytest.mark.parametrize("name", TFDS_ENTRIES)
def test_tfds_entries_on_mock_data(name):
    config = data_config("imagenet", f"data.ds_name={name},data.augname=none")  # no RA tracing
    with tfds.testing.mock_data(num_examples=8):
        for split, training in (("train", True), ("eval", False)):
            data = DataInput(config.data, split, training)
            images, labels = next(iter(data.dataset(4, 24)))
            assert images.shape == (4, 24, 24, 3) and images.dtype == tf.float32
            assert labels.shape == (4, REGISTRY[name].num_classes)
            assert len(data.class_names) == REGISTRY[name].num_classes


def _jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (20, 30, 3), np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _feature(value):
    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(value)))


def test_imagenet_tfrecords(tmp_path):
    for prefix in ("train", "val"):
        with tf.io.TFRecordWriter(str(tmp_path / f"{prefix}-00000-of-00001")) as writer:
            for i in range(3):
                example = {"image/encoded": _feature(_jpeg(i)), "image/class/label": _feature([i + 1])}
                writer.write(tf.train.Example(features=tf.train.Features(feature=example)).SerializeToString())
    config = data_config("imagenet")
    data = DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    images, labels = next(iter(data.dataset(3, 32)))
    assert images.shape == (3, 32, 32, 3)
    assert list(labels.numpy().argmax(1)) == [0, 1, 2]  # 1-based labels made 0-based
    assert DataInput(config.data, "trainval", True, data_dir=str(tmp_path)).num_classes == 1000
    two = data_config("imagenet", "data.splits.eval.num_images=2")  # the original's split size
    evaluation = DataInput(two.data, "eval", False, data_dir=str(tmp_path))
    assert evaluation.num_examples == 2 and len(list(evaluation.source.dataset)) == 2
    # no data_dir: the original's null input (its smoke test), said in the origin
    assert DataInput(config.data, "eval", False).source.origin.startswith("null input [eval]")


def test_imagenet21k_multilabel_tfrecords(tmp_path):
    with tf.io.TFRecordWriter(str(tmp_path / "imagenet21k-00000")) as writer:
        example = {"image": _feature(_jpeg(0)), "labels": _feature([3, 7])}
        writer.write(tf.train.Example(features=tf.train.Features(feature=example)).SerializeToString())
    config = data_config("imagenet21k")
    config.data.data_dir = str(tmp_path)
    data = DataInput(config.data, "eval", False)
    _, labels = next(iter(data.dataset(1, 32)))
    assert labels.shape == (1, 21843)
    assert set(np.flatnonzero(labels.numpy()[0])) == {3, 7}


def test_unknown_dataset_and_split():
    with pytest.raises(UserError, match="unknown dataset 'fashion'; valid: imagenet"):
        DataInput(data_config("imagenet", "data.ds_name=fashion").data, "train", True)
    with pytest.raises(UserError, match="has no split 'dev'"):
        DataInput(data_config().data, "dev", True)


def test_offline_tfds_fails_fast_with_the_places_tried(tmp_path, monkeypatch):
    from efficientnetv2.datasets import sources

    monkeypatch.setattr(sources, "_online", lambda: False)
    with pytest.raises(UserError, match=r"tried: IDX files .* in .*; tfds 'mnist'.*offline"):
        DataInput(data_config("mnist").data, "train", True, data_dir=str(tmp_path))
