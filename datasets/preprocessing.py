"""Per-image preprocessing: the original's three recipes, chosen by `data.augname`.

- `default` (augname randaug, autoaug or none; V2-S/M/L/XL): random-area crop (or, with
  `data.pad_crop`, a translation), bilinear resize, flip, the augmentation; eval: centre
  crop, resize; values (x - 128) / 128.
- `effnetv1` (augname effnetv1_autoaug or effnetv1_randaug; V2-B0..B3 and every V1 model):
  random-area crop (falling back to the centre crop), bicubic resize, flip, the augmentation;
  eval: centre crop at every size, bicubic resize; ImageNet mean/std normalisation.
- `ft` (fine-tuning; augname ft, ft_randaug or ft_autoaug): resize, flip and cutout (or the
  named augmentation instead) for training; eval: resize only (no crop); values
  (x / 255 - 0.5) / 0.5.

`data.random_erasing` adds random erasing to the training images of every recipe.

The eval centre crop keeps size / (size + crop_padding) of the shorter side, as the original
(which made the rule for ImageNet photos of ~400 px evaluated at 224 px and up), but never
fewer than `size` pixels: a crop never cuts into the pixels the eval size needs. A 32 px
image evaluated at 32 px (or a 28 px image at 64 px) is therefore seen whole, as training's
un-augmented view sees it, while ImageNet-sized images are cropped exactly as the original
does. Random choices use stateless ops keyed by a per-example seed, so a pipeline with a
fixed seed gives the same images in every run.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from efficientnetv2.errors import UserError
from efficientnetv2.inference import TestTimeViews
from efficientnetv2.normalization import (  # noqa: F401 (IMAGENET_*: for the recipes' users)
    IMAGENET_MEAN,
    IMAGENET_STDDEV,
    NORMALIZATIONS,
    normalize,
)

# augname -> (recipe, augmentation inside it)
AUGNAMES = {
    "randaug": ("default", "randaug"), "autoaug": ("default", "autoaug"),
    "ra_aa": ("default", "ra_aa"),  # AutoAugment or RandAugment, even odds per image
    "none": ("default", "none"), "ft": ("ft", "cutout"),
    "ft_randaug": ("ft", "randaug"), "ft_autoaug": ("ft", "autoaug"),  # instead of cutout
    "effnetv1_autoaug": ("effnetv1", "autoaug"), "effnetv1_randaug": ("effnetv1", "randaug"),
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How images of a run are cropped, resized and normalised (see the module docstring)."""

    name: str  # default, effnetv1 or ft
    normalization: str  # a key of NORMALIZATIONS
    resize_method: str  # bilinear or bicubic
    min_crop_area: float  # training's random-area crop: fraction of the image, at least
    crop_padding: int  # eval centre crop keeps size / (size + crop_padding) (0: none)
    crop_below: int | None  # eval crops only below this size (None: at every size)
    pad_crop: int = 0  # training crop: pad this many pixels, crop the image's size (0: area crop)
    random_erasing: float = 0.0  # probability of erasing a random rectangle of a training image

    def eval_image(self, image: tf.Tensor, image_size: int) -> tf.Tensor:
        """Evaluation preprocessing of a decoded image or batch (0..255): centre crop,
        resize, normalise. The eval pipeline and the exported signatures both use it."""
        padding = self.crop_padding
        if self.crop_below is not None and image_size >= self.crop_below:
            padding = 0
        image = center_crop(image, image_size, padding)
        return normalize(resize(image, image_size, self.resize_method), self.normalization)

    def train_image(self, image: tf.Tensor, image_size: int, seed: tf.Tensor,
                    augment_fn=None, encoded: bool = False) -> tf.Tensor:
        """Training preprocessing of a decoded image (0..255) or, with `encoded`, of the
        file's bytes (a JPEG is then decoded only inside its random-area crop: the same
        pixels, less work), normalised. `augment_fn` (RandAugment or AutoAugment at the
        stage's magnitude) runs on 0..255 values."""
        crop_seed, flip_seed, aug_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        area_crop = self.name != "ft" and not self.pad_crop
        if encoded and not area_crop:
            image = decode(image, True)
        if self.name == "ft":  # ft: cutout; ft_randaug, ft_autoaug: that augmentation
            image = random_flip(resize(image, image_size, self.resize_method), flip_seed)
            if augment_fn is None:
                image = cutout(image, aug_seed)
            else:
                image = augment_fn(tf.clip_by_value(image, 0.0, 255.0), aug_seed)
        else:
            if self.pad_crop:
                cropped = translate_crop(image, crop_seed, self.pad_crop)
            else:
                cropped = self._area_crop(image, image_size, crop_seed, encoded)
            image = random_flip(resize(cropped, image_size, self.resize_method), flip_seed)
            if augment_fn is not None:
                image = augment_fn(tf.clip_by_value(image, 0.0, 255.0), aug_seed)
        if self.random_erasing:  # its own seed: the other draws stay as without it
            image = random_erasing(image, tf.random.experimental.stateless_fold_in(seed, 3),
                                   self.random_erasing)
        return normalize(image, self.normalization)


    def _area_crop(self, image: tf.Tensor, image_size: int, seed: tf.Tensor,
                   encoded: bool) -> tf.Tensor:
        """The random-area crop (effnetv1: falling back to its eval crop when no crop was
        found, as the original) of a decoded image or of encoded bytes."""
        v1 = self.name == "effnetv1"

        def box(shape):
            begin, size = area_box(shape, seed, self.min_crop_area, v1)
            if v1:
                whole = tf.reduce_all(tf.equal(size, shape[:2]))
                centre = centre_box(shape, image_size, self.crop_padding)
                begin, size = (tf.where(whole, c, b) for c, b in zip(centre, (begin, size)))
            return begin, size

        def crop(decoded):
            return crop_box(decoded, *box(tf.shape(decoded)))
        if not encoded:
            return crop(image)

        def jpeg():
            begin, size = box(tf.io.extract_jpeg_shape(image))
            return tf.io.decode_and_crop_jpeg(image, tf.concat([begin, size], 0), channels=3)
        cropped = tf.cond(tf.io.is_jpeg(image), jpeg, lambda: crop(decode(image, True)))
        cropped.set_shape([None, None, 3])
        return cropped


