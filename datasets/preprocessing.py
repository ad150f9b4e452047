"""Per-image preprocessing as in the original: random-area crop or centre crop, resize, flip,
values in [-1, 1]. Random choices use stateless ops keyed by a per-example seed, so a
pipeline with a fixed seed gives the same images in every run."""

from __future__ import annotations

import tensorflow as tf

MEAN = 128.0
STDDEV = 128.0


def decode(image: tf.Tensor, encoded: bool) -> tf.Tensor:
    """uint8 [H, W, 3]: decodes bytes (JPEG/PNG/BMP/GIF) and turns 1, 2 or 4 channels into RGB."""
    if encoded:
        image = tf.io.decode_image(image, channels=3, expand_animations=False, dtype=tf.uint8)
        image.set_shape([None, None, 3])
        return image
    channels = image.shape[-1]
    if channels == 1:
        return tf.image.grayscale_to_rgb(image)
    if channels == 2:
        return tf.image.grayscale_to_rgb(image[..., :1])
    if channels == 4:
        return image[..., :3]
    return image


def random_crop(image: tf.Tensor, seed: tf.Tensor, min_area: float) -> tf.Tensor:
    """A crop of 'min_area' to all of the image, aspect 3/4 to 4/3 (Inception style)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
    return tf.slice(image, begin, size)


def center_crop(image: tf.Tensor, image_size: int, crop_padding: int) -> tf.Tensor:
    """The centre square of ratio size / (size + crop_padding) (no crop from 320 px up), of
    an image [H, W, C] or a batch [B, H, W, C]."""
    padding = crop_padding if image_size < 320 else 0
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    side = tf.cast(image_size / (image_size + padding) *
                   tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    side = tf.maximum(side, 1)
    return tf.image.crop_to_bounding_box(image, (height - side + 1) // 2,
                                         (width - side + 1) // 2, side, side)


def resize(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Bilinear resize (of an image or a batch) to a square, values kept in 0..255, float32."""
    return tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=False)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.stateless_random_flip_left_right(image, seed)


def cutout(image: tf.Tensor, seed: tf.Tensor, size_fraction: float = 0.25) -> tf.Tensor:
    """Zeroes a random square of side `size_fraction` of the image (fine-tuning recipe)."""
    shape = tf.shape(image)
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * size_fraction, tf.int32)
    centre = tf.random.stateless_uniform([2], seed, 0, 1) * tf.cast(shape[:2], tf.float32)
    top_left = tf.maximum(tf.cast(centre, tf.int32) - side // 2, 0)
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    inside = ((rows >= top_left[0]) & (rows < top_left[0] + side) &
              (cols >= top_left[1]) & (cols < top_left[1] + side))
    return tf.where(inside[..., None], tf.zeros_like(image), image)


def normalize(image: tf.Tensor) -> tf.Tensor:
    """0..255 -> [-1, 1]: (x - 128) / 128."""
    return (tf.cast(image, tf.float32) - MEAN) / STDDEV


def eval_image(image: tf.Tensor, image_size: int, crop_padding: int) -> tf.Tensor:
    """Evaluation preprocessing of a decoded image or batch (0..255): centre crop, resize,
    normalise. The eval pipeline and the exported serving signatures both use it."""
    return normalize(resize(center_crop(image, image_size, crop_padding), image_size))
