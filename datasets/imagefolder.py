"""A user's own images: one sub-folder per class, checked before training starts.

Layouts: `root/<class>/*.jpg` (the validation split is a fixed, seeded fraction of each
class) or `root/train/<class>/...` + `root/val/<class>/...`. Decisions on bad input:
- corrupt, truncated, zero-byte or non-image files with an image extension, folders inside a
  class folder and broken links: skipped, counted and reported (a warning now, the count
  again at the end of a run);
- files of other extensions: ignored and counted;
- images TensorFlow's decoder (the pipeline's) cannot read but Pillow can (1-bit BMP, TIFF or
  WebP renamed .jpg, JPEGs libjpeg refuses, ...), and photos whose EXIF orientation says
  they are stored turned (TensorFlow's decoder ignores it): converted once to PNG, upright,
  in a cache folder;
  1, 2 and 4 channels, palettes and CMYK become RGB in the pipeline;
- a missing folder, an empty class folder, a single class, train/val with different
  classes, a class folder name that is not UTF-8 or holds a line break (`classes.txt` holds a
  name per line), or a validation split left empty: a one-line error;
- FIFOs, sockets and devices (by extension images or not) are never opened: skipped and
  reported; hidden class folders (`.name`) are not classes, and are reported.

Multi-label images: a `labels.csv` at the folder's root (header `image,labels`, then one row
per image: its path relative to the folder and its class names separated by spaces) instead
of class folders. The validation split is the rows under `val/` or `validation/` if any, else
a seeded `data.val_fraction` of the rows. Labels become multi-hot vectors. A row naming a file
outside the folder (an absolute path, or one climbing out with `..`) is skipped and reported,
never opened.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import warnings

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from efficientnetv2.errors import UserError, printable, quoted
from efficientnetv2.files import atomic_write

from .preprocessing import decode

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
TF_DECODABLE = {"JPEG": None, "PNG": None, "GIF": None, "BMP": ("RGB", "RGBA", "L")}
VALIDATION_FOLDERS = ("val", "validation")
LABELS_FILE = "labels.csv"  # a multi-label folder's image -> class names
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "efficientnetv2", "converted")


@dataclasses.dataclass
class FolderScan:
    root: str
    class_names: list[str]
    paths: list[str]
    labels: list  # class indices; with `multilabel`, a list of class indices per image
    skipped: list[str]  # "path: reason"
    ignored: int  # files that are not images by their extension
    multilabel: bool = False


def _class_folders(directory: str) -> list[str]:
    return sorted(d for d in os.listdir(directory)
                  if os.path.isdir(os.path.join(directory, d)) and not d.startswith("."))


def _hidden_folders(directory: str) -> list[str]:
    return sorted(d for d in os.listdir(directory)
                  if d.startswith(".") and os.path.isdir(os.path.join(directory, d)))


def _check_class_name(directory: str, name: str) -> None:
    """A class name must survive `classes.txt` (a name per line) and TensorFlow's paths."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(f"class folder {printable(os.fsdecode(os.path.join(directory, name)))} has "
                        "a name that is not UTF-8; rename it (its name is the class name)") from None
    if name.splitlines() != [name]:
        raise UserError(f"class folder {quoted(os.path.join(directory, name))} has a line break "
                        "in its name; rename it (classes.txt holds one class name per line)")


def _regular(path: str) -> bool:
    """Whether `path` is a regular file (or a link to one): never a FIFO, socket or device,
    which would block or never end when read."""
    return os.path.isfile(path)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1: stored upright; 2-8: mirrored and/or turned)."""
    try:
        return int(image.getexif().get(0x0112, 1) or 1)
    except Exception:  # a damaged EXIF block: take the pixels as stored
        return 1


def _convert_to_png(path: str, image: Image.Image) -> str:
    """The cached PNG of `path` (upright, RGB), written whole or not at all (a temporary
    name, renamed when complete); a cached file that does not decode is written again."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    stat = os.stat(path)
    key = hashlib.sha1(f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime}".encode()).hexdigest()
    target = os.path.join(CACHE_DIR, f"{key}.png")
    if not (os.path.exists(target) and _tf_decodes(target)):
        with atomic_write(target, "wb") as f:
            ImageOps.exif_transpose(image).convert("RGB").save(f, "PNG")
    return target