def recipe_name(augname: str | None) -> str:
    """The recipe an augname belongs to (None or 'none': the default recipe)."""
    key = augname or "none"
    if key not in AUGNAMES:
        raise UserError(f"data.augname {augname!r} must be one of {', '.join(AUGNAMES)}")
    return AUGNAMES[key][0]


_RECIPE_DEFAULTS = {  # recipe -> (normalization, resize, min crop area, crop below size)
    "default": ("scale_128", "bilinear", 0.05, 320),
    "effnetv1": ("imagenet", "bicubic", 0.08, None),
    "ft": ("scale_255", "bilinear", 1.0, None),
}


def recipe_for(data_config) -> Recipe:
    """The recipe of a data config; unset `data.normalization` and `data.min_crop_area` take
    the recipe's own. Works on saved configs of older runs (keys missing)."""
    name = recipe_name(data_config.get("augname"))
    normalization, method, min_area, crop_below = _RECIPE_DEFAULTS[name]
    normalization = data_config.get("normalization") or normalization
    if normalization not in NORMALIZATIONS:
        raise UserError(f"data.normalization {normalization!r} must be one of "
                        f"{', '.join(NORMALIZATIONS)}")
    min_area = data_config.get("min_crop_area") or min_area
    padding = 0 if name == "ft" else int(data_config.get("crop_padding") or 0)
    pad_crop = int(data_config.get("pad_crop") or 0)
    if pad_crop < 0:
        raise UserError(f"data.pad_crop={pad_crop} must be 0 (random-area crop) or a number "
                        "of pixels to pad before a random crop of the image's own size")
    erasing = float(data_config.get("random_erasing") or 0.0)
    if not 0.0 <= erasing <= 1.0:
        raise UserError(f"data.random_erasing={erasing:g} must be a probability from 0 (off) to 1")
    return Recipe(name, normalization, method, float(min_area), padding, crop_below, pad_crop,
                  erasing)


