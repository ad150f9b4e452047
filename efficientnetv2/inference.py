"""Inference: the logits of a model in inference mode, optionally averaged over test-time
views of each image (its mirror image, the image moved a few pixels each way)."""

from __future__ import annotations

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class TestTimeViews:
    """The views of each image whose logits inference averages (test-time augmentation):
    the image; with `flip`, also its mirror image; with `shift` = n, also the image moved
    n pixels up, down, left and right, and with `diagonal` also diagonally (mirrored too
    with `flip`), the uncovered border set to `fill` (a scalar or one value per channel:
    the normalised black pixel that training's shift crop pads with). The default is the
    image alone."""

    __test__ = False  # not a pytest class
    flip: bool = False
    shift: int = 0
    fill: float | tuple[float, ...] = 0.0
    diagonal: bool = False

    def moves(self) -> list[tuple[int, int]]:
        """(rows, columns) each shifted view moves the image by (positive: down, right)."""
        n = self.shift
        if not n:
            return []
        corners = [(r, c) for r in (-n, n) for c in (-n, n)] if self.diagonal else []
        return [(-n, 0), (n, 0), (0, -n), (0, n)] + corners

    def count(self) -> int:
        return (2 if self.flip else 1) * (1 + len(self.moves()))

    def images(self, images) -> list:
        """The views of a batch [B, H, W, C] of preprocessed images."""
        views = [images]
        if self.shift:
            n = self.shift
            fill = keras.ops.convert_to_tensor(self.fill, images.dtype)
            padded = keras.ops.pad(images - fill, [[0, 0], [n, n], [n, n], [0, 0]]) + fill
            shape = keras.ops.shape(images)
            for rows, cols in self.moves():
                views.append(keras.ops.slice(padded, [0, n - rows, n - cols, 0], shape))
        if self.flip:
            views += [keras.ops.flip(view, axis=-2) for view in views]
        return views


def inference_logits(model: keras.Model, images, views: TestTimeViews | None = None):
    """The model's float32 logits in inference mode: the mean of the logits of the test-time
    `views` of the images (default: the images alone)."""
    batches = (views or TestTimeViews()).images(images)
    logits = [keras.ops.cast(model(batch, training=False), "float32") for batch in batches]
    return logits[0] if len(logits) == 1 else sum(logits) / len(logits)
