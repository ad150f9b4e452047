import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from efficientnetv2.datasets import augment

IMAGE = tf.constant(np.random.RandomState(0).randint(0, 256, (24, 24, 3)), tf.float32)
SEED = tf.constant([1, 2], tf.int64)


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_every_op_keeps_shape_and_range(name):
    out = augment.OPS[name](IMAGE, 7.0, SEED).numpy()
    assert out.shape == (24, 24, 3)
    assert out.min() >= 0 and out.max() <= 255


def test_equalize_matches_pil():
    ours = augment.OPS["Equalize"](IMAGE, 0.0, SEED).numpy().astype(np.uint8)
    reference = np.asarray(ImageOps.equalize(Image.fromarray(IMAGE.numpy().astype(np.uint8))))
    np.testing.assert_array_equal(ours, reference)


def test_ops_follow_their_levels():
    np.testing.assert_array_equal(augment.OPS["Invert"](IMAGE, 0.0, SEED), 255 - IMAGE)
    np.testing.assert_array_equal(augment.OPS["Solarize"](IMAGE, 10.0, SEED), IMAGE)  # threshold 256
    np.testing.assert_array_equal(augment.OPS["Rotate"](IMAGE, 0.0, SEED), IMAGE)
    np.testing.assert_array_equal(augment.OPS["Brightness"](IMAGE, 5.0, SEED), IMAGE)  # factor 1.0


def test_randaugment_strength_grows_with_magnitude():
    def change(magnitude):
        seeds = tf.random.experimental.stateless_split(SEED, 40)
        return np.mean([np.abs(augment.randaugment(IMAGE, s, 2, magnitude).numpy() - IMAGE.numpy()).mean()
                        for s in seeds])
    assert change(15) > change(5) > 0


def test_autoaugment_is_deterministic_per_seed():
    a = augment.autoaugment(IMAGE, SEED).numpy()
    np.testing.assert_array_equal(a, augment.autoaugment(IMAGE, SEED).numpy())


def _gradient_image(size=64):
    """A smooth image in 40..250: no op of the table leaves it as it is at magnitude 9."""
    ramp = np.linspace(40, 250, size, dtype=np.float32)
    return tf.constant(np.stack([ramp[None, :] + 0 * ramp[:, None], ramp[:, None] + 0 * ramp[None, :],
                                 np.full((size, size), 90.0, np.float32)], -1))


def test_randaugment_always_applies_its_chosen_op_as_the_original():
    """The original draws a probability per layer and then ignores it: every chosen op is
    applied. Applying each with p ~ U(0.2, 0.8) would leave about half the images as they were."""
    image = _gradient_image()
    seeds = tf.random.experimental.stateless_split(SEED, 200)
    changed = [np.abs(augment.randaugment(image, s, 1, 9.0).numpy() - image.numpy()).max() > 0
               for s in seeds]
    assert np.mean(changed) > 0.97


def test_translate_and_cutout_use_the_originals_pixel_constants():
    image = _gradient_image(300)
    moved = augment.apply_op("TranslateX", image, 10.0, SEED).numpy()
    shift = 100  # translate_const pixels at level 10, whatever the image size
    if np.all(moved[:, :shift] == augment.FILL):  # moved right: the left columns are filled
        np.testing.assert_array_equal(moved[:, shift:], image.numpy()[:, :-shift])
    else:
        np.testing.assert_array_equal(moved[:, :-shift], image.numpy()[:, shift:])
    cut = augment.apply_op("Cutout", image, 10.0, SEED).numpy()
    filled = np.all(cut == augment.FILL, -1) & np.any(image.numpy() != augment.FILL, -1)
    rows, cols = np.nonzero(filled)
    assert rows.max() - rows.min() + 1 <= 80 and cols.max() - cols.min() + 1 <= 80  # 2 x 40
    assert filled.sum() > 30 * 30  # a box of up to 80 x 80, clipped at the borders
    half = augment.apply_op("Cutout", image, 10.0, SEED, consts=(20.0, 50.0)).numpy()
    assert np.all(half == augment.FILL, -1).sum() < filled.sum()


def test_autoaugment_translates_by_its_own_constant():
    image = _gradient_image(300)
    far = augment.apply_op("TranslateY", image, 9.0, SEED, consts=augment.AUTOAUGMENT_CONSTS)
    filled_rows = np.all(far.numpy() == augment.FILL, axis=(1, 2)).sum()
    assert filled_rows == 225  # 9 / 10 * 250 px


