"""Export (SavedModel, TFLite), prediction and their bad-input errors, on a trained tiny run."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import warnings
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
import yaml
from conftest import TINY_BLOCKS, idx_folder
from PIL import Image
from test_main import assert_one_line_error, main_in_process

import efficientnetv2
from efficientnetv2 import hparams
from efficientnetv2.datasets import DataInput
from efficientnetv2.errors import UserError
from efficientnetv2.run_folder import restore_model
from efficientnetv2.serving.export import (
    BYTES_SIGNATURE,
    IMAGES_SIGNATURE,
    export_run,
    module_for_run,
    run_tflite,
)
from efficientnetv2.training.trainer import Trainer

RUN = ("model.blocks=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,train.epochs=2,"
       "train.batch_size=8,train.stages=0,train.isize=24,eval.isize=24,eval.batch_size=8,"
       "train.lr_warmup_epoch=0,train.ema_decay=0.9,data.max_eval_examples=12,"
       # the legacy V1 recipe (mean/std, bicubic): serving must apply the run's own
       "data.augname=effnetv1_autoaug")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained for 2 epochs on Fashion-MNIST-format files; its test images as PNGs."""
    root = tmp_path_factory.mktemp("export")
    data = idx_folder(str(root / "data"), 64, 12)
    config = hparams.build_config("custom", "fashion_mnist", hparam_str=RUN,
                                  extra={"data.data_dir": data})
    Trainer(config, str(root / "run"), verbose=False).train()
    pngs = root / "pngs"
    pngs.mkdir()
    with gzip.open(os.path.join(data, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    for i, image in enumerate(images):
        Image.fromarray(image).save(pngs / f"test{i:02d}.png")
    return {"dir": str(root / "run"), "config": config, "pngs": str(pngs), "root": root}


def _pixels(shape, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype("float32")


def test_fresh_process_load_equals_in_process_model(run, tmp_path):
    restored = restore_model(run["dir"])
    assert restored.ema and restored.class_names[9] == "Ankle boot"
    (path,) = export_run(restored, str(tmp_path / "export"), version=3)
    assert path == str(tmp_path / "export" / "3")
    images = _pixels((3, 30, 41, 3))
    module = module_for_run(restored)
    expected = {k: v.numpy() for k, v in module.serve_images(tf.constant(images)).items()}
    # inference mode: equal to the model's training=False output on the run's eval
    # preprocessing, which is `preprocess_input` of the cropped, resized pixels
    from efficientnetv2.datasets.preprocessing import center_crop, recipe_for, resize

    recipe = recipe_for(restored.config.data)
    assert (recipe.normalization, recipe.resize_method) == ("imagenet", "bicubic")
    pixels = resize(center_crop(images, 24, 32), 24, "bicubic")
    logits = restored.model(efficientnetv2.preprocess_input(pixels, restored.config), training=False)
    np.testing.assert_allclose(expected["logits"], logits, atol=1e-6)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, json, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['serving_images'](images=tf.constant(np.load(sys.argv[2])))\n"
        "np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})\n"
        "print(json.dumps([open(m.classes_file.asset_path.numpy()).read(),"
        " open(m.config_file.asset_path.numpy()).read()]))\n")
    result = subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "images.npy"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = np.load(tmp_path / "out.npz", allow_pickle=True)
    for key in ("logits", "probabilities", "top_k_probabilities"):
        np.testing.assert_allclose(loaded[key], expected[key], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(loaded["top_k_ids"], expected["top_k_ids"])
    names = [[restored.class_names[i] for i in row] for row in expected["top_k_ids"]]
    assert [[n.decode() for n in row] for row in loaded["top_k_names"]] == names
    classes, config = json.loads(result.stdout.strip().splitlines()[-1])
    assert classes.splitlines() == restored.class_names
    assert "model_name: custom" in config and "isize: 24" in config


def test_bytes_signature_equals_images_signature(run, tmp_path):
    (path,) = export_run(restore_model(run["dir"]), str(tmp_path), version=1)
    loaded = tf.saved_model.load(path)
    for shape, encode in (((2, 28, 28, 1), tf.io.encode_png), ((2, 45, 33, 3), tf.io.encode_png),
                          ((1, 30, 30, 3), tf.io.encode_jpeg)):
        pixels = tf.cast(tf.round(_pixels(shape)), tf.uint8)
        data = [encode(image).numpy() for image in pixels]
        decoded = np.stack([tf.io.decode_image(d, channels=3).numpy() for d in data]).astype("float32")
        by_bytes = loaded.signatures[BYTES_SIGNATURE](image_bytes=tf.constant(data))
        by_images = loaded.signatures[IMAGES_SIGNATURE](images=tf.constant(decoded))
        for key in ("logits", "probabilities"):
            np.testing.assert_allclose(by_bytes[key], by_images[key], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(by_bytes["top_k_names"], by_images["top_k_names"])


def _invoke(path: str, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(logits, probabilities) of a TFLite file for one image of pixels 0..255, dequantized,
    and its input details."""
    with warnings.catch_warnings():
        # TensorFlow's own interpreter, deprecated for LiteRT's (an optional extra here;
        # experiments/tflite_int8.py runs both)
        warnings.filterwarnings("ignore", "\\s*Warning: tf.lite.Interpreter is deprecated", UserWarning)
        interpreter = tf.lite.Interpreter(path)
    interpreter.allocate_tensors()
    outputs = run_tflite(interpreter, image)
    return outputs["logits"], outputs["probabilities"], interpreter.get_input_details()[0]


def test_tflite_float_dynamic_and_full_integer_against_the_saved_model(run, tmp_path):
    restored = restore_model(run["dir"])
    paths = export_run(restored, str(tmp_path), version=1, tflite=("none", "dynamic", "full"),
                       calibration=12)
    assert [os.path.basename(p) for p in paths] == [
        "1", "model.tflite", "model_dynamic_int8.tflite", "model_int8.tflite"]
    saved = tf.saved_model.load(paths[0]).signatures[IMAGES_SIGNATURE]
    sizes = {os.path.basename(p): os.path.getsize(p) for p in paths[1:]}
    assert sizes["model_int8.tflite"] < sizes["model.tflite"]  # 4x on real models (README)
    worst = {name: 0.0 for name in sizes}
    for seed in range(4):
        image = np.round(_pixels((1, 24, 24, 3), seed))
        expected = saved(images=tf.constant(image))
        for path in paths[1:]:
            logits, probabilities, given = _invoke(path, image)
            name = os.path.basename(path)
            if name == "model_int8.tflite":  # raw uint8 pixels in
                assert given["dtype"] == np.uint8 and given["quantization"] == (1.0, 0)
            worst[name] = max(worst[name], float(np.abs(probabilities - expected["probabilities"]).max()))
            if name == "model.tflite":
                np.testing.assert_allclose(logits, expected["logits"], atol=1e-3, rtol=0)
    assert worst["model.tflite"] < 1e-4 and worst["model_dynamic_int8.tflite"] < 0.02
    assert worst["model_int8.tflite"] < 0.05  # a few quantisation steps of 1/256


def test_export_refuses_an_existing_version_unless_overwrite(run, tmp_path):
    restored = restore_model(run["dir"])
    (path,) = export_run(restored, str(tmp_path))
    assert path.endswith("/16")  # the checkpoint's step
    marker = os.path.join(path, "saved_model.pb")
    before = os.path.getmtime(marker)
    with pytest.raises(UserError, match="already exists; pass `overwrite`"):
        export_run(restored, str(tmp_path))
    assert os.path.getmtime(marker) == before
    export_run(restored, str(tmp_path), overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["16"]  # replaced, no scratch folders left
    assert tf.saved_model.load(path).signatures[BYTES_SIGNATURE] is not None
    (tmp_path / "a_file").write_text("keep me")
    with pytest.raises(UserError, match="`export_dir` .*a_file' is a file; pass a folder"):
        export_run(restored, str(tmp_path / "a_file"))
    assert (tmp_path / "a_file").read_text() == "keep me"


def _in_process_labels(run) -> list[int]:
    """The trained model's labels for the test images through the eval pipeline."""
    restored = restore_model(run["dir"])
    config = run["config"]
    data = DataInput(config.data, "eval", False)
    images = np.concatenate([x for x, _ in data.dataset(64, config.eval.isize)])
    return list(np.argmax(restored.model(images, training=False), axis=1))


@pytest.mark.parametrize("source", ["checkpoint", "saved_model"])
def test_predict_on_pngs_gives_the_in_process_labels(run, source, capsys):
    if source == "saved_model":
        export_run(restore_model(run["dir"]), os.path.join(run["dir"], "export"), overwrite=True)
        args = [f"--saved_model={run['dir']}/export"]
    else:
        args = [f"--checkpoint={run['dir']}"]
    result = main_in_process(capsys, "--mode=predict", *args, f"--image={run['pngs']}",
                             "--output=json", "--top_k=3")
    assert result.returncode == 0, result.stderr[-2000:]
    predictions = json.loads(result.stdout)
    assert [os.path.basename(p["image"]) for p in predictions] == [f"test{i:02d}.png" for i in range(12)]
    assert [p["predictions"][0]["class_id"] for p in predictions] == _in_process_labels(run)
    top = predictions[0]["predictions"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"] >= top[2]["probability"]
    text = main_in_process(capsys, "--mode=predict", *args, f"--image={run['pngs']}/test00.png", "--top_k=2")
    assert text.returncode == 0 and text.stdout.startswith(f"{run['pngs']}/test00.png: ")


def test_main_export_prints_the_paths(run, tmp_path, capsys):
    result = main_in_process(capsys, "--mode=export", f"--checkpoint={run['dir']}",
                             f"--export_dir={tmp_path}", "--export_version=7", "--export_tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{tmp_path}/7/model.tflite" in result.stdout and "EMA weights, 24px, 10 classes" in result.stdout


def test_export_serves_the_eval_settings_given_on_the_command_line(run, tmp_path, capsys):
    """`--hparam_str` eval keys replace the run's saved eval.isize, eval.flip_average and
    eval.shift_average in the export; a misspelt one is a one-line error that writes nothing."""
    from efficientnetv2.inference import TestTimeViews, inference_logits

    result = main_in_process(capsys, "--mode=export", f"--checkpoint={run['dir']}",
                             f"--export_dir={tmp_path}", "--export_version=1",
                             "--hparam_str=eval.isize=32,eval.flip_average=true,eval.shift_average=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EMA weights, 32px, 10 classes" in result.stdout
    served = tf.saved_model.load(str(tmp_path / "1")).signatures[IMAGES_SIGNATURE]
    images = _pixels((2, 30, 41, 3))
    restored = restore_model(run["dir"])
    module = module_for_run(restored)
    preprocessed = module.recipe.eval_image(tf.constant(images), 32)
    black = module.recipe.eval_image(tf.zeros([1, 32, 32, 3]), 32)[0, 0, 0]
    views = TestTimeViews(flip=True, shift=2, fill=tuple(black.numpy().tolist()))
    expected = inference_logits(restored.model, preprocessed, views)
    single = inference_logits(restored.model, preprocessed)
    logits = served(images=tf.constant(images))["logits"]
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert np.abs(logits - single).max() > 1e-4
    result = main_in_process(capsys, "--mode=export", f"--checkpoint={run['dir']}",
                             f"--export_dir={tmp_path}", "--export_version=2",
                             "--hparam_str=eval.flip_averge=true")
    assert_one_line_error(result, "error: --hparam_str: unknown config key 'eval.flip_averge'")
    assert sorted(os.listdir(tmp_path)) == ["1"]


def test_a_run_saved_before_an_eval_key_existed_takes_its_default_and_overrides(run, tmp_path):
    """Run folders written before eval.flip_average existed restore with its default (off)
    and accept it from --hparam_str, rather than an 'unknown config key' error."""
    old = tmp_path / "old_run"
    shutil.copytree(run["dir"], old)
    saved = yaml.safe_load((old / "config.yaml").read_text())
    del saved["eval"]["flip_average"], saved["eval"]["shift_average"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert restore_model(str(old)).config.eval.flip_average is False
    overridden = restore_model(str(old), eval_overrides={"eval.flip_average": True})
    assert overridden.config.eval.flip_average is True
    assert module_for_run(overridden).views.flip
    assert module_for_run(restore_model(str(old))).views.count() == 1  # the image alone


def test_bad_inputs_are_one_line_errors(run, tmp_path, capsys):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG not really")
    export = tmp_path / "export"
    export_run(restore_model(run["dir"]), str(export), version=1)
    before = sorted(os.listdir(export / "1"))
    cases = [
        (["--mode=predict", f"--checkpoint={run['dir']}", f"--image={corrupt}"],
         f"error: cannot use {corrupt}: not a readable image"),
        (["--mode=predict", f"--checkpoint={export}", f"--image={run['pngs']}"],
         f"error: {export} is a SavedModel export, not a checkpoint"),
        (["--mode=predict", f"--saved_model={run['dir']}", f"--image={run['pngs']}"],
         f"error: {run['dir']} holds no SavedModel"),
        (["--mode=predict", f"--saved_model={export}", f"--image={run['pngs']}",
          "--hparam_str=eval.flip_average=true"],
         "error: eval. keys (--hparam_str, --image_size, --batch_size) cannot change a SavedModel "
         "(its preprocessing is fixed at export); export again with them, or predict from "
         "--checkpoint"),
        (["--mode=export", f"--checkpoint={run['dir']}", f"--export_dir={export}", "--export_version=1"],
         f"error: {export}/1 already exists; pass --overwrite"),
        (["--mode=predict", f"--checkpoint={run['dir']}", "--image=/nonexistent.png"],
         "error: --image '/nonexistent.png' does not exist"),
    ]
    for args, message in cases:
        assert_one_line_error(main_in_process(capsys, *args), message)
    assert sorted(os.listdir(export / "1")) == before


def test_eval_of_another_models_checkpoint_is_one_line(run, tmp_path, capsys):
    """Checkpoints without their run's config.yaml are evaluated with the flags' model."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(run["dir"]):
        if name.startswith("ckpt-") or name == "checkpoint":
            shutil.copy(os.path.join(run["dir"], name), bare)
    wider = "--hparam_str=" + RUN.replace("model.feature_size=32", "model.feature_size=40")
    result = main_in_process(capsys, "--mode=eval", "--model_name=custom",
                             "--dataset_cfg=fashion_mnist",
                             f"--data_dir={idx_folder(str(tmp_path / 'data'), 16, 8)}",
                             f"--model_dir={tmp_path / 'other'}", wider, f"--checkpoint={bare}")
    assert_one_line_error(result, "error: cannot restore")


def test_the_views_benchmark_averages_what_inference_averages_for_each_view_set(run):
    """experiments/test_time_views.py: each view set's figure comes from exactly the views
    that `inference_logits` averages for those settings (the run's black border)."""
    import dataclasses

    from efficientnetv2.datasets.preprocessing import eval_views
    from efficientnetv2.experiments import test_time_views as benchmark
    from efficientnetv2.inference import inference_logits

    restored = restore_model(run["dir"])
    config = restored.config
    dataset = DataInput(config.data, config.eval.split, False).dataset(5, config.eval.isize)
    fill = eval_views(config).fill
    assert max(abs(v) for v in fill) > 0.1  # mean/std normalisation: black is not 0
    logits, labels = benchmark.view_logits(restored.model, dataset, fill)
    images = tf.concat([batch for batch, _ in dataset], 0)
    assert logits.shape == (12, 18, 10) and labels.shape == (12,)
    for views in benchmark.VIEW_SETS.values():
        expected = inference_logits(restored.model, images, dataclasses.replace(views, fill=fill))
        np.testing.assert_allclose(logits[:, benchmark.positions(views)].mean(1), expected,
                                   atol=1e-5)
    single = restored.model(images, training=False).numpy()
    assert benchmark.top1_by_view_set(logits, labels)["the image alone (1)"] == pytest.approx(
        100 * np.mean(np.argmax(single, -1) == labels))


def test_eval_logs_per_class_accuracy_and_draws_the_confusion_matrix(run, capsys):
    result = main_in_process(capsys, "--mode=eval", f"--model_dir={run['dir']}")
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("per-class top-1: "))
    per_class = {}
    for item in line.removeprefix("per-class top-1: ").split(", "):
        name, accuracy, count = item.rsplit(" ", 2)
        per_class[name] = (accuracy, int(count.strip("()")))
    predicted, truth = np.array(_in_process_labels(run)), np.arange(12) % 10  # idx_folder's labels
    names = efficientnetv2.datasets.registry.FASHION_MNIST_CLASSES
    for i, name in enumerate(names):
        mine = truth == i
        assert per_class[name] == (f"{np.mean(predicted[mine] == i):.3f}", int(mine.sum()))
    with Image.open(os.path.join(run["dir"], "confusion.png")) as image:
        assert image.width > 300 and image.height > 300


def test_predict_draws_the_images_with_their_top_classes(run, tmp_path, capsys):
    plot = tmp_path / "predictions.png"
    result = main_in_process(capsys, "--mode=predict", f"--checkpoint={run['dir']}",
                             f"--image={run['pngs']}", "--output=json", f"--plot={plot}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(json.loads(result.stdout)) == 12  # the JSON on stdout stays clean
    with Image.open(plot) as image:
        assert image.width >= 6 * 200 and image.height >= 2 * 250  # 6 columns, 2 rows
    unwritable = main_in_process(capsys, "--mode=predict", f"--checkpoint={run['dir']}",
                                 f"--image={run['pngs']}/test00.png", f"--plot={tmp_path}/no/such/dir/p.png")
    assert_one_line_error(unwritable, "error: cannot write --plot")


def test_pretrained_weights_are_scored_served_and_exported_without_a_run(run, tmp_path, capsys):
    weights = str(tmp_path / "run.weights.h5")
    restore_model(run["dir"]).model.save_weights(weights)  # the run's EMA weights, as a file
    as_run = ["--model_name=custom", "--dataset_cfg=fashion_mnist", f"--hparam_str={RUN}",
              f"--data_dir={run['config'].data.data_dir}", f"--model_dir={tmp_path / 'scored'}"]
    scored = main_in_process(capsys, "--mode=eval", f"--weights={weights}", *as_run)
    assert scored.returncode == 0, scored.stderr[-2000:]
    from_run = main_in_process(capsys, "--mode=eval", f"--model_dir={run['dir']}")
    top1 = [line.split(": top-1 ")[1].split(",")[0] for line in (scored.stdout + from_run.stdout).splitlines()
            if ": top-1 " in line and not line.startswith("eval at")]
    assert len(top1) == 2 and top1[0] == top1[1]
    assert (tmp_path / "scored" / "confusion.png").exists()
    predicted = main_in_process(capsys, "--mode=predict", f"--weights={weights}", *as_run,
                                f"--image={run['pngs']}", "--output=json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert [p["predictions"][0]["class_id"] for p in json.loads(predicted.stdout)] == _in_process_labels(run)
    exported = main_in_process(capsys, "--mode=export", f"--weights={weights}", *as_run,
                               f"--export_dir={tmp_path / 'export'}")
    assert exported.returncode == 0 and (tmp_path / "export" / "1" / "saved_model.pb").exists()
    other = main_in_process(capsys, "--mode=predict", f"--weights={weights}", *as_run[:2],
                            f"--hparam_str={RUN},model.num_classes=7", *as_run[3:],
                            f"--image={run['pngs']}")
    assert_one_line_error(other, f"error: cannot load {weights}")  # its classifier has 10


@pytest.mark.parametrize("damage, message", [
    (b"\xff\xfe not utf-8", "error: the run's config"),
    (b"model: [unclosed", "error: the run's config"),
    (None, "error: "),  # deleted
])
def test_a_damaged_or_missing_run_config_is_one_line(run, tmp_path, capsys, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(run["dir"], folder)
    if damage is None:
        (folder / "config.yaml").unlink()
    else:
        (folder / "config.yaml").write_bytes(damage)
    for mode in ("eval", "export", "predict"):
        result = main_in_process(capsys, f"--mode={mode}", f"--model_dir={folder}",
                                 f"--checkpoint={folder}" if mode != "eval" else "--top_k=1",
                                 f"--image={run['pngs']}")
        assert_one_line_error(result, message)
        assert "config.yaml" in result.stderr and ("damaged" in result.stderr or damage is None)


def test_export_into_an_unwritable_place_or_interrupted_is_one_line(run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("not a folder")
    result = main_in_process(capsys, "--mode=export", f"--checkpoint={run['dir']}",
                             f"--export_dir={tmp_path / 'a_file' / 'export'}")
    assert_one_line_error(result, f"error: cannot write the export into {tmp_path / 'a_file'}")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    with mock.patch("efficientnetv2.serving.export.export_run", interrupted):
        result = main_in_process(capsys, "--mode=export", f"--checkpoint={run['dir']}",
                                 f"--export_dir={tmp_path / 'export'}")
    assert result.returncode == 130 and result.stderr.strip().startswith("error: --mode=export interrupted")
    assert not (tmp_path / "export").exists()


def test_a_truncated_latest_checkpoint_names_the_one_before_it(run, tmp_path, capsys):
    folder = tmp_path / "copy"
    shutil.copytree(run["dir"], folder)
    latest = tf.train.latest_checkpoint(str(folder))
    index = folder / (os.path.basename(latest) + ".index")
    index.write_bytes(index.read_bytes()[:40])
    state = tf.train.get_checkpoint_state(str(folder))
    before = os.path.join(str(folder), os.path.basename(state.all_model_checkpoint_paths[-2]))
    for mode in ("eval", "export"):
        result = main_in_process(capsys, f"--mode={mode}", f"--model_dir={folder}", f"--checkpoint={folder}")
        assert_one_line_error(result, "error: cannot restore")
        assert result.stderr.strip().endswith(f"the checkpoint before it is {before}")
    assert main_in_process(capsys, "--mode=eval", f"--checkpoint={before}").returncode == 0


def test_hub_modules_load_with_tensorflow_hub_match_the_model_and_train(run, tmp_path):
    """hub.load and hub.KerasLayer (tf-keras) take the exported modules; outputs equal the
    run's model on [0, 1] images; a tf-keras model around the feature vector trains a step."""
    import tensorflow_hub as hub
    import tf_keras

    restored = restore_model(run["dir"])
    paths = export_run(restored, str(tmp_path), version=1, hub=True)
    classification, features = paths[1:]
    assert classification.endswith("hub/classification") and features.endswith("hub/feature_vector")
    from efficientnetv2.datasets.preprocessing import normalize, recipe_for

    images = _pixels((2, 24, 24, 3)) / 255.0
    normalized = normalize(images * 255.0, recipe_for(restored.config.data).normalization)
    expected = restored.model(normalized, training=False)
    np.testing.assert_allclose(hub.load(classification)(tf.constant(images)), expected, atol=1e-4)
    assert hub.load(classification)(tf.constant(_pixels((1, 40, 40, 3)) / 255.0)).shape == (1, 10)
    layer = hub.KerasLayer(features, trainable=True)
    model = tf_keras.Sequential([tf_keras.Input((24, 24, 3)), layer, tf_keras.layers.Dense(3)])
    pooled = model.layers[0](tf.constant(images))
    assert pooled.shape == (2, 32)  # the feature size
    model.compile(tf_keras.optimizers.SGD(0.1), tf_keras.losses.SparseCategoricalCrossentropy(True))
    before = [v.numpy().copy() for v in layer.trainable_variables]
    model.fit(images, np.array([0, 2]), epochs=1, verbose=0)
    assert any(not np.allclose(a, b.numpy()) for a, b in zip(before, layer.trainable_variables))


def test_full_integer_export_without_the_eval_images_is_one_line_and_writes_nothing(run, tmp_path):
    restored = restore_model(run["dir"])
    with restored.config.unlocked():
        restored.config.data.data_dir = str(tmp_path / "moved")
    with pytest.raises(UserError, match="needs the run's eval images to calibrate on: .*`data_dir`"):
        export_run(restored, str(tmp_path / "export"), version=1, tflite=("full",))
    assert not os.path.exists(tmp_path / "export" / "1")


def test_a_killed_export_leaves_no_version_and_the_next_one_clears_its_scratch(run, tmp_path):
    """SIGKILL once the SavedModel is written and the TFLite file is on its way: no version
    folder appears (a half export is never mistaken for a whole one, nor refused as
    existing); the next export into the folder completes and removes the killed one's
    scratch folder."""
    from test_main import ROOT
    from test_resume import kill_when

    export = tmp_path / "export"
    process = subprocess.Popen(
        [sys.executable, "main.py", "--mode=export", f"--checkpoint={run['dir']}",
         f"--export_dir={export}", "--export_version=3", "--export_tflite"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    kill_when(process, lambda: any(export.glob(".3.*partial*/saved_model.pb")))
    assert not (export / "3").exists() and list(export.glob(".3.*partial*"))
    paths = export_run(restore_model(run["dir"]), str(export), version=3, tflite=("none",))
    assert paths == [str(export / "3"), str(export / "3" / "model.tflite")]
    assert sorted(os.listdir(export)) == ["3"]
    assert (export / "3" / "model.tflite").stat().st_size > 10_000


def test_predict_leaves_nothing_in_the_temp_folder(run, tmp_path, monkeypatch):
    import tempfile

    from efficientnetv2.serving.predict import Predictor, image_files, read_images

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    files = image_files([run["pngs"]])[:2]
    Predictor.from_checkpoint(run["dir"]).top_k(read_images(files))
    assert [n for n in os.listdir(tmp_path) if not n.startswith("__autograph_generated")] == []


def _huge_jpeg_header(path, side: int = 20000) -> None:
    """A small JPEG whose header claims side x side pixels (a decompression bomb's header)."""
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = side.to_bytes(2, "big") * 2  # height, width
    path.write_bytes(bytes(data))


def test_predict_reads_images_as_training_does(tmp_path):
    """The same limits and formats as the folder scan: a 20,000 x 20,000 header is refused
    before decoding; 1-bit BMP and TIFF (Pillow reads them, TensorFlow does not) are
    converted; FIFOs in an image folder are skipped, never opened."""
    from efficientnetv2.serving.predict import image_files, read_images

    _huge_jpeg_header(tmp_path / "bomb.jpg")
    with pytest.raises(UserError, match=r"bomb.jpg: more than [0-9,]+ pixels .*decompression"):
        read_images([str(tmp_path / "bomb.jpg")])
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(np.eye(16, dtype=np.uint8) * 255).convert("1").save(folder / "onebit.bmp")
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(folder / "photo.tif")
    os.mkfifo(folder / "pipe.png")
    with pytest.warns(UserWarning, match="skipped 1 file.* not regular files: .*pipe.png"):
        files = image_files([str(folder)])
    assert [os.path.basename(f) for f in files] == ["onebit.bmp"]  # .tif is not an image name
    (image,) = read_images(files + [])
    assert tf.io.decode_image(image, channels=3).shape == (16, 16, 3)
    (tiff,) = read_images([str(folder / "photo.tif")])
    assert tf.io.decode_image(tiff, channels=3).numpy().max() == 90
    with pytest.raises(UserError, match="is not a regular file"):
        image_files([str(folder / "pipe.png")])


def test_printed_class_names_and_paths_show_control_characters_escaped():
    from efficientnetv2.serving.predict import format_predictions

    line = format_predictions(["a\x1b[2Jb.png"], [[(0, "cat\x1b]0;owned\x07", 0.9)]], False)
    assert "\x1b" not in line and "\x07" not in line
    assert line == "a\\x1b[2Jb.png: cat\\x1b]0;owned\\x07 0.900"


def _eval_peak_gb(run, hparam_str: str) -> float:
    """Peak memory (GB) of `main.py --mode=eval` on the run in a fresh process."""
    from test_main import ROOT

    script = ("import resource, runpy, sys\nsys.argv = ['main.py'] + sys.argv[1:]\ntry:\n"
              "    runpy.run_path('main.py', run_name='__main__')\nfinally:\n"
              "    print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, "--mode=eval", f"--model_dir={run['dir']}",
                           f"--hparam_str={hparam_str}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stderr.split("peak ")[-1].split()[0]) / 2**20


def test_a_small_eval_split_is_evaluated_in_one_small_batch(run):
    """12 eval images with eval.batch_size=64 at 500 px take the memory of one batch of 12,
    not of 64 padded (24 MB an image at 500 px here: 1.2 GB more; at 1000 px the padded batch
    peaked at 7.1 GB against 2.1 GB)."""
    padded = _eval_peak_gb(run, "eval.isize=500,eval.batch_size=64")
    exact = _eval_peak_gb(run, "eval.isize=500,eval.batch_size=12")
    assert padded < exact + 0.4, (padded, exact)
