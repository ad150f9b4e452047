"""Shared test settings: quiet TensorFlow, tiny architectures, deterministic seeds."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

# A two-stage architecture with both block types, SE and a residual: builds in a second.
TINY_BLOCKS = ["r1_k3_s1_e1_i8_o8_c1", "r2_k3_s2_e4_i8_o16_se0.25"]
TINY = {"blocks": TINY_BLOCKS, "feature_size": 32}


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session(free_memory=False)  # Python's gc.collect here cost 0.7 s a test
    keras.config.set_dtype_policy("float32")  # a mixed-precision test must not leak


def write_idx(directory, split: str, images, labels) -> None:
    """Writes MNIST-format gzip files (the real parser reads them back)."""
    import gzip
    import struct

    import numpy as np

    from efficientnetv2.datasets.idx import FILES, IMAGES_MAGIC, LABELS_MAGIC

    images_name, labels_name = FILES[split]
    images = np.asarray(images, np.uint8)
    with gzip.open(os.path.join(directory, f"{images_name}.gz"), "wb") as f:
        f.write(struct.pack(">IIII", IMAGES_MAGIC, *images.shape) + images.tobytes())
    with gzip.open(os.path.join(directory, f"{labels_name}.gz"), "wb") as f:
        f.write(struct.pack(">II", LABELS_MAGIC, len(labels)) + np.asarray(labels, np.uint8).tobytes())


def idx_folder(folder, train: int, test: int, seed: int = 0):
    """Random 28x28 images, labels cycling over the 10 classes, as Fashion-MNIST files."""
    import numpy as np

    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    write_idx(folder, "train", rng.randint(0, 256, (train, 28, 28)), np.arange(train) % 10)
    write_idx(folder, "test", rng.randint(0, 256, (test, 28, 28)), np.arange(test) % 10)
    return folder


@pytest.fixture
def idx_dir(tmp_path):
    """A small Fashion-MNIST-format folder: 40 train and 20 test images of 28x28."""
    import numpy as np

    rng = np.random.RandomState(0)
    write_idx(tmp_path, "train", rng.randint(0, 256, (40, 28, 28)), np.arange(40) % 10)
    write_idx(tmp_path, "test", rng.randint(0, 256, (20, 28, 28)), np.arange(20) % 10)
    return tmp_path


def data_config(dataset_cfg: str = "fashion_mnist", hparam_str: str = ""):
    from efficientnetv2 import hparams

    return hparams.build_config("efficientnetv2-b0", dataset_cfg, hparam_str=hparam_str)


def hparam_string(*parts: str) -> str:
    """--hparam_str text of several parts, a key set again in a later part replacing the
    earlier value (--hparam_str itself refuses a key twice)."""
    pairs = {}
    for part in parts:
        for pair in filter(None, part.split(",")):
            key, _, value = pair.partition("=")
            pairs[key.strip()] = value
    return ",".join(f"{key}={value}" for key, value in pairs.items())
