"""The recipes: keras.applications parity of `preprocess_input`, and evaluation that sees
what training saw, for every recipe at small and ImageNet-like sizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY, data_config
from PIL import Image
from test_weights import _randomize_batch_norm, _relative_error

import efficientnetv2
from efficientnetv2.datasets import Augmentation, DataInput
from efficientnetv2.datasets.imagefolder import scan_image_folder
from efficientnetv2.datasets.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STDDEV,
    NORMALIZATIONS,
    describe_recipe,
    normalize,
    random_crop,
    recipe_for,
    resize,
)
from efficientnetv2.weights import copy_from_keras_applications


def _raw(size: int = 224) -> np.ndarray:
    return np.random.RandomState(3).uniform(0, 255, (2, size, size, 3)).astype("float32")


def _v1_b0_with_imagenet_normalization() -> keras.Model:
    """keras.applications' EfficientNetB0 normalising as its ImageNet weights make it do:
    (x / 255 - mean) / std (the weights file holds std as the variance and keras adds a
    rescaling by 1 / sqrt(std); the product is the same)."""
    model = keras.applications.EfficientNetB0(weights=None, classifier_activation=None)
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    norm.adapt_mean.assign(np.array(IMAGENET_MEAN) / 255)
    norm.adapt_variance.assign((np.array(IMAGENET_STDDEV) / 255) ** 2)
    norm.finalize_state()
    return model


@pytest.mark.parametrize("name, reference", [
    ("efficientnetv2-b0", lambda: keras.applications.EfficientNetV2B0(
        weights=None, include_preprocessing=True, classifier_activation=None)),
    ("efficientnetv2-s", lambda: keras.applications.EfficientNetV2S(
        weights=None, include_preprocessing=True, classifier_activation=None,
        input_shape=(224, 224, 3))),
    ("efficientnet-b0", _v1_b0_with_imagenet_normalization),
])
def test_preprocess_input_matches_keras_applications_on_raw_pixels(name, reference):
    src = reference()
    _randomize_batch_norm(src)
    ours = efficientnetv2.get_model(name)
    copy_from_keras_applications(src, ours)
    raw = _raw()
    expected = keras.ops.convert_to_numpy(src(raw, training=False))
    got = keras.ops.convert_to_numpy(ours(efficientnetv2.preprocess_input(raw, name), training=False))
    assert np.max(np.abs(expected)) > 0.1
    assert _relative_error(expected, got) < 1e-4


def test_preprocess_input_follows_the_model_or_the_run_config():
    pixel = np.full((1, 1, 1, 3), 200.0, np.float32)
    v2s = efficientnetv2.preprocess_input(pixel, "efficientnetv2-s").numpy().ravel()
    np.testing.assert_allclose(v2s, (200 - 128) / 128)
    b0 = efficientnetv2.preprocess_input(pixel, "efficientnetv2-b0").numpy().ravel()
    np.testing.assert_allclose(b0, (200 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STDDEV),
                               rtol=1e-6)
    ft = data_config("cifar10ft")
    np.testing.assert_allclose(efficientnetv2.preprocess_input(pixel, ft).numpy().ravel(),
                               200 / 255 / 0.5 - 1, rtol=1e-6)
    custom = efficientnetv2.preprocess_input(pixel, ["r1_k3_s1_e1_i8_o8_c1"]).numpy().ravel()
    np.testing.assert_allclose(custom, v2s)


# --- evaluation sees what training saw --------------------------------------------------
AUGNAMES = ("randaug", "effnetv1_autoaug", "ft")
PERIODS = (2, 4, 8)  # class k: vertical stripes of period PERIODS[k] (of a 32 px image)


def _stripes_folder(root, source_size: int, per_class: int = 6):
    """Class k: stripes whose width a zoom changes, over the whole image, so an eval view
    that crops (zooms) differently from training changes the class. train/ and val/ hold
    the same images: evaluation runs on the training images."""
    rng = np.random.RandomState(0)
    scale = source_size // 32
    for k, period in enumerate(PERIODS):
        for i in range(per_class):
            phase = rng.randint(period)
            cols = ((np.arange(source_size) // scale + phase) // (period // 2)) % 2
            image = np.repeat((cols * 200 + 20)[None, :], source_size, 0)
            image = np.clip(image + rng.randint(-20, 20, image.shape), 0, 255).astype(np.uint8)
            for split in ("train", "val"):
                (root / split / f"c{k}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).convert("RGB").save(root / split / f"c{k}" / f"{i}.png")
    scan = scan_image_folder(str(root), "eval")
    raw = np.stack([np.asarray(Image.open(f).convert("RGB"), np.float32) for f in scan.paths])
    return raw, np.array(scan.labels)


def _unaugmented_view(data: DataInput, images: np.ndarray, size: int) -> np.ndarray:
    """Training's view of an image without augmentation: the whole image resized."""
    recipe = data.recipe
    return normalize(resize(images, size, recipe.resize_method), recipe.normalization).numpy()