def eval_views(config) -> TestTimeViews:
    """The views evaluation, export and prediction average (`eval.flip_average`,
    `eval.shift_average`, `eval.shift_diagonal`); shifted-in borders are black, as training's
    shift crop pads."""
    shift, size = int(config.eval.shift_average), config.eval.isize
    if not 0 <= shift < size:
        raise UserError(f"eval.shift_average={shift} must be 0 (off) or a number of pixels "
                        f"under eval.isize={size} to move each image by")
    black = normalize(np.zeros(3, np.float32), recipe_for(config.data).normalization)
    return TestTimeViews(bool(config.eval.flip_average), shift,
                         tuple(float(v) for v in keras.ops.convert_to_numpy(black)),
                         bool(config.eval.shift_diagonal))


def describe_augmentation(augname: str | None, magnitude: float) -> str:
    """'randaug magnitude 7.5', 'effnetv1_autoaug' or 'ft' (cutout): what a stage applies."""
    name = augname or "none"
    return f"{name} magnitude {magnitude:g}" if name.endswith(("randaug", "ra_aa")) else name


def describe_recipe(config) -> str:
    """The recipe for the start-of-run line: its normalisation, the shift crop, random
    erasing and test-time views where on."""
    recipe = recipe_for(config.data)
    extras = "".join([f", shifts of up to {recipe.pad_crop}px" if recipe.pad_crop else "",
                      f", random erasing {recipe.random_erasing:g}" if recipe.random_erasing else "",
                      _describe_views(eval_views(config))])
    return (f"recipe {recipe.name} (data.augname={config.data.augname or 'none'}, "
            f"{recipe.normalization} normalisation, {recipe.resize_method} resize{extras})")


def _describe_views(views: TestTimeViews) -> str:
    """', eval averages 10 views (mirrored, shifted 1px each way)' or '' for one view."""
    if views.count() == 1:
        return ""
    kinds = (["mirrored"] if views.flip else []) + (
        [f"shifted {views.shift}px each way"
         + (" and diagonally" if views.diagonal else "")] if views.shift else [])
    return f", eval averages {views.count()} views ({', '.join(kinds)})"


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


