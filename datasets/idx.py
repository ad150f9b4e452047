"""Reader of the IDX format of MNIST and Fashion-MNIST (`train-images-idx3-ubyte.gz` etc.)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from efficientnetv2.errors import UserError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
FILES = {  # split -> (images, labels) file names, as published
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def find_file(directory: str, stem: str) -> str | None:
    """The path of `stem` or `stem.gz` in `directory`, if either exists."""
    for name in (f"{stem}.gz", stem):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def has_idx_files(directory: str | None, split: str) -> bool:
    return bool(directory) and all(find_file(directory, stem) for stem in FILES[split])


def missing_files(directory: str, split: str) -> list[str]:
    """The files of `split` absent from `directory`, when it holds any IDX file at all
    (a folder with none of them is simply not an IDX folder)."""
    stems = [stem for files in FILES.values() for stem in files]
    if not any(find_file(directory, stem) for stem in stems):
        return []
    return [stem for stem in FILES[split] if not find_file(directory, stem)]


def _read(path: str) -> bytes:
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}; the file is damaged, download it again") from None


def _parse(path: str, magic: int, ndim: int) -> np.ndarray:
    data = _read(path)
    if len(data) < 4 + 4 * ndim or struct.unpack(">I", data[:4])[0] != magic:
        raise UserError(f"{path} is not an IDX file (expected magic number {magic})")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated: header says {shape}, body holds {body.size} bytes")
    return body.reshape(shape)


def load_idx(directory: str, split: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, H, W, 1], labels int64 [N]) of the `split` ('train' or 'test')."""
    images_stem, labels_stem = FILES[split]
    images = _parse(find_file(directory, images_stem), IMAGES_MAGIC, 3)
    labels = _parse(find_file(directory, labels_stem), LABELS_MAGIC, 1).astype(np.int64)
    if not images.size:
        raise UserError(f"{find_file(directory, images_stem)} holds no pixels "
                        f"({'x'.join(map(str, images.shape))} images); the file is damaged, "
                        "download it again")
    if len(images) != len(labels):
        raise UserError(f"{directory}: {len(images)} images but {len(labels)} labels in {split}")
    if labels.size and labels.max() >= num_classes:
        raise UserError(f"{directory}: label {labels.max()} is out of range for "
                        f"{num_classes} classes")
    return images[..., None], labels