@pytest.mark.parametrize("augname", AUGNAMES)
@pytest.mark.parametrize("size, source_size", [(32, 32), (224, 32), (224, 256)])
def test_eval_view_matches_the_unaugmented_training_view(tmp_path, augname, size, source_size):
    raw, _ = _stripes_folder(tmp_path, source_size, per_class=2)
    # the original's eval crop (the imagefolder config's own keeps the whole image)
    config = data_config("imagefolder", f"data.augname={augname},data.crop_padding=32")
    data = DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    evaluated = np.concatenate([x for x, _ in data.dataset(8, size)])
    expected = _unaugmented_view(data, raw, size)
    if source_size > size:  # an ImageNet-like source: the original's centre crop
        crop = size / (size + 32) if augname != "ft" else 1.0
        side = int(crop * source_size)
        offset = (source_size - side + 1) // 2
        expected = _unaugmented_view(data, raw[:, offset:offset + side, offset:offset + side], size)
    np.testing.assert_allclose(evaluated, expected, atol=1e-4)


@pytest.mark.parametrize("augname", AUGNAMES)
@pytest.mark.parametrize("size", [32, 224])
def test_eval_accuracy_equals_the_unaugmented_pass_on_training_images(tmp_path, augname, size):
    """A tiny model trained briefly on un-augmented views of 32 px images, then evaluated on
    its own training images through the eval pipeline at 32 px and 224 px: the same
    accuracy as on the un-augmented views (tolerance: none; the old 50% crop at 32 px and
    87.5% crop at 224 px of these images zoom the stripes into other classes)."""
    raw, labels = _stripes_folder(tmp_path, 32, per_class=4)
    config = data_config("imagefolder", f"data.augname={augname}")
    evaluation = DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    views = _unaugmented_view(evaluation, raw, size)
    model = efficientnetv2.get_model(TINY["blocks"], 3, feature_size=32, dropout_rate=0.0,
                                     bn_momentum=0.5)  # moving statistics settle in a few steps
    model.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(views, labels, epochs=25, batch_size=len(labels), verbose=0)
    unaugmented = np.argmax(model(views, training=False), 1) == labels
    images = np.concatenate([x for x, _ in evaluation.dataset(len(labels), size)])
    evaluated = np.argmax(model(images, training=False), 1) == labels
    assert unaugmented.mean() > 0.5  # it learned something a wrong view would lose
    assert evaluated.mean() == unaugmented.mean()


@pytest.mark.parametrize("augname, size", [("none", 32), ("none", 64), ("effnetv1_autoaug", 32)])
def test_the_training_pipeline_without_augmentation_yields_the_eval_views(tmp_path, augname, size):
    """The real training pipeline (its crop set to the whole image, AutoAugment off) on the
    same images as the eval split: every training image is an eval image or its mirror."""
    _stripes_folder(tmp_path, 32, per_class=2)
    config = data_config("imagefolder", f"data.augname={augname},data.min_crop_area=1.0,"
                                        "data.crop_padding=0,data.auto=false")
    evaluation = DataInput(config.data, "eval", False, data_dir=str(tmp_path))
    training = DataInput(config.data, "train", True, data_dir=str(tmp_path))
    eval_views = np.concatenate([x for x, _ in evaluation.dataset(6, size)])
    views = np.concatenate([eval_views, eval_views[:, :, ::-1]])
    batch, _ = next(iter(training.dataset(6, size, Augmentation("none", 0, 0))))
    for image in batch.numpy():
        assert np.abs(views - image).max(axis=(1, 2, 3)).min() < 1e-4


