"""Pretrained weights: automl checkpoint import, keras.applications ImageNet weights, Keras
weight files, and `train.ft_init_ckpt` with each."""

import os
from unittest import mock

import keras
import keras.src.applications.efficientnet_v2 as keras_efficientnet_v2
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_BLOCKS

import efficientnetv2
from efficientnetv2.automl_import import automl_names
from efficientnetv2.errors import UserError
from efficientnetv2.layers import FusedMBConv
from efficientnetv2.pretrained import load_pretrained
from efficientnetv2.training.restore import load_initial_weights

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def original_names(model) -> set[str]:
    """The variable names the original code creates for `model`, written out from its
    construction order (effnetv2_model.py): a per-block counter for conv2d and for
    tpu_batch_normalization, the depthwise conv and SE by fixed names."""
    names = {"stem/conv2d/kernel", "head/conv2d/kernel"}
    names |= {f"{part}/tpu_batch_normalization/{v}" for part in ("stem", "head") for v in BN_VARIABLES}
    if any(layer.name == "predictions" for layer in model.layers):
        names |= {"head/dense/kernel", "head/dense/bias"}
    for layer in model.layers:
        if not layer.name.startswith("blocks_"):
            continue
        convs, norms, block = [], [], layer.block
        scope = layer.name

        def conv():
            convs.append(f"{scope}/conv2d" + (f"_{len(convs)}" if convs else "") + "/kernel")

        def norm():
            base = f"{scope}/tpu_batch_normalization" + (f"_{len(norms)}" if norms else "")
            norms.append(base)
        if block.expand_ratio != 1:
            conv()
            norm()
        if not isinstance(layer, FusedMBConv):
            convs.append(f"{scope}/depthwise_conv2d/depthwise_kernel")
            norm()
        if block.se_ratio:
            convs += [f"{scope}/se/conv2d/kernel", f"{scope}/se/conv2d/bias",
                      f"{scope}/se/conv2d_1/kernel", f"{scope}/se/conv2d_1/bias"]
        conv_count = sum(1 for c in convs if "/conv2d" in c and "/se/" not in c)
        convs.append(f"{scope}/conv2d" + (f"_{conv_count}" if conv_count else "") + "/kernel")
        norm()
        names |= set(convs) | {f"{n}/{v}" for n in norms for v in BN_VARIABLES}
    return names


@pytest.mark.parametrize("name", [n for n in efficientnetv2.model_names() if n != "efficientnet-l2"])
def test_automl_names_cover_every_variable_once(name):
    model = efficientnetv2.get_model(name, num_classes=10)
    mapping = automl_names(model)
    assert set(mapping) == {w.path for w in model.weights}  # none left unmapped
    assert len(set(mapping.values())) == len(mapping)  # none used twice
    assert set(mapping.values()) == original_names(model)


def test_known_names_of_the_released_v2_s_checkpoint():
    values = set(automl_names(efficientnetv2.get_model("efficientnetv2-s")).values())
    for name in ("blocks_0/conv2d/kernel", "blocks_0/tpu_batch_normalization/moving_variance",
                 "blocks_2/conv2d_1/kernel", "blocks_2/tpu_batch_normalization_1/beta",
                 "blocks_10/depthwise_conv2d/depthwise_kernel", "blocks_10/se/conv2d_1/bias",
                 "blocks_10/tpu_batch_normalization_2/gamma", "blocks_39/conv2d_1/kernel",
                 "head/dense/kernel", "stem/tpu_batch_normalization/moving_mean"):
        assert name in values, name
    assert "blocks_40/conv2d/kernel" not in values  # V2-S has 40 blocks