def _tf_decodes(path: str) -> bool:
    """Whether the pipeline's decoder (preprocessing.decode) reads the file."""
    try:
        decode(tf.io.read_file(path), encoded=True)
        return True
    except tf.errors.OpError:
        return False


def check_image(path: str) -> tuple[str | None, str | None]:
    """(path TensorFlow can decode, None) or (None, reason it is unusable). Files Pillow reads
    but TensorFlow's decoder does not are converted to PNG."""
    if os.path.getsize(path) == 0:
        return None, "empty file"
    try:
        with Image.open(path) as image:
            image.load()
            if image.width == 0 or image.height == 0:
                return None, "zero-sized image"
            modes = TF_DECODABLE.get(image.format, ())
            if ((modes is not None and image.mode not in modes) or exif_orientation(image) != 1
                    or not _tf_decodes(path)):
                return _convert_to_png(path, image), None
    except Image.DecompressionBombError:
        return None, (f"more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels (Pillow's limit against "
                      "decompression bombs); resize it")
    except Exception as e:  # PIL raises many types for damaged files
        return None, f"not a readable image ({type(e).__name__})"
    return path, None


def unusable(paths: list[str]) -> list[str]:
    """Those of `paths` (a scan's, converted ones included) that are gone or no longer
    images: what to name when reading fails in the middle of a run."""
    gone = []
    for path in paths:
        if not os.path.isfile(path) or check_image(path)[0] is None:
            gone.append(path)
    return gone


def _scan_classes(directory: str, class_names: list[str], skipped: list[str]
                  ) -> tuple[list[list[str]], int]:
    per_class, ignored = [], 0
    for name in class_names:
        folder = os.path.join(directory, name)
        usable = []
        for file in sorted(os.listdir(folder)):
            path = os.path.join(folder, file)
            if file.startswith("."):
                continue
            if os.path.isdir(path):
                skipped.append(f"{path}: a folder inside a class folder (not read)")
                continue
            if not _regular(path):
                skipped.append(f"{path}: " + ("a broken link" if os.path.islink(path)
                                              else "not a regular file"))
                continue
            if not file.lower().endswith(EXTENSIONS):
                ignored += 1
                continue
            good, reason = check_image(path)
            if good:
                usable.append(good)
            else:
                skipped.append(f"{path}: {reason}")
        if not usable:
            raise UserError(f"class folder {folder!r} has no usable images; add images "
                            f"({', '.join(EXTENSIONS)}) or remove the folder")
        per_class.append(usable)
    return per_class, ignored


def _seeded_split(per_class: list[list[str]], split: str, val_fraction: float, seed: int
                  ) -> list[list[str]]:
    """Per class, a fixed seeded shuffle; the first `val_fraction` is the validation split."""
    chosen = []
    for index, paths in enumerate(per_class):
        order = np.random.RandomState(seed + index).permutation(len(paths))
        num_val = _num_val(len(paths), val_fraction)
        picked = order[:num_val] if split != "train" else order[num_val:]
        chosen.append([paths[i] for i in sorted(picked)])
    return chosen


def _split_layout(root: str | None, split: str) -> tuple[str, list[str], bool]:
    """(folder holding the split's class folders, class names, whether train/ and val/ are
    given) for `split` ('train', or 'eval'/'minival' for validation), checked."""
    if not root:
        raise UserError("dataset 'imagefolder' needs `data_dir`=FOLDER with one sub-folder per class")
    if not os.path.isdir(root):
        raise UserError(f"image folder {root!r} does not exist; pass an existing folder to `data_dir`")
    top = _class_folders(root)
    val_name = next((v for v in VALIDATION_FOLDERS if v in top), None)
    presplit = "train" in top and val_name is not None
    directory = os.path.join(root, "train" if split == "train" else val_name) if presplit else root
    class_names = _class_folders(directory)
    if presplit:
        other = _class_folders(os.path.join(root, val_name if split == "train" else "train"))
        if other != class_names:
            raise UserError(f"{root}: train/ and {val_name}/ hold different class folders "
                            f"({sorted(set(class_names) ^ set(other))}); make them the same")
    if len(class_names) < 2:
        raise UserError(f"image folder {directory!r} has {len(class_names)} class folder(s); "
                        f"a classifier needs at least 2 (one sub-folder per class)")
    for name in class_names:
        _check_class_name(directory, name)
    return directory, class_names, presplit