@pytest.mark.parametrize("augname", ["none", "effnetv1_autoaug"])
def test_pad_crop_translates_without_rescaling(augname):
    """`data.pad_crop=3`: every training image is the source shifted by at most 3 pixels each
    way, zeros coming in at the border (no zoom, unlike the random-area crop), and the shifts
    vary between examples."""
    recipe = recipe_for(data_config(hparam_str=f"data.augname={augname},data.pad_crop=3").data)
    image = np.random.RandomState(0).uniform(1, 255, (20, 20, 3)).astype("float32")
    padded = np.pad(image, [(3, 3), (3, 3), (0, 0)])
    offset, scale = (np.array(v, "float32") for v in NORMALIZATIONS[recipe.normalization])
    shifts = set()
    for example in range(12):
        seed = np.array([example, 7], "int32")
        raw = recipe.train_image(image, 20, seed).numpy() * scale + offset
        found = [(dy, dx) for dy in range(7) for dx in range(7)
                 if np.allclose(raw, padded[dy:dy + 20, dx:dx + 20], atol=1e-3)
                 or np.allclose(raw, padded[dy:dy + 20, dx:dx + 20][:, ::-1], atol=1e-3)]
        assert len(found) == 1, f"example {example} is not a shift of the source"
        shifts.add(found[0])
    assert len(shifts) > 3


def test_negative_pad_crop_is_a_user_error():
    with pytest.raises(efficientnetv2.UserError, match="data.pad_crop"):
        data_config(hparam_str="data.pad_crop=-2")


@pytest.mark.parametrize("augname", ["none", "effnetv1_autoaug", "ft"])
def test_random_erasing_fills_one_rectangle_of_the_papers_sizes(augname):
    """`data.random_erasing`: each training image is the image without erasing (same seed)
    except, in about the given share of images, one rectangle of 2-40% of the area (a side
    cut to the image's at most), aspect 0.3 to 3.3, inside the image, filled with other
    values; boxes vary in place and shape."""
    hparams = f"data.augname={augname},data.pad_crop=2" if augname != "ft" else "data.augname=ft"
    plain = recipe_for(data_config(hparam_str=hparams).data)
    erasing = recipe_for(data_config(hparam_str=hparams + ",data.random_erasing=0.5").data)
    image = np.random.RandomState(1).uniform(1, 255, (24, 32, 3)).astype("float32")
    boxes = set()
    for example in range(60):
        seed = np.array([example, 11], "int32")
        changed = np.any(erasing.train_image(image, 24, seed).numpy()
                         != plain.train_image(image, 24, seed).numpy(), axis=-1)
        if not changed.any():
            continue
        rows, cols = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert changed.sum() == height * width, f"example {example}: not one rectangle"
        if height < 24 and width < 24:  # neither side cut to the image's
            assert 0.02 * 0.8 <= height * width / 24 ** 2 <= 0.4 * 1.2
            assert 0.3 * 0.7 <= height / width <= 3.3 / 0.7
        boxes.add((rows[0], cols[0], height, width))
    assert 18 <= len(boxes) <= 42  # ~30 of 60 erased, each box different


@pytest.mark.parametrize("probability", ["-0.1", "1.5"])
def test_random_erasing_outside_0_to_1_is_a_user_error(probability):
    with pytest.raises(efficientnetv2.UserError, match="data.random_erasing"):
        data_config(hparam_str=f"data.random_erasing={probability}")