def area_box(shape: tf.Tensor, seed: tf.Tensor, min_area: float, v1: bool = False
             ) -> tuple[tf.Tensor, tf.Tensor]:
    """([top, left], [height, width]) of a crop of `min_area` to all of an image of `shape`,
    aspect 3/4 to 4/3 (Inception style): as the original's default recipe (any area in
    range, 100 attempts) or, with `v1`, its EfficientNet-V1 recipe (at least 10% of the
    image, 10 attempts)."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
        min_object_covered=0.1 if v1 else 0.0, aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0), max_attempts=10 if v1 else 100,
        use_image_if_no_bounding_boxes=True)
    return begin[:2], size[:2]


def crop_box(image: tf.Tensor, begin: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """The [height, width] box at [top, left] `begin` of a decoded image, every channel."""
    return tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([size, [-1]], 0))


def random_crop(image: tf.Tensor, seed: tf.Tensor, min_area: float, v1: bool = False) -> tf.Tensor:
    """The crop `area_box` draws, of a decoded image."""
    return crop_box(image, *area_box(tf.shape(image), seed, min_area, v1))


def translate_crop(image: tf.Tensor, seed: tf.Tensor, pad: int) -> tf.Tensor:
    """The image shifted by up to `pad` pixels each way: zero-padded by `pad` on every side,
    then a random crop of its own size (the usual CIFAR / Fashion-MNIST augmentation)."""
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)


def center_crop(image: tf.Tensor, image_size: int, crop_padding: int) -> tf.Tensor:
    """The centre square of ratio size / (size + crop_padding) of the shorter side, but never
    fewer than `image_size` pixels (nor more than the image has), of an image [H, W, C] or a
    batch [B, H, W, C]."""
    shape = tf.shape(image)
    begin, size = centre_box(shape[-3:], image_size, crop_padding)
    return tf.image.crop_to_bounding_box(image, begin[0], begin[1], size[0], size[1])


def centre_box(shape: tf.Tensor, image_size: int, crop_padding: int
               ) -> tuple[tf.Tensor, tf.Tensor]:
    """([top, left], [side, side]) of `center_crop`'s square in an image of `shape` [H, W, C]."""
    height, width = shape[0], shape[1]
    shorter = tf.minimum(height, width)
    side = tf.cast(image_size / (image_size + crop_padding) * tf.cast(shorter, tf.float32), tf.int32)
    side = tf.maximum(side, tf.minimum(shorter, image_size))
    return tf.stack([(height - side + 1) // 2, (width - side + 1) // 2]), tf.stack([side, side])


def resize(image: tf.Tensor, image_size: int, method: str = "bilinear") -> tf.Tensor:
    """Resize (of an image or a batch) to a square, values in 0..255 (bicubic may overshoot
    a little, as in the original), float32."""
    return tf.image.resize(image, [image_size, image_size], method=method, antialias=False)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    return tf.image.stateless_random_flip_left_right(image, seed)


def _fill_box(image: tf.Tensor, top, left, height, width, seed: tf.Tensor) -> tf.Tensor:
    """The image (float32) with the box of `height` x `width` pixels from (`top`, `left`)
    (clipped at the borders) filled with random values 0..255."""
    shape = tf.shape(image)
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    fill = tf.random.stateless_uniform(shape, seed, 0.0, 255.0)
    return tf.where(inside[..., None], fill, tf.cast(image, tf.float32))


def cutout(image: tf.Tensor, seed: tf.Tensor, size_fraction: float = 0.5) -> tf.Tensor:
    """The fine-tuning recipe's cutout: a square of side `size_fraction` of the image at a
    random centre (clipped at the borders), filled with random values 0..255."""
    shape = tf.shape(image)
    centre_seed, fill_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    side = tf.cast(tf.cast(tf.minimum(shape[0], shape[1]), tf.float32) * size_fraction, tf.int32)
    centre = tf.random.stateless_uniform([2], centre_seed, 0, 1) * tf.cast(shape[:2], tf.float32)
    top_left = tf.maximum(tf.cast(centre, tf.int32) - side // 2, 0)
    return _fill_box(image, top_left[0], top_left[1], side, side, fill_seed)


ERASING_AREA = (0.02, 0.4)  # fraction of the image (Zhong et al., 2017)
ERASING_ASPECT = (0.3, 1 / 0.3)  # height / width, drawn log-uniformly


def random_erasing(image: tf.Tensor, seed: tf.Tensor, probability: float) -> tf.Tensor:
    """Random erasing (Zhong et al., 2017): with `probability`, a rectangle of 2-40% of the
    image's area and aspect 0.3 to 3.3, lying inside the image (a side longer than the
    image's is cut to it), filled with random values 0..255. Written here rather than
    keras.layers.RandomErasing, which takes no per-example seed (resume replays the
    images) and draws no aspect ratio."""
    shape = tf.shape(image)
    draw_seed, fill_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    coin, area, log_aspect, row, col = tf.unstack(tf.random.stateless_uniform([5], draw_seed))
    size = tf.cast(shape[:2], tf.float32)
    area = (ERASING_AREA[0] + area * (ERASING_AREA[1] - ERASING_AREA[0])) * size[0] * size[1]
    low, high = np.log(ERASING_ASPECT[0]), np.log(ERASING_ASPECT[1])
    aspect = tf.exp(low + log_aspect * (high - low))
    height = tf.minimum(tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32), shape[0])
    width = tf.minimum(tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32), shape[1])
    top = tf.cast(row * tf.cast(shape[0] - height + 1, tf.float32), tf.int32)
    left = tf.cast(col * tf.cast(shape[1] - width + 1, tf.float32), tf.int32)
    height = tf.where(coin < probability, height, 0)  # no box: the image as it was
    return _fill_box(image, top, left, height, width, fill_seed)
