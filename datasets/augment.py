"""RandAugment and AutoAugment with the original's op table, plus mixup and cutmix.

Keras 3's `RandAugment` layer takes a single strength in [0, 1] and picks the same ops for a
whole batch; the original picks ops per image and uses a magnitude scale where 10 is the
reference strength and progressive learning ramps it from 5 to 15-25. Those semantics are
reproduced here with per-image, stateless (seeded) randomness. AutoAugment (policy v0 of
the original) has no Keras layer. Mixup and cutmix follow the original too; they are written
here rather than taken from Keras 3's `MixUp`/`CutMix` layers because those draw from a
stateful seed generator, which a resumed run could not replay.
"""

from __future__ import annotations

import math

import tensorflow as tf

from .preprocessing import cutout

MAX_LEVEL = 10.0
FILL = 128.0


def _blend(base, image, factor):
    return tf.clip_by_value(base + factor * (image - base), 0.0, 255.0)


def _enhance_factor(level):
    return level / MAX_LEVEL * 1.8 + 0.1


def _signed(value, seed):
    negate = tf.random.stateless_uniform([], seed) < 0.5
    return tf.where(negate, -value, value)


def _affine(image, transform):
    transform = tf.cast(tf.concat([transform, [0.0, 0.0]], 0), tf.float32)[None]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=tf.shape(image)[:2],
        interpolation="NEAREST", fill_mode="CONSTANT", fill_value=FILL)
    return out[0]


def _gray(image):
    return tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))


def _rotate(image, level, seed):
    angle = _signed(level / MAX_LEVEL * 30.0, seed) * math.pi / 180.0
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    cy, cx = (size[0] - 1) / 2, (size[1] - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _affine(image, [cos, sin, cx - cos * cx - sin * cy,
                           -sin, cos, cy + sin * cx - cos * cy])


def _shear(image, level, seed, axis):
    s = _signed(level / MAX_LEVEL * 0.3, seed)
    return _affine(image, [1.0, s, 0.0, 0.0, 1.0, 0.0] if axis == 0 else
                   [1.0, 0.0, 0.0, s, 1.0, 0.0])


def _translate(image, level, seed, axis):
    extent = tf.cast(tf.shape(image)[1 - axis], tf.float32)
    t = _signed(level / MAX_LEVEL * 0.45 * extent, seed)  # 100 px of 224 at level 10
    return _affine(image, [1.0, 0.0, t, 0.0, 1.0, 0.0] if axis == 0 else
                   [1.0, 0.0, 0.0, 0.0, 1.0, t])


def _posterize(image, level):
    shift = 8 - int(level / MAX_LEVEL * 4)
    return tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(
        tf.cast(image, tf.uint8), shift), shift), tf.float32)


def _equalize(image):
    """Per-channel histogram equalization (as PIL's ImageOps.equalize)."""
    def channel(c):
        c = tf.cast(c, tf.int32)
        hist = tf.math.bincount(c, minlength=256, maxlength=256)
        nonzero = tf.boolean_mask(hist, hist > 0)
        step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255
        lut = (tf.cumsum(hist) + step // 2) // tf.maximum(step, 1)
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.cast(tf.where(step == 0, c, tf.gather(lut, c)), tf.float32)
    return tf.stack([channel(image[..., i]) for i in range(3)], -1)


def _autocontrast(image):
    low = tf.reduce_min(image, axis=[0, 1])
    high = tf.reduce_max(image, axis=[0, 1])
    scale = tf.where(high > low, 255.0 / tf.maximum(high - low, 1e-3), 1.0)
    return tf.where(high > low, (image - low) * scale, image)


def _sharpness(image, level):
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    blurred = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "SAME")[0]
    return _blend(blurred, image, _enhance_factor(level))


def _cutout(image, level, seed):
    return cutout(image, seed, level / MAX_LEVEL * 0.45)  # level 0 cuts nothing


OPS = {  # name -> fn(image float32 0..255, level, seed)
    "AutoContrast": lambda im, lv, sd: _autocontrast(im),
    "Equalize": lambda im, lv, sd: _equalize(im),
    "Invert": lambda im, lv, sd: 255.0 - im,
    "Rotate": _rotate,
    "Posterize": lambda im, lv, sd: _posterize(im, lv),
    "Solarize": lambda im, lv, sd: tf.where(im < lv / MAX_LEVEL * 256.0, im, 255.0 - im),
    "SolarizeAdd": lambda im, lv, sd: tf.where(
        im < 128.0, tf.minimum(im + float(int(lv / MAX_LEVEL * 110)), 255.0), im),
    "Color": lambda im, lv, sd: _blend(_gray(im), im, _enhance_factor(lv)),
    "Contrast": lambda im, lv, sd: _blend(tf.reduce_mean(_gray(im)), im, _enhance_factor(lv)),
    "Brightness": lambda im, lv, sd: _blend(tf.zeros_like(im), im, _enhance_factor(lv)),
    "Sharpness": lambda im, lv, sd: _sharpness(im, lv),
    "ShearX": lambda im, lv, sd: _shear(im, lv, sd, 0),
    "ShearY": lambda im, lv, sd: _shear(im, lv, sd, 1),
    "TranslateX": lambda im, lv, sd: _translate(im, lv, sd, 0),
    "TranslateY": lambda im, lv, sd: _translate(im, lv, sd, 1),
    "Cutout": _cutout,
}
RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateX", "TranslateY", "Cutout", "SolarizeAdd")

# AutoAugment ImageNet policy v0 of the original: (op, probability, level) pairs.
AUTOAUGMENT_POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)), (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)), (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)), (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)), (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)), (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)), (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)), (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)), (("Rotate", 1.0, 7), ("TranslateY", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)), (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)), (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)), (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)), (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)


