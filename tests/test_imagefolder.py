"""The user's own image folders, including every kind of bad input."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import data_config
from PIL import Image

from efficientnetv2 import UserError
from efficientnetv2.datasets import DataInput
from efficientnetv2.datasets.imagefolder import scan_image_folder

RNG = np.random.RandomState(0)


def _image(path, mode="RGB", fmt=None, size=(12, 10)):
    array = RNG.randint(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(array).convert(mode).save(path, fmt)


def _good_folder(root, classes=("cat", "dog"), per_class=5):
    for name in classes:
        os.makedirs(root / name, exist_ok=True)
        for i in range(per_class):
            _image(root / name / f"{i}.{['jpg', 'png', 'bmp', 'gif', 'jpeg'][i % 5]}")
    return root


def test_every_format_and_channel_count_becomes_rgb(tmp_path):
    root = _good_folder(tmp_path)
    odd = {"gray.png": "L", "gray_alpha.png": "LA", "rgba.png": "RGBA", "cmyk.jpg": "CMYK",
           "palette.png": "P", "onebit.bmp": "1"}
    for name, mode in odd.items():
        _image(root / "cat" / name, mode)
    data = DataInput(data_config("imagefolder").data, "train", True, data_dir=str(root), seed=1)
    assert data.class_names == ["cat", "dog"] and data.num_classes == 2
    assert not data.source.skipped
    images, labels = next(iter(data.dataset(data.num_examples, 16)))
    assert images.shape == (data.num_examples, 16, 16, 3)
    assert images.numpy().min() >= -2.2 and images.numpy().max() <= 2.7  # ImageNet mean/std
    assert labels.numpy().sum(1).tolist() == [1.0] * data.num_examples


def test_bad_files_are_skipped_counted_and_reported(tmp_path):
    root = _good_folder(tmp_path)
    (root / "cat" / "corrupt.jpg").write_bytes(os.urandom(300))
    _image(root / "cat" / "whole.jpg", size=(64, 64))
    (root / "cat" / "truncated.jpg").write_bytes((root / "cat" / "whole.jpg").read_bytes()[:400])
    (root / "dog" / "zero.png").write_bytes(b"")
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "text.png").write_text("a text file named .png")
    _good_folder(root / "dog", classes=("nested",))  # images one level too deep
    os.symlink(root / "gone.png", root / "cat" / "link.png")
    with pytest.warns(UserWarning, match=r"skipped 6 unreadable image\(s\).*ignored 1 non-image"):
        scan = scan_image_folder(str(root), "train", val_fraction=0.2)
    reasons = dict(line.rsplit(": ", 1) for line in scan.skipped)
    assert {os.path.basename(p) for p in reasons} == {"corrupt.jpg", "truncated.jpg", "zero.png",
                                                      "text.png", "nested", "link.png"}
    assert reasons[str(root / "dog" / "zero.png")] == "empty file"
    assert reasons[str(root / "cat" / "link.png")] == "a broken link"
    assert reasons[str(root / "dog" / "nested")] == "a folder inside a class folder (not read)"
    assert scan.ignored == 1


@pytest.mark.parametrize("make, message", [
    (lambda r: (r / "a").mkdir() or (r / "b").mkdir() or _image(r / "a" / "x.png"),
     "class folder .*b.* has no usable images"),
    (lambda r: _good_folder(r, classes=("only",)), r"has 1 class folder\(s\); a classifier needs at least 2"),
    (lambda r: None, r"has 0 class folder"),
    (lambda r: (_good_folder(r / "train", ("a", "b")), _good_folder(r / "val", ("a", "c"))),
     "different class folders"),
])
def test_folder_mistakes_are_one_line_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(UserError, match=message):
        scan_image_folder(str(tmp_path), "train")


def test_missing_folder_and_missing_flag():
    with pytest.raises(UserError, match="does not exist"):
        scan_image_folder("/no/such/images", "train")
    with pytest.raises(UserError, match="needs `data_dir`"):
        scan_image_folder(None, "train")


def test_fraction_split_is_seeded_disjoint_and_complete(tmp_path):
    root = _good_folder(tmp_path, per_class=10)
    train = scan_image_folder(str(root), "train", 0.2, seed=3)
    val = scan_image_folder(str(root), "eval", 0.2, seed=3)
    assert not set(train.paths) & set(val.paths)
    assert len(train.paths) + len(val.paths) == 20 and len(val.paths) == 4
    assert scan_image_folder(str(root), "eval", 0.2, seed=3).paths == val.paths
    assert scan_image_folder(str(root), "eval", 0.2, seed=4).paths != val.paths


def test_train_and_val_folders(tmp_path):
    _good_folder(tmp_path / "train", per_class=4)
    _good_folder(tmp_path / "val", per_class=2)
    assert len(scan_image_folder(str(tmp_path), "train").paths) == 8
    val = scan_image_folder(str(tmp_path), "eval")
    assert len(val.paths) == 4 and all("/val/" in p for p in val.paths)


def _jpeg_only_pillow_reads() -> bytes:
    """A JPEG with one entropy-coded byte set to 0xFF: Pillow decodes it (with a warning),
    TensorFlow's decoder stops with 'jpeg::Uncompress failed'."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (32, 32, 3), np.uint8)).save(buffer, "JPEG")
    data = buffer.getvalue()
    for position in range(data.index(b"\xff\xda") + 14, len(data) - 2):
        damaged = data[:position] + b"\xff" + data[position + 1:]
        try:
            Image.open(io.BytesIO(damaged)).load()
            tf.io.decode_image(damaged, channels=3)
        except OSError:
            continue  # Pillow refuses it too
        except tf.errors.InvalidArgumentError:
            return damaged
    raise AssertionError("no such JPEG found: the premise of the test changed")