def write_automl_checkpoint(model, prefix: str, scope: str, seed: int = 0, classes=None) -> dict:
    """A name-based checkpoint as the original writes it (values, EMA shadows, optimizer
    slots, global_step); returns {our weight path: EMA value}."""
    rng = np.random.default_rng(seed)
    names, tensors, ema = [], [], {}
    for weight in model.weights:
        name = f"{scope}/{automl_names(model)[weight.path]}"
        shape = tuple(weight.shape)
        if classes and name.endswith("dense/kernel"):
            shape = (shape[0], classes)
        if classes and name.endswith("dense/bias"):
            shape = (classes,)
        value = rng.normal(size=shape).astype("float32")
        average = rng.normal(size=shape).astype("float32")
        names += [name, f"{name}/ExponentialMovingAverage", f"{name}/RMSProp"]
        tensors += [value, average, np.zeros(shape, "float32")]
        ema[weight.path] = average
    names.append("global_step")
    tensors.append(np.int64(1000))
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)
    return ema


@pytest.mark.parametrize("name", ["efficientnetv2-b0", "efficientnet-b0"])
def test_automl_checkpoint_loads_its_ema_weights(name, tmp_path):
    source = efficientnetv2.get_model(name)
    ema = write_automl_checkpoint(source, str(tmp_path / "model.ckpt-1000"), name)
    model = efficientnetv2.get_model(name, weights=str(tmp_path))  # a folder
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), ema[weight.path])
    keras.backend.clear_session()
    ten = efficientnetv2.get_model(name, num_classes=10, weights=str(tmp_path / "model.ckpt-1000"))
    for weight in ten.weights:
        if not weight.path.startswith("predictions"):
            np.testing.assert_array_equal(weight.numpy(), ema[weight.path])


def test_automl_checkpoint_of_another_model_is_refused(tmp_path):
    source = efficientnetv2.get_model("efficientnetv2-b0")
    write_automl_checkpoint(source, str(tmp_path / "model.ckpt-1"), "efficientnetv2-b0")
    with pytest.raises(UserError, match="has no variable efficientnetv2-b0/blocks_1|has shape"):
        efficientnetv2.get_model("efficientnetv2-b1", weights=str(tmp_path / "model.ckpt-1"))


def _tiny_checkpoint(tmp_path):
    model = efficientnetv2.get_model(TINY_BLOCKS, 10, feature_size=32)
    return write_automl_checkpoint(model, str(tmp_path / "tiny.ckpt-5"), "custom-tiny", classes=7)


