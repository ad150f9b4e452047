import gzip
import os

import numpy as np
import pytest
from conftest import data_config, write_idx

from efficientnetv2 import UserError
from efficientnetv2.datasets import DataInput
from efficientnetv2.datasets.registry import FASHION_MNIST_CLASSES

DEBIAN = "/usr/share/datasets/fashion-mnist"


def test_generated_idx_files_through_the_real_parser(idx_dir):
    config = data_config(hparam_str="data.augname=randaug")  # (x - 128) / 128
    data = DataInput(config.data, "eval", False, data_dir=str(idx_dir))
    assert data.num_examples == 20 and data.class_names == list(FASHION_MNIST_CLASSES)
    images, labels = next(iter(data.dataset(20, 28)))  # 28 -> 28: no resampling
    raw = np.random.RandomState(0)
    raw.randint(0, 256, (40, 28, 28))  # the train images come first
    expected = raw.randint(0, 256, (20, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(images.numpy()[..., 0], (expected - 128) / 128)
    assert np.array_equal(images.numpy()[..., 0], images.numpy()[..., 2])  # gray -> 3 channels
    assert list(labels.numpy().argmax(1)) == [i % 10 for i in range(20)]


def test_damaged_idx_files_are_one_line_errors(tmp_path):
    write_idx(tmp_path, "test", np.zeros((4, 28, 28)), [1, 2, 3, 11])
    config = data_config()
    with pytest.raises(UserError, match="label 11 is out of range"):
        DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    path = os.path.join(tmp_path, "t10k-images-idx3-ubyte.gz")
    data = gzip.open(path).read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-100])
    with pytest.raises(UserError, match="truncated"):
        DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + data[4:])
    with pytest.raises(UserError, match="not an IDX file"):
        DataInput(config.data, "eval", False, data_dir=str(tmp_path))


def test_zero_by_zero_images_are_a_one_line_error(tmp_path):
    write_idx(tmp_path, "test", np.zeros((4, 0, 0)), [1, 2, 3, 4])
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte.gz holds no pixels \(4x0x0"):
        DataInput(data_config().data, "eval", False, data_dir=str(tmp_path))


def test_missing_data_dir_and_a_file_as_data_dir_are_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        DataInput(data_config().data, "train", True, data_dir="/no/such/folder")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is not a folder"):
        DataInput(data_config().data, "train", True, data_dir=str(tmp_path / "file"))


def test_a_split_only_partly_in_data_dir_is_refused_not_mixed(tmp_path):
    """--data_dir with Fashion-MNIST's train files only: the test split is not silently
    taken from elsewhere (Debian's package)."""
    write_idx(tmp_path, "train", np.zeros((4, 28, 28)), [1, 2, 3, 4])
    train = DataInput(data_config().data, "train", True, data_dir=str(tmp_path))
    assert train.source.origin == f"idx:{tmp_path}/train"
    with pytest.raises(UserError, match=r"holds IDX files but not t10k-images-idx3-ubyte, "
                                         r"t10k-labels-idx1-ubyte\[.gz\] of the test split"):
        DataInput(data_config().data, "eval", False, data_dir=str(tmp_path))
    os.remove(tmp_path / "train-labels-idx1-ubyte.gz")
    with pytest.raises(UserError, match="but not train-labels-idx1-ubyte"):
        DataInput(data_config().data, "train", True, data_dir=str(tmp_path))


@pytest.mark.skipif(not os.path.isdir(DEBIAN), reason="needs Debian's dataset-fashion-mnist (make data)")
def test_real_fashion_mnist_loads_offline():
    config = data_config()
    train = DataInput(config.data, "train", True)
    test = DataInput(config.data, "eval", False)
    assert (train.num_examples, test.num_examples) == (60_000, 10_000)
    assert train.source.origin.startswith(f"idx:{DEBIAN}")
    assert len(train.class_names) == 10 and train.class_names[9] == "Ankle boot"
    _, labels = next(iter(test.dataset(10, 32)))
    assert list(labels.numpy().argmax(1)) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # the published order