def _seeds(seed, count):
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _maybe(image, name, probability, level, seed):
    apply_seed, op_seed = _seeds(seed, 2)
    applied = tf.random.stateless_uniform([], apply_seed) < probability
    return tf.cond(applied, lambda: OPS[name](image, level, op_seed), lambda: image)


def randaugment(image, seed, num_layers: int, magnitude: float):
    """`num_layers` ops chosen per image from the original's 16, each applied with a
    probability drawn from [0.2, 0.8], at `magnitude` (10 = reference strength)."""
    for layer_seed in _seeds(seed, num_layers):
        choice_seed, prob_seed, op_seed = _seeds(layer_seed, 3)
        index = tf.random.stateless_uniform([], choice_seed, 0, len(RANDAUGMENT_OPS), tf.int32)
        probability = tf.random.stateless_uniform([], prob_seed, 0.2, 0.8)
        branches = [lambda n=name, x=image, p=probability, s=op_seed:
                    _maybe(x, n, p, float(magnitude), s) for name in RANDAUGMENT_OPS]
        image = tf.switch_case(index, branches)
    return image


def autoaugment(image, seed):
    """One sub-policy of AutoAugment policy v0, chosen per image."""
    choice_seed, first_seed, second_seed = _seeds(seed, 3)
    index = tf.random.stateless_uniform([], choice_seed, 0, len(AUTOAUGMENT_POLICY_V0), tf.int32)

    def branch(policy):
        (op1, p1, l1), (op2, p2, l2) = policy
        return lambda: _maybe(_maybe(image, op1, p1, float(l1), first_seed),
                              op2, p2, float(l2), second_seed)
    return tf.switch_case(index, [branch(p) for p in AUTOAUGMENT_POLICY_V0])


def augment_function(name: str, num_layers: int, magnitude: float):
    """fn(image 0..255, seed) for 'randaug' or 'autoaug'; None for anything else (the recipe
    itself does the rest: crop and flip, or the fine-tuning cutout)."""
    if name == "randaug":
        return lambda image, seed: randaugment(image, seed, num_layers, magnitude)
    if name == "autoaug":
        return autoaugment
    return None


def _beta(seed, shape, alpha: float):
    """Stateless Beta(alpha, alpha) samples, as a ratio of two gamma draws."""
    first, second = _seeds(seed, 2)
    a = tf.random.stateless_gamma(shape, first, alpha)
    b = tf.random.stateless_gamma(shape, second, alpha)
    return a / (a + b)


def mixup(images, labels, alpha: float, seed):
    """Each example blended with the batch reversed, weight max(w, 1 - w), w ~ Beta(alpha)."""
    weight = _beta(seed, [tf.shape(images)[0], 1], alpha)
    weight = tf.maximum(weight, 1.0 - weight)
    mixed = images * weight[:, :, None, None] + tf.reverse(images, [0]) * (1.0 - weight[:, :, None, None])
    return mixed, labels * weight + tf.reverse(labels, [0]) * (1.0 - weight)


def cutmix(images, labels, alpha: float, seed):
    """A box (area 1 - w, w ~ Beta(alpha)) pasted from the reversed batch; labels by area."""
    beta_seed, y_seed, x_seed = _seeds(seed, 3)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    ratio = tf.sqrt(1.0 - _beta(beta_seed, [], alpha))
    cut_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
    cut_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
    cy = tf.random.stateless_uniform([], y_seed, 0, height, tf.int32)
    cx = tf.random.stateless_uniform([], x_seed, 0, width, tf.int32)
    y0, y1 = tf.maximum(cy - cut_h // 2, 0), tf.minimum(cy + cut_h // 2, height)
    x0, x1 = tf.maximum(cx - cut_w // 2, 0), tf.minimum(cx + cut_w // 2, width)
    rows = tf.logical_and(tf.range(height) >= y0, tf.range(height) < y1)
    cols = tf.logical_and(tf.range(width) >= x0, tf.range(width) < x1)
    box = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), images.dtype)[None, :, :, None]
    mixed = images * (1.0 - box) + tf.reverse(images, [0]) * box
    pasted = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
    return mixed, labels * (1.0 - pasted) + tf.reverse(labels, [0]) * pasted


class BatchMixer:
    """Mixup and/or cutmix on a batch of images and one-hot labels, as in the original.

    With both on, the first half of the batch gets mixup and the second cutmix. Randomness
    is stateless, drawn from (seed, batch index), so a resumed pipeline mixes the same way.
    Mixed labels still sum to 1.
    """

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, seed: int):
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.seed = seed

    @property
    def active(self) -> bool:
        return bool(self.mixup_alpha or self.cutmix_alpha)

    def __call__(self, batch_index, batch):
        images, labels = batch
        seed = tf.stack([tf.constant(self.seed, tf.int64) + 7919, tf.cast(batch_index, tf.int64)])
        mixup_seed, cutmix_seed = _seeds(seed, 2)
        if self.mixup_alpha and self.cutmix_alpha:
            half = tf.shape(images)[0] // 2
            first = mixup(images[:half], labels[:half], self.mixup_alpha, mixup_seed)
            second = cutmix(images[half:], labels[half:], self.cutmix_alpha, cutmix_seed)
            return tf.concat([first[0], second[0]], 0), tf.concat([first[1], second[1]], 0)
        if self.mixup_alpha:
            return mixup(images, labels, self.mixup_alpha, mixup_seed)
        return cutmix(images, labels, self.cutmix_alpha, cutmix_seed)