def test_ft_init_ckpt_accepts_automl_checkpoints_and_keras_files(tmp_path):
    ema = _tiny_checkpoint(tmp_path)
    target = efficientnetv2.get_model(TINY_BLOCKS, 10, feature_size=32)
    messages = []
    load_initial_weights(target, str(tmp_path / "tiny.ckpt-5"), None, log=messages.append)
    assert "EMA of automl checkpoint" in messages[0]
    assert "new predictions (7 classes in the source, 10 here)" in messages[0]
    for weight in target.weights:
        if not weight.path.startswith("predictions"):
            np.testing.assert_array_equal(weight.numpy(), ema[weight.path])
    target.save_weights(str(tmp_path / "tiny.weights.h5"))
    copy = efficientnetv2.get_model(TINY_BLOCKS, 10, feature_size=32)
    load_initial_weights(copy, str(tmp_path / "tiny.weights.h5"), None, log=messages.append)
    for a, b in zip(copy.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(UserError, match="weights 'nowhere' not found"):
        load_initial_weights(copy, "nowhere", None)
    with pytest.raises(UserError, match="has 7 classes in its classifier, the dataset 10: fine-tune"):
        load_pretrained(copy, None, str(tmp_path / "tiny.ckpt-5"), keep_classifier=True)


def _fake_imagenet_file(tmp_path, include_top: bool):
    """keras.applications' EfficientNetV2-B0 with random weights, as Keras would cache it."""
    app = keras.applications.EfficientNetV2B0(include_top=include_top, weights=None,
                                              include_preprocessing=False)
    rng = np.random.default_rng(1)
    for weight in app.weights:
        noise = rng.normal(scale=0.05, size=weight.shape).astype("float32")
        weight.assign(noise + (1.0 if "variance" in weight.path else 0.0))
    path = str(tmp_path / f"b0_{include_top}.weights.h5")
    app.save_weights(path)
    return path, app


@pytest.mark.parametrize("classes", [1000, 10])
def test_imagenet_weights_come_from_keras_applications(tmp_path, classes):
    path, app = _fake_imagenet_file(tmp_path, include_top=classes == 1000)
    with mock.patch.object(keras_efficientnet_v2.file_utils, "get_file", return_value=path) as get:
        model = efficientnetv2.get_model("efficientnetv2-b0", classes, weights="imagenet")
    assert get.call_args.args[0] == ("efficientnetv2-b0.h5" if classes == 1000 else
                                      "efficientnetv2-b0_notop.h5")
    size = 224 if classes == 1000 else 64  # keras.applications' classifier wants 224 px
    images = np.random.default_rng(2).uniform(-1, 1, (2, size, size, 3)).astype("float32")
    if classes == 1000:
        # keras.applications' classifier ends in a softmax; ours gives logits
        np.testing.assert_allclose(tf.nn.softmax(model(images)), app(images), atol=1e-6)
    else:
        features = keras.Model(model.input, model.get_layer("head").output)
        np.testing.assert_allclose(features(images), app(images), atol=1e-5)


def test_imagenet_weights_offline_name_the_file_and_folder():
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x: None -- unreachable")
    with mock.patch.object(keras_efficientnet_v2.file_utils, "get_file", offline):
        with pytest.raises(UserError, match=r"fetch https://storage.googleapis.com/tensorflow/"
                           r"keras-applications/efficientnet_v2/efficientnetv2-b0_notop.h5 and put "
                           r"efficientnetv2-b0_notop.h5 in .*models"):
            efficientnetv2.get_model("efficientnetv2-b0", 5, weights="imagenet")
    with pytest.raises(UserError, match="keras.applications has no weights for efficientnetv2-xl"):
        efficientnetv2.get_model("efficientnetv2-xl", weights="imagenet")


def test_readme_feature_extraction_example(tmp_path):
    path, app = _fake_imagenet_file(tmp_path, include_top=False)
    with mock.patch.object(keras_efficientnet_v2.file_utils, "get_file", return_value=path):
        # as in README.md, "Feature extraction"
        backbone = efficientnetv2.get_model("efficientnetv2-b0", include_top=False, pooling="avg",
                                            weights="imagenet")
        backbone.trainable = False
        inputs = keras.Input((64, 64, 3))  # pixels 0..255
        x = efficientnetv2.preprocess_input(inputs, "efficientnetv2-b0")
        x = backbone(x, training=False)
        outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dropout(0.2)(x))
        classifier = keras.Model(inputs, outputs)
    classifier.compile("adam", "sparse_categorical_crossentropy")
    frozen = [w.numpy() for w in backbone.weights]
    images = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype("float32")
    classifier.fit(images, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    for before, after in zip(frozen, backbone.weights):
        np.testing.assert_array_equal(before, after.numpy())  # BN statistics too
    assert classifier.layers[-1].kernel.shape == (1280, 3)
    pooled = keras.Model(app.inputs, keras.layers.GlobalAveragePooling2D()(app.output))
    normalised = efficientnetv2.preprocess_input(images, "efficientnetv2-b0")
    np.testing.assert_allclose(backbone(normalised), pooled(normalised), atol=1e-5)


def test_predict_with_imagenet_weights_names_imagenet_classes(tmp_path, capsys):
    from test_main import main_in_process

    from efficientnetv2 import hparams
    from efficientnetv2.datasets.preprocessing import recipe_for
    from efficientnetv2.datasets.registry import IMAGENET_CLASSES

    path, _ = _fake_imagenet_file(tmp_path, include_top=True)
    image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    tf.io.write_file(str(tmp_path / "photo.png"), tf.io.encode_png(image))
    with mock.patch.object(keras_efficientnet_v2.file_utils, "get_file", return_value=path):
        result = main_in_process(capsys, "--mode=predict", "--model_name=efficientnetv2-b0",
                                 "--weights=imagenet", f"--image={tmp_path / 'photo.png'}", "--top_k=1")
        model = efficientnetv2.get_model("efficientnetv2-b0", weights="imagenet")
    assert result.returncode == 0, result.stderr[-2000:]
    config = hparams.build_config("efficientnetv2-b0", "imagenet")  # the model's own recipe
    pixels = recipe_for(config.data).eval_image(tf.cast(image[None], tf.float32), config.eval.isize)
    expected = IMAGENET_CLASSES[int(np.argmax(model(pixels)))]
    assert result.stdout.startswith(f"{tmp_path / 'photo.png'}: {expected} ")


@pytest.fixture
def release_server(tmp_path, monkeypatch):
    """A local HTTP server on 127.0.0.1 serving archives laid out as the released ones
    (`<name>.tgz` holding `<name>/checkpoint`, `model.index`, `model.data-*`, EMA shadows)."""
    import functools
    import http.server
    import tarfile
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("EFFICIENTNETV2_RELEASE_URL", f"http://127.0.0.1:{server.server_port}/v2/")
    monkeypatch.setenv("EFFICIENTNETV2_CACHE", str(tmp_path / "cache"))

    def publish(name: str, model) -> dict:
        folder = tmp_path / "build" / name
        folder.mkdir(parents=True)
        ema = write_automl_checkpoint(model, str(folder / "model"), name.split("-21k")[0])
        (folder / "checkpoint").write_text('model_checkpoint_path: "model"\n')
        os.makedirs(served / "v2", exist_ok=True)
        with tarfile.open(served / "v2" / f"{name}.tgz", "w:gz") as tar:
            tar.add(folder, arcname=name)
        return ema
    yield {"publish": publish, "served": served / "v2", "cache": tmp_path / "cache"}
    server.shutdown()


def test_released_names_download_once_and_load_their_ema_weights(release_server):
    ema = release_server["publish"]("efficientnetv2-b0", efficientnetv2.get_model("efficientnetv2-b0"))
    model = efficientnetv2.get_model("efficientnetv2-b0", weights="efficientnetv2-b0")
    for weight in model.weights:
        np.testing.assert_array_equal(weight.numpy(), ema[weight.path])
    os.remove(release_server["served"] / "efficientnetv2-b0.tgz")  # now from the cache
    again = efficientnetv2.get_model("efficientnetv2-b0", 10, weights="efficientnetv2-b0")
    np.testing.assert_array_equal(again.get_layer("stem").weights[0].numpy(),
                                  model.get_layer("stem").weights[0].numpy())
    with pytest.raises(UserError, match="efficientnetv2-b0's, not efficientnetv2-b1's"):
        efficientnetv2.get_model("efficientnetv2-b1", weights="efficientnetv2-b0")


def test_released_download_failures_are_one_line_and_leave_nothing_behind(release_server,
                                                                          monkeypatch):
    from efficientnetv2 import released

    with pytest.raises(UserError, match=r"efficientnetv2-b1\.tgz: HTTP 404"):
        released.fetch("efficientnetv2-b1")
    release_server["publish"]("efficientnetv2-b2", efficientnetv2.get_model(TINY_BLOCKS, 10))
    data = (release_server["served"] / "efficientnetv2-b2.tgz").read_bytes()
    (release_server["served"] / "efficientnetv2-b2.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="is damaged .* removed: run again"):
        released.fetch("efficientnetv2-b2")
    assert not os.path.exists(release_server["cache"] / "efficientnetv2-b2.tgz")
    monkeypatch.setenv("EFFICIENTNETV2_RELEASE_URL", "http://127.0.0.1:9/v2/")  # nothing listens
    with pytest.raises(UserError, match=r"cannot download http://127.0.0.1:9/v2/efficientnetv2-s.tgz"
                                        r" .*put it at .*efficientnetv2-s\.tgz"):
        released.fetch("efficientnetv2-s")
    assert os.listdir(release_server["cache"]) == []
