"""Input pipelines: a registry of tfds datasets, Fashion-MNIST/MNIST from IDX files (offline),
ImageNet TFRecords and the user's own image folders.

    data = DataInput(config.data, split="train", is_training=True)
    ds = data.dataset(batch_size=64, image_size=64)
"""

from .pipeline import AUGMENTATIONS, Augmentation, DataInput, Share
from .registry import REGISTRY, DatasetSpec, Split, get_spec

__all__ = ["AUGMENTATIONS", "REGISTRY", "Augmentation", "DataInput", "DatasetSpec", "Share",
           "Split", "get_spec"]