def _num_val(count: int, val_fraction: float) -> int:
    """How many of a class's `count` images the seeded split holds out for validation."""
    return min(count - 1, max(1, int(round(count * val_fraction))))


def _labels_rows(root: str) -> list[tuple[str, list[str]]]:
    """(relative path, class names) of each row of a multi-label folder's labels.csv."""
    path = os.path.join(root, LABELS_FILE)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a spreadsheet's BOM too
            reader = csv.DictReader(f)
            if not reader.fieldnames or {"image", "labels"} - set(reader.fieldnames):
                raise UserError(f"{path}: the first line must be the header 'image,labels' "
                                f"(found {reader.fieldnames}); then one 'path,class class' row "
                                "per image")
            rows = [((row["image"] or "").strip(), (row["labels"] or "").split())
                    for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"{path} cannot be read ({e}); write it as UTF-8 CSV with the header "
                        "'image,labels'") from None
    first: dict[str, int] = {}
    for number, (image, _) in enumerate(rows, start=2):  # line 1 is the header
        again = first.setdefault(os.path.normpath(image), number) if image else number
        if again != number:  # in both splits it would be evaluated on what trained on it
            raise UserError(f"{path} lists {quoted(image)} twice (rows {again} and {number}); "
                            "keep one row per image, with all its classes")
    rows = [row for row in rows if row[0]]
    if not rows:
        raise UserError(f"{path} lists no images; add one 'path,class class' row per image")
    return rows


def _in_validation(path: str) -> bool:
    return path.replace("\\", "/").split("/")[0] in VALIDATION_FOLDERS


def _row_file(root: str, relative: str) -> tuple[str, str | None]:
    """(path, None) of a labels.csv row's file, or (path, why it is not read): outside the
    folder (absolute, or climbing out with ..), missing, or not a regular file."""
    path = os.path.join(root, relative)
    if os.path.isabs(relative) or os.path.normpath(relative).split(os.sep)[0] == os.pardir:
        return path, "outside the folder (not read)"
    if not os.path.lexists(path):
        return path, "no such file"
    if not _regular(path):
        return path, "not a regular file (not read)"
    return path, None


def scan_labels_file(root: str, split: str, val_fraction: float = 0.1, seed: int = 0
                     ) -> FolderScan:
    """The images of `split` of a multi-label folder (its labels.csv), checked."""
    rows = _labels_rows(root)
    class_names = sorted({name for _, names in rows for name in names})
    if len(class_names) < 2:
        raise UserError(f"{os.path.join(root, LABELS_FILE)} names {len(class_names)} class(es); "
                        "a classifier needs at least 2")
    presplit = any(_in_validation(path) for path, _ in rows)
    if presplit:
        chosen = [row for row in rows if _in_validation(row[0]) == (split != "train")]
    else:
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction {val_fraction} must be in (0, 1)")
        order = np.random.RandomState(seed).permutation(len(rows))
        num_val = _num_val(len(rows), val_fraction)
        picked = order[:num_val] if split != "train" else order[num_val:]
        chosen = [rows[i] for i in sorted(picked)]
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels, skipped = [], [], []
    for relative, names in chosen:
        path, reason = _row_file(root, relative)
        good, reason = check_image(path) if reason is None else (None, reason)
        if good:
            paths.append(good)
            labels.append([index[name] for name in names])
        else:
            skipped.append(f"{path}: {reason}")
    if not paths:
        raise UserError(f"{os.path.join(root, LABELS_FILE)}: no usable image in the "
                        f"{'training' if split == 'train' else 'validation'} split"
                        + ("" if chosen else f" ({len(rows)} row(s) leave it empty); add rows"))
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} image(s) of {LABELS_FILE}: "
                      + "; ".join(skipped[:5]), stacklevel=2)
    return FolderScan(root, class_names, paths, labels, skipped, 0, multilabel=True)