def test_a_jpeg_tensorflow_cannot_decode_is_converted_and_trains(tmp_path):
    root = _good_folder(tmp_path)
    (root / "cat" / "odd.jpg").write_bytes(_jpeg_only_pillow_reads())
    data = DataInput(data_config("imagefolder").data, "train", True, data_dir=str(root), seed=1)
    assert not data.source.skipped
    converted = [p.decode() for p in data.source.table[0].numpy() if b"converted" in p]
    assert len(converted) == 1 and converted[0].endswith(".png")
    images, _ = next(iter(data.dataset(data.num_examples, 16)))  # every image decodes
    assert images.shape[0] == data.num_examples


def test_photos_stored_turned_are_read_upright_in_training_and_prediction(tmp_path):
    from PIL import ImageOps

    from efficientnetv2.serving.predict import read_images

    root = _good_folder(tmp_path)
    stored = Image.fromarray(RNG.randint(0, 255, (10, 24, 3), np.uint8))  # 24 wide, 10 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "turn 90 degrees clockwise to view", as a phone held upright writes
    stored.save(root / "cat" / "phone.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(root / "cat" / "phone.jpg") as image:
        upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert upright.shape == (24, 10, 3)
    paths = [p for split in ("train", "eval") for p in scan_image_folder(str(root), split, 0.2).paths]
    read = [p for p in paths if p.endswith(".png") and "converted" in p]
    assert len(read) == 1  # the photo, converted once, upright
    np.testing.assert_array_equal(tf.io.decode_image(tf.io.read_file(read[0]), 3).numpy(), upright)
    served = read_images([str(root / "cat" / "phone.jpg")])[0]
    np.testing.assert_array_equal(tf.io.decode_image(served, 3).numpy(), upright)


def test_a_labels_csv_makes_a_multi_label_folder_and_a_bad_one_is_one_line(tmp_path):
    from efficientnetv2.datasets.imagefolder import folder_stats

    os.makedirs(tmp_path / "val")
    for name in ("a.png", "b.png", "val/c.png"):
        Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / name)
    (tmp_path / "labels.csv").write_text("image,labels\na.png,cat dog\nb.png,dog\nval/c.png,cat\n")
    train = scan_image_folder(str(tmp_path), "train")
    assert train.multilabel and train.class_names == ["cat", "dog"]
    assert train.labels == [[0, 1], [1]] and len(scan_image_folder(str(tmp_path), "eval").paths) == 1
    stats = folder_stats(str(tmp_path))
    assert (stats.train_images, stats.num_classes, stats.short_side) == (2, 2, 30)
    (tmp_path / "labels.csv").write_text("file,tags\na.png,cat\n")
    with pytest.raises(UserError, match="header 'image,labels'"):
        scan_image_folder(str(tmp_path), "train")


def test_labels_csv_rows_outside_the_folder_are_skipped_and_never_opened(tmp_path, monkeypatch):
    """`../x.png`, `/abs/x.png` rows: skipped and reported, never opened (by the scan or the
    folder statistics); a spreadsheet's UTF-8 BOM before the header is fine."""
    from efficientnetv2.datasets import imagefolder

    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    for folder in (root / "val", outside):
        os.makedirs(folder)
    for name in ("a.png", "b.png", "val/c.png", "val/d.png"):
        _image(root / name)
    for name in ("x.png", "y.png", "z.png"):
        _image(outside / name)
    rows = ["a.png,cat", "b.png,dog", "val/c.png,cat", "val/d.png,dog",
            "../elsewhere/x.png,cat", f"{outside / 'y.png'},dog", "val/../../elsewhere/z.png,dog"]
    (root / "labels.csv").write_bytes(("\ufeffimage,labels\n" + "\n".join(rows) + "\n").encode())
    opened = []
    real_open = Image.open
    monkeypatch.setattr(imagefolder.Image, "open", lambda p, *a: opened.append(str(p)) or real_open(p, *a))
    with pytest.warns(UserWarning, match=r"skipped 2 image\(s\).*outside the folder \(not read\)"):
        train = scan_image_folder(str(root), "train")
    assert sorted(os.path.basename(p) for p in train.paths) == ["a.png", "b.png"]
    assert len([s for s in train.skipped if "outside the folder" in s]) == 2
    with pytest.warns(UserWarning, match="outside the folder"):
        assert len(scan_image_folder(str(root), "eval").paths) == 2
    assert imagefolder.folder_stats(str(root)).train_images == 2
    assert opened and not [p for p in opened if "elsewhere" in p]