def test_start_of_run_line_names_the_shift_crop_erasing_and_test_time_views():
    plain = describe_recipe(data_config())
    assert "shifts" not in plain and "erasing" not in plain and "views" not in plain
    line = describe_recipe(data_config(hparam_str="data.pad_crop=3,data.random_erasing=0.5,"
                                                  "eval.flip_average=true"))
    assert "shifts of up to 3px, random erasing 0.5, eval averages 2 views (mirrored)" in line
    line = describe_recipe(data_config(hparam_str="eval.flip_average=true,eval.shift_average=1"))
    assert "eval averages 10 views (mirrored, shifted 1px each way)" in line
    line = describe_recipe(data_config(hparam_str="eval.flip_average=true,eval.shift_average=1,"
                                                  "eval.shift_diagonal=true"))
    assert "eval averages 18 views (mirrored, shifted 1px each way and diagonally)" in line
    line = describe_recipe(data_config(hparam_str="eval.flip_average=true,eval.shift_diagonal=true"))
    assert "eval averages 2 views (mirrored)" in line  # no diagonal moves without a shift


def test_default_crops_reach_below_a_tenth_of_the_image_as_the_original():
    """The original's default recipe: any area from 5% (min_object_covered 0, 100
    attempts); its EfficientNet-V1 recipe never crops below 10% (min_object_covered 0.1)."""
    image = tf.zeros([200, 200, 3])
    seeds = tf.random.experimental.stateless_split(tf.constant([3, 4], tf.int64), 400)

    def areas(v1):
        return np.array([np.prod(random_crop(image, s, 0.05, v1=v1).shape[:2])
                         for s in seeds]) / 200**2
    default, v1 = areas(False), areas(True)
    assert (default < 0.1).mean() > 0.02 and default.min() >= 0.04
    assert (v1 < 0.099).mean() == 0


def test_ft_randaug_and_ft_autoaug_replace_the_fine_tuning_cutout():
    import ml_collections

    image = tf.fill([20, 20, 3], 90.0)
    seed = tf.constant([5, 6], tf.int64)
    cut = recipe_for(ml_collections.ConfigDict({"augname": "ft"})).train_image(image, 16, seed)
    assert np.ptp(cut.numpy()) > 0  # the cutout's random values
    for name in ("ft_randaug", "ft_autoaug"):
        recipe = recipe_for(ml_collections.ConfigDict({"augname": name}))
        assert recipe.name == "ft"
        seen = []
        out = recipe.train_image(image, 16, seed, lambda im, s: seen.append(1) or im)
        assert seen and np.ptp(out.numpy()) == 0  # the augmentation ran, no cutout


@pytest.mark.parametrize("augname", ["randaug", "effnetv1_randaug"])
@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_training_crops_encoded_images_as_decoded_ones(augname, kind):
    """A JPEG is decoded inside its crop only (tf.io.decode_and_crop_jpeg): the training view
    is the decoded image's, for every seed (a PNG exactly; a JPEG within the decoder's chroma
    rounding at the crop's edges, a few grey levels on few pixels)."""
    import io

    import ml_collections

    rng = np.random.RandomState(0)
    pixels = (rng.uniform(0, 255, (90, 120, 3)) * 0 + np.linspace(0, 255, 120)[None, :, None]
              + rng.normal(0, 20, (90, 120, 3))).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind, quality=95)
    data = tf.constant(buffer.getvalue())
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
    recipe = recipe_for(ml_collections.ConfigDict({"augname": augname, "min_crop_area": 0.05}))
    for seed in tf.random.experimental.stateless_split(tf.constant([7, 8], tf.int64), 6):
        fused = recipe.train_image(data, 32, seed, encoded=True).numpy()
        plain = recipe.train_image(decoded, 32, seed).numpy()
        difference = np.abs(fused - plain)
        if kind == "PNG":
            np.testing.assert_allclose(fused, plain, atol=1e-6)
        else:
            assert difference.max() < 0.1 and difference.mean() < 0.005


def test_each_models_registry_normalisation_is_its_own_recipes():
    """The model registry says how a model's inputs are normalised (preprocess_input and
    fine-tuning read it); each model config's own recipe normalises the same way."""
    from efficientnetv2 import hparams
    from efficientnetv2.families import architecture, model_names, model_normalization

    for name in model_names():
        assert hparams.build_config(name, "imagenet").data.normalization == \
            architecture(name).normalization, name
    custom = hparams.build_config("custom", "imagenet", hparam_str="model.blocks=r1_k3_s1_e1_i16_o16")
    assert custom.data.normalization == model_normalization(["r1_k3_s1_e1_i16_o16"])