def scan_image_folder(root: str | None, split: str, val_fraction: float = 0.1, seed: int = 0
                      ) -> FolderScan:
    """Lists and checks the images of `split` ('train', or 'eval'/'minival' for validation)."""
    if root and os.path.isfile(os.path.join(root, LABELS_FILE)):
        return scan_labels_file(root, split, val_fraction, seed)
    directory, class_names, presplit = _split_layout(root, split)
    skipped = [f"{os.path.join(directory, name)}: a hidden folder (not a class)"
               for name in _hidden_folders(directory)]
    per_class, ignored = _scan_classes(directory, class_names, skipped)
    if not presplit:
        if not 0 < val_fraction < 1:
            raise UserError(f"data.val_fraction {val_fraction} must be in (0, 1)")
        per_class = _seeded_split(per_class, split, val_fraction, seed)
    paths = [p for group in per_class for p in group]
    labels = [i for i, group in enumerate(per_class) for _ in group]
    if not paths:  # each class holds one image: the seeded split keeps it for training
        raise UserError(f"image folder {directory}: the validation split is empty (every class "
                        "has a single usable image); add images (2 or more per class) or give "
                        "train/ and val/ folders")
    if skipped or ignored:
        shown = "; ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        warnings.warn(f"image folder {directory}: skipped {len(skipped)} unreadable image(s) or folder(s)"
                      f"{': ' + shown if skipped else ''}; ignored {ignored} non-image file(s)",
                      stacklevel=2)
    return FolderScan(root, class_names, paths, labels, skipped, ignored)


@dataclasses.dataclass(frozen=True)
class FolderStats:
    """What the from-scratch defaults are chosen from (hparams/folder_plan.py)."""

    train_images: int  # image files of the training split, by extension
    num_classes: int
    short_side: int  # median shorter side of the sampled images, px (0: none readable)
    sampled: int  # images whose size was read
    class_counts: tuple[int, ...] = ()  # training images per class (class folders only)


def folder_stats(root: str | None, val_fraction: float = 0.1, sample: int = 300) -> FolderStats:
    """Counts the training split's image files and reads the size of up to `sample` of them
    (evenly spread, headers only): quick even for 100,000 images."""
    if root and os.path.isfile(os.path.join(root, LABELS_FILE)):
        rows = _labels_rows(root)
        presplit = any(_in_validation(path) for path, _ in rows)
        train = [path for path, reason in (_row_file(root, relative) for relative, _ in rows
                                           if not (presplit and _in_validation(relative)))
                 if reason is None]
        count = len(train) if presplit else len(rows) - _num_val(len(rows), val_fraction)
        classes = len({name for _, names in rows for name in names})
        return _stats(count, classes, train, sample)
    directory, class_names, presplit = _split_layout(root, "train")
    files = []
    for name in class_names:
        folder = os.path.join(directory, name)
        images = [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                  if f.lower().endswith(EXTENSIONS) and not f.startswith(".")
                  and _regular(os.path.join(folder, f))]
        files.append(images)
    counts = tuple(len(images) if presplit or len(images) < 2
                   else len(images) - _num_val(len(images), val_fraction) for images in files)
    stats = _stats(sum(counts), len(class_names), [path for images in files for path in images],
                   sample)
    return dataclasses.replace(stats, class_counts=counts)


def _stats(count: int, classes: int, paths: list[str], sample: int) -> FolderStats:
    sides = []
    for path in paths[::max(1, len(paths) // sample)][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are the scan's to report
            continue
    return FolderStats(count, classes, int(np.median(sides)) if sides else 0, len(sides))