def test_cutmix_pastes_a_box_per_image_and_mixes_labels_by_the_mean_area():
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(0, 1, (8, 32, 32, 3)), tf.float32)
    labels = tf.one_hot(np.arange(8), 8)
    mixed, mixed_labels = augment.cutmix(images, labels, 1.0, SEED)
    mixed, reverse, original = mixed.numpy(), images.numpy()[::-1], images.numpy()
    from_partner = np.all(mixed == reverse, -1) & np.any(reverse != original, -1)
    boxes = [np.argwhere(m) for m in from_partner]
    assert len({(b.min(0).tolist() if len(b) else None).__repr__() for b in boxes}) > 3
    for i, box in enumerate(boxes):  # each pasted region is a rectangle
        if len(box):
            (top, left), (bottom, right) = box.min(0), box.max(0)
            assert from_partner[i, top:bottom + 1, left:right + 1].all()
    area = from_partner.mean()
    expected = labels.numpy() * (1 - area) + labels.numpy()[::-1] * area
    np.testing.assert_allclose(mixed_labels.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("name, level, reference", [
    ("Posterize", 10.0, lambda im: ImageOps.posterize(im, 4)),
    ("Posterize", 7.5, lambda im: ImageOps.posterize(im, 3)),  # keeps 3 bits: shift 5
    ("Posterize", 5.0, lambda im: ImageOps.posterize(im, 2)),
    ("Posterize", 2.5, lambda im: ImageOps.posterize(im, 1)),
    ("Solarize", 5.0, lambda im: ImageOps.solarize(im, 128)),
    ("Solarize", 3.0, lambda im: ImageOps.solarize(im, int(3.0 / 10 * 256))),
    ("AutoContrast", 0.0, lambda im: ImageOps.autocontrast(im)),
    ("Invert", 0.0, lambda im: ImageOps.invert(im)),
    ("Color", 3.0, lambda im: ImageEnhance.Color(im).enhance(3.0 / 10 * 1.8 + 0.1)),
    ("Color", 9.0, lambda im: ImageEnhance.Color(im).enhance(9.0 / 10 * 1.8 + 0.1)),
    ("Brightness", 8.0, lambda im: ImageEnhance.Brightness(im).enhance(8.0 / 10 * 1.8 + 0.1)),
    ("Brightness", 2.0, lambda im: ImageEnhance.Brightness(im).enhance(2.0 / 10 * 1.8 + 0.1)),
    ("Contrast", 2.0, lambda im: ImageEnhance.Contrast(im).enhance(2.0 / 10 * 1.8 + 0.1)),
    ("Sharpness", 9.0, lambda im: ImageEnhance.Sharpness(im).enhance(9.0 / 10 * 1.8 + 0.1)),
    ("Sharpness", 1.0, lambda im: ImageEnhance.Sharpness(im).enhance(1.0 / 10 * 1.8 + 0.1)),
    # the original's solarize_add: add int(level / 10 * 110) below 128, clipped at 255
    ("SolarizeAdd", 10.0, lambda im: np.where(np.asarray(im) < 128,
                                              np.minimum(np.asarray(im, int) + 110, 255), im)),
    ("SolarizeAdd", 4.0, lambda im: np.where(np.asarray(im) < 128,
                                             np.minimum(np.asarray(im, int) + 44, 255), im)),
])
def test_ops_match_pil_at_a_level(name, level, reference):
    """The original's ops are PIL's ImageOps / ImageEnhance written in TensorFlow: each agrees
    with PIL (or the original's formula) at levels that change the image, every pixel
    (Sharpness's border included: PIL keeps it), within 1-2 grey levels of rounding."""
    pixels = np.random.RandomState(1).randint(30, 220, (24, 24, 3)).astype(np.uint8)
    ours = augment.OPS[name](tf.constant(pixels, tf.float32), level, SEED).numpy()
    expected = np.asarray(reference(Image.fromarray(pixels)), np.float32)
    assert np.abs(ours - pixels).mean() > 1  # the op did something
    # PIL truncates to uint8 where the float pipeline keeps the fraction
    tolerance = 2.5 if name == "Contrast" else 1.01  # PIL's contrast rounds the mean first
    np.testing.assert_allclose(np.floor(ours), expected, atol=tolerance)


def _pil_geometric(image: Image.Image, name: str, level: float, sign: int) -> np.ndarray:
    """PIL's rotation (degrees, counter-clockwise) or shear (x' = x + s y) at `level` with
    the original's ranges (30 degrees, 0.3 at level 10), nearest pixel, filled with 128."""
    if name == "Rotate":
        return np.asarray(image.rotate(sign * level / 10 * 30, resample=Image.NEAREST,
                                       fillcolor=(128,) * 3))
    s = sign * level / 10 * 0.3
    data = (1, s, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, s, 1, 0)
    return np.asarray(image.transform(image.size, Image.AFFINE, data, resample=Image.NEAREST,
                                      fillcolor=(128,) * 3))


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY"])
@pytest.mark.parametrize("level", [3.0, 6.0, 10.0])
def test_geometric_ops_match_pil_at_each_level(name, level):
    """Rotate and Shear against PIL's transforms at the same angle or shear (the sign is the
    op's coin flip): at least 95% of the pixels agree (the rest sit on a rounding edge), where
    the other sign or the untransformed image agree on far fewer."""
    blocks = np.random.RandomState(0).randint(0, 256, (10, 10, 3)).astype(np.uint8)
    pixels = np.kron(blocks, np.ones((4, 4, 1), np.uint8))  # 40x40 of 4-pixel squares
    ours = augment.OPS[name](tf.constant(pixels, tf.float32), level, SEED).numpy()

    def agreement(other):
        return np.mean(np.abs(ours - other).max(-1) <= 1)
    matches = sorted(agreement(_pil_geometric(Image.fromarray(pixels), name, level, sign))
                     for sign in (1, -1))
    assert matches[1] >= 0.95
    assert matches[0] < 0.5 and agreement(pixels) < 0.6
    assert (ours == augment.FILL).all(-1).any()  # corners come from outside the image


def test_mixup_pixels_agree_with_the_label_weights():
    rng = np.random.RandomState(0)
    images = tf.constant(rng.uniform(0, 1, (6, 8, 8, 3)), tf.float32)
    labels = tf.one_hot(np.arange(6), 6)
    mixed, mixed_labels = augment.mixup(images, labels, 0.8, SEED)
    weights = np.diag(mixed_labels.numpy())  # each example's own class keeps weight w
    assert np.all(weights >= 0.5) and np.all(weights <= 1.0)
    expected = (images.numpy() * weights[:, None, None, None]
                + images.numpy()[::-1] * (1 - weights[:, None, None, None]))
    np.testing.assert_allclose(mixed.numpy(), expected, rtol=1e-5, atol=1e-6)
