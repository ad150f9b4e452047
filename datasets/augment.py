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

MAX_LEVEL = 10.0
FILL = 128.0
# The original's constants, in pixels at level 10: Cutout's half side and the translation.
RANDAUGMENT_CONSTS = (40.0, 100.0)  # (cutout_const, translate_const)
AUTOAUGMENT_CONSTS = (100.0, 250.0)


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


def _translate(image, level, seed, axis, translate_const):
    t = _signed(level / MAX_LEVEL * translate_const, seed)  # pixels
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
    """PIL's SMOOTH filter blended with the image; the border pixels keep their values (as
    PIL and the original, which filter the interior only)."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    inner = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    inside = tf.pad(tf.ones_like(inner, tf.bool), [[1, 1], [1, 1], [0, 0]])
    blurred = tf.where(inside, tf.pad(inner, [[1, 1], [1, 1], [0, 0]]), image)
    return _blend(blurred, image, _enhance_factor(level))


def _cutout(image, level, seed, cutout_const):
    """The original's Cutout: a square of half side `level / 10 * cutout_const` pixels
    around a random pixel (clipped at the borders), filled with 128."""
    pad = tf.cast(level / MAX_LEVEL * cutout_const, tf.int32)
    shape = tf.shape(image)
    centre = tf.random.stateless_uniform([2], seed, 0, 2**31 - 1, tf.int32) % shape[:2]
    rows = tf.range(shape[0])[:, None]
    cols = tf.range(shape[1])[None, :]
    inside = ((rows >= centre[0] - pad) & (rows < centre[0] + pad)
              & (cols >= centre[1] - pad) & (cols < centre[1] + pad))
    return tf.where(inside[..., None], FILL, image)


OPS = {  # name -> fn(image float32 0..255, level, seed, consts=(cutout, translate) in pixels)
    "AutoContrast": lambda im, lv, sd: _autocontrast(im),
    "Equalize": lambda im, lv, sd: _equalize(im),
    "Invert": lambda im, lv, sd: 255.0 - im,
    "Rotate": _rotate,
    "Posterize": lambda im, lv, sd: _posterize(im, lv),
    "Solarize": lambda im, lv, sd: tf.where(im < float(int(lv / MAX_LEVEL * 256)), im, 255.0 - im),
    "SolarizeAdd": lambda im, lv, sd: tf.where(
        im < 128.0, tf.minimum(im + float(int(lv / MAX_LEVEL * 110)), 255.0), im),
    "Color": lambda im, lv, sd: _blend(_gray(im), im, _enhance_factor(lv)),
    "Contrast": lambda im, lv, sd: _blend(tf.reduce_mean(_gray(im)), im, _enhance_factor(lv)),
    "Brightness": lambda im, lv, sd: _blend(tf.zeros_like(im), im, _enhance_factor(lv)),
    "Sharpness": lambda im, lv, sd: _sharpness(im, lv),
    "ShearX": lambda im, lv, sd: _shear(im, lv, sd, 0),
    "ShearY": lambda im, lv, sd: _shear(im, lv, sd, 1),
    "TranslateX": lambda im, lv, sd, c=RANDAUGMENT_CONSTS: _translate(im, lv, sd, 0, c[1]),
    "TranslateY": lambda im, lv, sd, c=RANDAUGMENT_CONSTS: _translate(im, lv, sd, 1, c[1]),
    "Cutout": lambda im, lv, sd, c=RANDAUGMENT_CONSTS: _cutout(im, lv, sd, c[0]),
}
_SIZED = ("TranslateX", "TranslateY", "Cutout")  # the ops that take the pixel constants


def apply_op(name: str, image, level, seed, consts=RANDAUGMENT_CONSTS):
    """Op `name` at `level`; Cutout and Translate with `consts` (cutout, translate) pixels."""
    if name in _SIZED:
        return OPS[name](image, level, seed, consts)
    return OPS[name](image, level, seed)


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


def _maybe(image, name, probability, level, seed, consts):
    apply_seed, op_seed = _seeds(seed, 2)
    applied = tf.random.stateless_uniform([], apply_seed) < probability
    return tf.cond(applied, lambda: apply_op(name, image, level, op_seed, consts), lambda: image)


def randaugment(image, seed, num_layers: int, magnitude: float, consts=RANDAUGMENT_CONSTS):
    """`num_layers` ops chosen per image from the original's 16, each always applied at
    `magnitude` (10 = reference strength), as the original's
    `distort_image_with_randaugment` (which draws a probability and then ignores it)."""
    for layer_seed in _seeds(seed, num_layers):
        choice_seed, op_seed = _seeds(layer_seed, 2)
        index = tf.random.stateless_uniform([], choice_seed, 0, len(RANDAUGMENT_OPS), tf.int32)
        branches = [lambda n=name, x=image, s=op_seed: apply_op(n, x, float(magnitude), s, consts)
                    for name in RANDAUGMENT_OPS]
        image = tf.switch_case(index, branches)
    return image


def autoaugment(image, seed, consts=AUTOAUGMENT_CONSTS):
    """One sub-policy of AutoAugment policy v0, chosen per image; each of its two ops
    applied with its listed probability."""
    choice_seed, first_seed, second_seed = _seeds(seed, 3)
    index = tf.random.stateless_uniform([], choice_seed, 0, len(AUTOAUGMENT_POLICY_V0), tf.int32)

    def branch(policy):
        (op1, p1, l1), (op2, p2, l2) = policy
        return lambda: _maybe(_maybe(image, op1, p1, float(l1), first_seed, consts),
                              op2, p2, float(l2), second_seed, consts)
    return tf.switch_case(index, [branch(p) for p in AUTOAUGMENT_POLICY_V0])


def augment_function(name: str, num_layers: int, magnitude: float, const_scale: float = 1.0):
    """fn(image 0..255, seed) for 'randaug', 'autoaug' or 'ra_aa'; None for anything else (the recipe
    itself does the rest: crop and flip, or the fine-tuning cutout). `const_scale`
    multiplies the pixel constants of Cutout and Translate (1: the original's pixels)."""
    if name == "randaug":
        consts = tuple(c * const_scale for c in RANDAUGMENT_CONSTS)
        return lambda image, seed: randaugment(image, seed, num_layers, magnitude, consts)
    if name == "autoaug":
        consts = tuple(c * const_scale for c in AUTOAUGMENT_CONSTS)
        return lambda image, seed: autoaugment(image, seed, consts)
    if name == "ra_aa":  # the original's: AutoAugment or RandAugment, even odds per image
        rand = augment_function("randaug", num_layers, magnitude, const_scale)
        auto = augment_function("autoaug", num_layers, magnitude, const_scale)

        def either(image, seed):
            coin_seed, op_seed = _seeds(seed, 2)
            heads = tf.random.stateless_uniform([], coin_seed) < 0.5
            return tf.cond(heads, lambda: auto(image, op_seed), lambda: rand(image, op_seed))
        return either
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
    """A box per image (centre uniform, side sqrt(1 - w) of the image, w ~ Beta(alpha),
    clipped at the borders) pasted from the reversed batch; every label mixed by the
    batch's mean pasted area, as the original (its `cutmix_mask` per image in the parser,
    `cutmix` on the batch)."""
    beta_seed, y_seed, x_seed = _seeds(seed, 3)
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    ratio = tf.sqrt(1.0 - _beta(beta_seed, [batch], alpha))
    half_h = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32) // 2
    half_w = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32) // 2
    cy = tf.random.stateless_uniform([batch], y_seed, 0, height, tf.int32)
    cx = tf.random.stateless_uniform([batch], x_seed, 0, width, tf.int32)
    rows, cols = tf.range(height)[None, :], tf.range(width)[None, :]
    in_rows = (rows >= (cy - half_h)[:, None]) & (rows < (cy + half_h)[:, None])
    in_cols = (cols >= (cx - half_w)[:, None]) & (cols < (cx + half_w)[:, None])
    box = tf.cast(in_rows[:, :, None] & in_cols[:, None, :], images.dtype)[..., None]
    mixed = images * (1.0 - box) + tf.reverse(images, [0]) * box
    pasted = tf.cast(tf.reduce_mean(box), labels.dtype)
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
