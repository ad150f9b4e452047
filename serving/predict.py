"""Prediction on image files with a run's checkpoint or an exported SavedModel.

    predictor = Predictor.from_checkpoint("runs/demo")      # or from_saved_model("export/")
    for path, top in zip(files, predictor.top_k(read_images(files), k=3)):
        print(path, top)   # [(class id, name, probability), ...]
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import tensorflow as tf

from efficientnetv2.errors import UserError, printable, quoted

from .export import BYTES_SIGNATURE, CLASSES_ASSET, EXPLAIN_SIGNATURE

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
BATCH = 32


def image_files(paths: list[str]) -> list[str]:
    """The image files named by `paths`: files as given, folders searched recursively
    (FIFOs, sockets and devices in them are skipped with a warning, never opened)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                           for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
            special = [f for f in found if not os.path.isfile(f)]
            if special:
                warnings.warn(f"skipped {len(special)} file(s) that are not regular files: "
                              + ", ".join(printable(f) for f in special[:3]), stacklevel=2)
            found = [f for f in found if os.path.isfile(f)]
            if not found:
                raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        elif os.path.exists(path):
            raise UserError(f"`image` {quoted(path)} is not a regular file (a FIFO, socket or "
                            "device); give image files or folders")
        else:
            raise UserError(f"`image` {quoted(path)} does not exist; give image files or folders")
    if not files:
        raise UserError("no images: pass `image`=PATH (a file or folder; repeatable)")
    return files


def read_images(files: list[str]) -> list[bytes]:
    """The files' bytes, each checked as training's folder scan checks an image: the same
    formats (1-bit BMP, TIFF and others Pillow reads are converted to PNG), a photo stored
    turned (EXIF orientation) turned upright, and the same pixel limit (Pillow's
    decompression-bomb check: a 20,000 x 20,000 JPEG is refused before it is decoded)."""
    from efficientnetv2.datasets.imagefolder import check_image

    images = []
    for path in files:
        usable, reason = check_image(path)
        if usable is None:
            raise UserError(f"cannot use {printable(path)}: {reason}; remove it or pass other "
                            "images")
        with open(usable, "rb") as f:
            images.append(f.read())
    return images


class Predictor:
    """Class probabilities of encoded images, from either source; the same outputs."""

    def __init__(self, predict_fn, class_names: list[str], explain_fn=None):
        self._predict = predict_fn
        self._explain = explain_fn
        self.class_names = class_names

    @classmethod
    def from_checkpoint(cls, path: str, top_k: int = 5,
                        eval_overrides: dict | None = None) -> Predictor:
        from efficientnetv2.run_folder import restore_model

        return cls.from_restored(restore_model(path, eval_overrides=eval_overrides), top_k)

    @classmethod
    def from_restored(cls, restored, top_k: int = 5) -> Predictor:
        """From a run's restored model or pretrained weights (run_folder)."""
        from .export import module_for_run

        module = module_for_run(restored, top_k)
        return cls(module.serve_bytes, restored.class_names, module.explain)

    @classmethod
    def from_saved_model(cls, path: str) -> Predictor:
        if not os.path.isdir(path):
            raise UserError(f"`saved_model` {path!r} is not a folder; give an export folder "
                            "or one of its version folders (a checkpoint goes to `checkpoint`)")
        from efficientnetv2.run_folder import saved_model_version

        version = saved_model_version(path)
        if version is None:
            raise UserError(f"{path} holds no SavedModel (saved_model.pb, or numbered versions "
                            "of one); for a checkpoint or run folder use `checkpoint`")
        loaded = tf.saved_model.load(version)
        with open(os.path.join(version, "assets", CLASSES_ASSET), encoding="utf-8") as f:
            names = f.read().splitlines()
        signature = loaded.signatures[BYTES_SIGNATURE]
        explain = loaded.signatures.get(EXPLAIN_SIGNATURE)
        return cls(lambda images: signature(image_bytes=images), names,
                   explain and (lambda images: explain(image_bytes=images)))

    def probabilities(self, images: list[bytes]) -> np.ndarray:
        """[N, classes] probabilities, in batches."""
        out = [self._predict(tf.constant(images[i:i + BATCH]))["probabilities"].numpy()
               for i in range(0, len(images), BATCH)]
        return np.concatenate(out)

    def grad_cams(self, images: list[bytes]) -> np.ndarray:
        """[N, h, w] Grad-CAM maps in [0, 1] of each image's top class (serving/explain.py)."""
        if self._explain is None:
            raise UserError("this SavedModel was exported before `explain` existed; export it "
                            "again, or explain from its checkpoint")
        return np.concatenate([self._explain(tf.constant(images[i:i + BATCH]))["grad_cam"].numpy()
                               for i in range(0, len(images), BATCH)])

    def top_k(self, images: list[bytes], k: int = 5) -> list[list[tuple[int, str, float]]]:
        probabilities = self.probabilities(images)
        k = min(k, probabilities.shape[1])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        return [[(int(i), self.class_names[i], float(p[i])) for i in row]
                for row, p in zip(order, probabilities)]


def format_predictions(files: list[str], tops: list, as_json: bool) -> str:
    """One line per image (`path: name 0.912, ...`), or a JSON list for machines."""
    if as_json:
        return json.dumps([{"image": path, "predictions": [
            {"class_id": i, "class_name": name, "probability": round(p, 6)} for i, name, p in top]}
            for path, top in zip(files, tops)], indent=1)
    return "\n".join(f"{printable(path)}: " + ", ".join(f"{printable(name)} {p:.3f}" for _, name, p in top)
                     for path, top in zip(files, tops))


def true_class(path: str, class_names: list[str]) -> str | None:
    """The class an image's folder names (`.../Sandal/boot3.png`: Sandal), if it is one."""
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return folder if folder in class_names else None


def plot_predictions(files: list[str], images: list[bytes], tops: list, path: str,
                     shown: int = 3, class_names: list[str] | None = None,
                     heatmaps: np.ndarray | None = None) -> str:
    """A grid of the images, each titled with its top `shown` classes and probabilities,
    written as a PNG at `path`. Where an image's folder names one of `class_names`, its title
    is green when the top class is that class and red when not; `heatmaps` (Grad-CAM maps)
    are drawn over the images."""
    from efficientnetv2.training.reporting import pyplot

    plt = pyplot()
    cols = min(6, len(files))
    rows = -(-len(files) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, (ax, name, data, top) in enumerate(zip(axes.flat, files, images, tops)):
        picture = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        ax.imshow(picture)
        if heatmaps is not None:  # the map of the eval crop, stretched over the image
            ax.imshow(heatmaps[index], cmap="jet", alpha=0.45, interpolation="bilinear",
                      extent=(-0.5, picture.shape[1] - 0.5, picture.shape[0] - 0.5, -0.5))
        truth = true_class(name, class_names or [])
        lines = [os.path.basename(name) + (f" (folder: {truth})" if truth else "")]
        lines += [f"{label} {p:.1%}" for _, label, p in top[:shown]]
        colour = "black" if truth is None else ("green" if top[0][1] == truth else "red")
        ax.set_title("\n".join(lines), fontsize=7, loc="left", color=colour)
        if truth is not None:  # a frame of the title's colour
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set(visible=True, color=colour, linewidth=3)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise UserError(f"cannot write `plot`={path}: {e.strerror or e}; give a writable .png path") from None
    finally:
        plt.close(fig)
    return path