def test_fifos_are_skipped_in_a_class_folder_and_in_labels_csv(tmp_path):
    """A FIFO named like an image would block the reader for ever: skipped and reported by
    the scan, left out of the folder statistics (the test would hang otherwise)."""
    from efficientnetv2.datasets.imagefolder import folder_stats

    root = _good_folder(tmp_path / "data")
    os.mkfifo(root / "cat" / "pipe.jpg")
    stats = folder_stats(str(root), val_fraction=0.2)
    assert stats.train_images == 8 and stats.sampled == 10  # every regular image
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        scan = scan_image_folder(str(root), "train", val_fraction=0.2)
    assert scan.skipped == [f"{root / 'cat' / 'pipe.jpg'}: not a regular file"]
    labelled = tmp_path / "labelled"
    os.makedirs(labelled)
    for name in ("a.png", "b.png", "c.png"):
        _image(labelled / name)
    os.mkfifo(labelled / "pipe.png")
    (labelled / "labels.csv").write_text("image,labels\na.png,cat\nb.png,dog\nc.png,dog\n"
                                         "pipe.png,dog\n")
    assert folder_stats(str(labelled), val_fraction=0.5).sampled == 3
    with pytest.warns(UserWarning, match=r"pipe.png: not a regular file \(not read\)"):
        for split in ("train", "eval"):  # the row is in one of them
            scan_image_folder(str(labelled), split, val_fraction=0.5)


@pytest.mark.parametrize("name, message", [
    ("bad\nname", "has a line break in its name; rename it"),
    ("bad\u2028name", "has a line break in its name"),
    (os.fsdecode(b"caf\xe9"), "has a name that is not UTF-8; rename it"),
])
def test_a_class_name_classes_txt_cannot_hold_is_refused_at_scan_time(tmp_path, name, message):
    _good_folder(tmp_path, classes=("cat", name))
    with pytest.raises(UserError, match=message) as error:
        scan_image_folder(str(tmp_path), "train")
    assert "\n" not in str(error.value)


def test_a_hidden_class_folder_is_reported_not_dropped_silently(tmp_path):
    _good_folder(tmp_path, classes=("cat", "dog", ".hidden"))
    with pytest.warns(UserWarning, match="hidden folder"):
        scan = scan_image_folder(str(tmp_path), "train")
    assert scan.class_names == ["cat", "dog"]
    assert scan.skipped == [f"{tmp_path / '.hidden'}: a hidden folder (not a class)"]


def test_one_image_per_class_leaves_no_validation_split_and_says_so(tmp_path):
    _good_folder(tmp_path, per_class=1)
    assert len(scan_image_folder(str(tmp_path), "train").paths) == 2
    with pytest.raises(UserError, match="validation split is empty.*2 or more per class"):
        scan_image_folder(str(tmp_path), "eval")


def test_a_converted_image_is_cached_whole_and_a_damaged_cache_entry_is_rewritten(tmp_path,
                                                                                 monkeypatch):
    """A kill during the conversion leaves no cache entry (written under a temporary name,
    renamed when complete); an entry that does not decode (a truncated file from before)
    is written again instead of being reused for good."""
    from efficientnetv2.datasets import imagefolder

    monkeypatch.setattr(imagefolder, "CACHE_DIR", str(tmp_path / "cache"))
    root = _good_folder(tmp_path / "data")
    _image(root / "cat" / "onebit.bmp", "1", size=(40, 30))  # TensorFlow cannot decode it

    def killed(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise KeyboardInterrupt  # as a kill in the middle of the write
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "save", killed)
        with pytest.raises(KeyboardInterrupt):
            for split in ("train", "eval"):
                scan_image_folder(str(root), split, val_fraction=0.2)
    assert os.listdir(tmp_path / "cache") == []  # nothing half-written under the final name
    def scanned():
        return [p for split in ("train", "eval")
                for p in scan_image_folder(str(root), split, val_fraction=0.2).paths]
    converted = scanned()
    entry = next(p for p in converted if p.startswith(str(tmp_path / "cache")))
    with open(entry, "r+b") as f:
        f.truncate(60)  # damaged by a kill of an older version, or a full disk
    assert scanned() == converted
    assert tf.io.decode_png(tf.io.read_file(entry)).shape == (30, 40, 3)


def test_an_image_listed_twice_in_labels_csv_is_one_line(tmp_path):
    """Two rows of one image could put it in both splits (evaluated on what trained on it)."""
    for name in ("a.png", "b.png"):
        _image(tmp_path / name)
    (tmp_path / "labels.csv").write_text("image,labels\na.png,cat\nb.png,dog\n./a.png,dog\n")
    with pytest.raises(UserError, match=r"lists '\./a\.png' twice \(rows 2 and 4\); keep one row"):
        scan_image_folder(str(tmp_path), "train")
