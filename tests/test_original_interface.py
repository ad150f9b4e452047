"""The original's commands, flags, config keys and Python names, as a user holding its README,
smoke test and hparams.py types them (automl/efficientnetv2)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_BLOCKS, idx_folder
from test_main import assert_one_line_error, main_in_process

from efficientnetv2 import effnetv2_model, hparams
from efficientnetv2.datasets import DataInput
from efficientnetv2.datasets.registry import configured_spec
from efficientnetv2.errors import UserError
from efficientnetv2.training import optimization

# efficientnetv2/smoke_test.py's flags and hparam string, as written there
SMOKE_FLAGS = ["--use_tpu=False", "--model_name=efficientnetv2-s", "--dataset_cfg=ImageNet",
               "--data_dir=null"]
SMOKE_HPARAMS = ("train.batch_size=2,eval.batch_size=2,train.epochs=0,train.min_steps=1,"
                 "train.lr_base=0,data.splits.eval.num_images=6,")


def test_the_original_smoke_test_trains_then_evaluates(tmp_path, capsys):
    run = str(tmp_path / "smoke")
    outputs = {}
    for mode in ("train", "eval"):
        result = main_in_process(capsys, f"--mode={mode}", *SMOKE_FLAGS, f"--model_dir={run}",
                                 f"--hparam_str={SMOKE_HPARAMS}")
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[mode] = result.stdout
    assert "null input [train]" in outputs["train"] and "final: top-1" in outputs["train"]
    assert "ckpt-1: top-1" in outputs["eval"] and "(6 images" in outputs["eval"]
    saved = hparams.load_yaml(os.path.join(run, "config.yaml"))
    assert saved["data.splits.eval.num_images"] == 6 and saved["train.min_steps"] == 1


@pytest.fixture
def tiny_run(tmp_path, capsys):
    """Two steps of a tiny network with the original's runtime keys and --trace_file."""
    data = idx_folder(tmp_path / "data", 32, 16)
    run = tmp_path / "run"
    hparam_str = ("model.blocks_args=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,"
                  "train.epochs=0,train.min_steps=3,train.batch_size=8,train.isize=16,"
                  "eval.isize=16,train.stages=0,runtime.xla=false,runtime.skip_host_call=true,"
                  "runtime.log_step_count_steps=1,data.splits.eval.num_images=10,"
                  "runtime.use_async_checkpointing=true,")
    result = main_in_process(capsys, "--mode=train", "--model_name=custom",
                             "--dataset_cfg=fashion_mnist", f"--data_dir={data}",
                             f"--model_dir={run}", f"--hparam_str={hparam_str}",
                             f"--trace_file={tmp_path / 'trace'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"run": run, "data": data, "trace": tmp_path / "trace", "out": result.stdout}


def test_runtime_keys_and_trace_file_take_effect(tiny_run):
    from efficientnetv2.training.reporting import read_log

    run = tiny_run["run"]
    assert os.listdir(run / "tensorboard") == ["eval"]  # skip_host_call: no train summaries
    train_rows = [r for r in read_log(str(run / "log.csv")) if r["kind"] == "train"]
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3]  # a line every step
    assert list((tiny_run["trace"] / "plugins" / "profile").iterdir())  # TensorBoard's layout
    assert "wrote a profiler trace of steps 2-2" in tiny_run["out"]
    assert "(10 images" in tiny_run["out"]  # data.splits.eval.num_images
    evals = [r for r in read_log(str(run / "log.csv")) if r["kind"] == "eval"]
    assert evals and all(0 <= float(r["balanced_accuracy"]) <= 1 for r in evals)
    assert "balanced accuracy" in tiny_run["out"].splitlines()[-1]  # the final line
    assert "note: runtime.use_async_checkpointing=True has no effect here" in tiny_run["out"]
    assert hparams.load_yaml(str(run / "config.yaml"))["model.blocks"] == TINY_BLOCKS


def test_eval_name_archive_ckpt_and_infer_modes(tiny_run, tmp_path, capsys):
    run = tiny_run["run"]
    (run / "best").rename(tmp_path / "training_best")  # as if training never evaluated
    result = main_in_process(capsys, "--mode=eval", f"--model_dir={run}", "--eval_name=holdout")
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.listdir(run / "tensorboard" / "eval_holdout")
    assert "kept" in result.stdout and (run / "best" / "ckpt-3.index").exists()
    assert tf.train.latest_checkpoint(str(run / "best")).endswith("ckpt-3")
    again = main_in_process(capsys, "--mode=eval", f"--model_dir={run}")  # not better: kept
    assert "kept" not in again.stdout and again.returncode == 0
    (run / "best" / "best.json").unlink()  # best/'s own checkpoint, evaluated again
    itself = main_in_process(capsys, "--mode=eval", f"--checkpoint={run / 'best' / 'ckpt-3'}")
    assert itself.returncode == 0 and "kept" in itself.stdout, itself.stderr[-3000:]
    assert sorted(os.listdir(run / "best")) == [
        "best.json", "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    no_archive = tmp_path / "copy"
    bench = main_in_process(capsys, "--mode=tf2bm", f"--model_dir={run}", "--batch_size=2",
                            f"--export_dir={no_archive}")
    assert bench.returncode == 0, bench.stderr[-3000:]
    assert "Per batch inference time:" in bench.stdout and "FPS:" in bench.stdout
    assert (no_archive / "saved_model.pb").exists()
    export = main_in_process(capsys, "--mode=tf1export", f"--model_dir={run}",
                             f"--export_dir={tmp_path / 'export'}", "--export_to_tpu")
    assert export.returncode == 0, export.stderr[-3000:]
    assert (tmp_path / "export" / "3" / "saved_model.pb").exists()
    assert "--export_to_tpu has no effect here" in export.stderr


def test_image_path_debug_mixed_precision_and_tpu_job_name(tiny_run, tmp_path, capsys, monkeypatch):
    from PIL import Image

    image = tmp_path / "one.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(image)
    predicted = main_in_process(capsys, "--mode=predict", f"--model_dir={tiny_run['run']}",
                                f"--image_path={image}", "--top_k=1")
    assert predicted.returncode == 0 and predicted.stdout.startswith(str(image)), predicted.stderr
    summary = main_in_process(capsys, "--mode=summary", "--model_name=efficientnetv2-b0",
                              "--mixed_precision", "--debug", f"--model_dir={tmp_path / 's'}")
    try:
        assert summary.returncode == 0 and tf.config.functions_run_eagerly()
    finally:
        tf.config.run_functions_eagerly(False)
    assert hparams.load_yaml(str(tmp_path / "s" / "config.yaml"))["runtime.mixed_precision"] is True
    seen = {}

    def resolver(*args, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("no TPU here")
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    from efficientnetv2.training.strategies import make_strategy

    with pytest.raises(RuntimeError, match="no TPU here"):
        make_strategy("tpu", tpu="my-tpu", tpu_job_name="tpu_worker")
    assert seen["job_name"] == "tpu_worker"


def test_use_tpu_needs_a_tpu_and_unknown_hparam_text_is_one_line(capsys):
    assert_one_line_error(main_in_process(capsys, "--mode=train", "--use_tpu",
                                          "--model_name=efficientnetv2-b0"),
                          "error: runtime.strategy=tpu needs --tpu=NAME")
    assert_one_line_error(main_in_process(capsys, "--mode=summary", "--hparam_str=nonsense"),
                          "error: --hparam_str 'nonsense' is neither key=value pairs nor a .yaml")


def test_hparam_str_as_the_original_reads_it(tmp_path):
    path = tmp_path / "overrides.yaml"
    path.write_text("train:\n  epochs: 7\nmodel:\n  act_fn: relu\n")
    from_file = hparams.build_config("efficientnetv2-b0", "imagenet", hparam_str=str(path))
    assert (from_file.train.epochs, from_file.model.activation) == (7, "relu")
    swept = hparams.build_config("efficientnetv2-b0", "imagenet", hparam_str="train.epochs=3,",
                                 sweeps="train.epochs=5,train.lr_base=0.1")
    assert (swept.train.epochs, swept.train.lr_base) == (5, 0.1)  # sweeps after hparam_str
    blocks = hparams.build_config("custom", "imagenet",
                                  hparam_str="model.blocks_args=" + "|".join(TINY_BLOCKS))
    assert list(blocks.model.blocks) == TINY_BLOCKS


def test_fashion_mnist_ft_is_the_cifar10ft_recipe_on_fashion_mnist():
    seed = hparams.build_config("efficientnetv2-b0", "FashionMNISTFt")
    cifar = hparams.build_config("efficientnetv2-b0", "Cifar10Ft")
    assert seed.data.ds_name == "fashion_mnist" and cifar.data.ds_name == "cifar10"
    for key in ("train.batch_size", "train.lr_sched", "train.lr_base", "train.optimizer",
                "train.ema_decay", "train.min_steps", "data.augname", "model.dropout_rate"):
        section, name = key.split(".")
        assert seed[section][name] == cifar[section][name], key


def test_bn_type_tpu_bn_synchronizes_batch_norm_and_loss_type_custom():
    from efficientnetv2 import get_model

    for bn_type, synchronized in (("tpu_bn", True), (None, False)):
        config = hparams.build_config("custom", "imagenet", hparam_str=(
            "model.blocks=" + "|".join(TINY_BLOCKS) + f",model.bn_type={bn_type}"))
        name, overrides = hparams.model_arguments(config)
        model = get_model(name, 4, **overrides)
        norms = [layer for layer in model._flatten_layers()
                 if isinstance(layer, keras.layers.BatchNormalization)]
        assert norms and all(layer.synchronized == synchronized for layer in norms)
    from efficientnetv2.training.evaluator import Evaluator

    group = hparams.build_config("custom", "synthetic", hparam_str=(  # group norm stays group norm
        "model.blocks=" + "|".join(TINY_BLOCKS) + ",model.bn_type=gn,model.synchronized_bn=true,"
        "eval.isize=16"))
    model = Evaluator(group, "unused", verbose=False).model
    kinds = {type(layer).__name__ for layer in model._flatten_layers()}
    assert "GroupNormalization" in kinds and "BatchNormalization" not in kinds
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    logits = np.array([[2.0, -1.0, 0.5], [0.3, 0.1, -2.0]], np.float32)
    expected = np.sum(labels * np.log1p(np.exp(-logits))
                      + (1 - labels) * np.log1p(np.exp(logits)), axis=1)
    loss = optimization.loss_function("custom", 0.1)(tf.constant(labels), tf.constant(logits))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-6)  # summed, no smoothing


def test_dataset_keys_of_hparams_py(tmp_path, monkeypatch):
    config = hparams.build_config("efficientnetv2-b0", "cifar10ft", hparam_str=(
        "data.tfds_name=cifar10_corrupted,data.splits.train.slice=[:1000],"
        "data.splits.eval.tfds_split=test,data.splits.eval.slice=[:10%],data.num_classes=12"))
    spec = configured_spec(config.data)
    assert (spec.tfds_name, spec.num_classes) == ("cifar10_corrupted", 12)
    assert spec.splits["train"].tfds_split == "train[:1000]"
    assert spec.splits["eval"].tfds_split == "test[:10%]"
    imagenet = hparams.build_config("efficientnetv2-b0", "imagenet",
                                    hparam_str="data.splits.train.slice=5:,data.splits.eval.files=x*")
    spec = configured_spec(imagenet.data)
    assert spec.splits["train"].file_slice == (5, None) and spec.splits["eval"].files == "x*"
    with pytest.raises(UserError, match="data.splits.train.slice='oops' is not a slice"):
        configured_spec(hparams.build_config("efficientnetv2-b0", "imagenet",
                                             hparam_str="data.splits.train.slice=oops").data)
    seen = {}

    def fake_load(name, **kwargs):
        seen.update(kwargs, name=name)
        raise RuntimeError("stop here")
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "load", fake_load)
    monkeypatch.setattr("efficientnetv2.datasets.sources._online", lambda: False)
    gcs = hparams.build_config("efficientnetv2-b0", "cifar10ft", hparam_str="data.try_gcs=true")
    with pytest.raises(UserError):
        DataInput(gcs.data, "train", True)
    assert seen["try_gcs"] is True and seen["name"] == "cifar10"


def test_null_input_has_the_splits_size_and_no_labels():
    config = hparams.build_config("efficientnetv2-b0", "imagenet",
                                  hparam_str="data.splits.eval.num_images=6")
    evaluation = DataInput(config.data, "eval", False)
    assert evaluation.num_examples == 6 and "null input" in evaluation.source.origin
    images, labels = next(iter(evaluation.dataset(6, 32)))
    assert images.shape == (6, 32, 32, 3) and not labels.numpy().any()
    k21 = hparams.build_config("efficientnetv2-b0", "imagenet21k", hparam_str="data.data_dir=null")
    _, multi_hot = next(iter(DataInput(k21.data, "eval", False).dataset(2, 32)))
    assert np.flatnonzero(multi_hot.numpy()[0]).tolist() == [2, 3]


def test_the_readme_snippets():
    model = keras.Sequential([
        keras.layers.InputLayer(shape=[64, 64, 3]),
        effnetv2_model.get_model("efficientnetv2-b0", include_top=False, weights=None),
        keras.layers.Dropout(rate=0.2),
        keras.layers.Dense(4, activation="softmax"),
    ])
    assert model.output_shape == (None, 4)
    net = effnetv2_model.EffNetV2Model("efficientnetv2-b0", model_config={"num_classes": 7})
    endpoints = net(np.zeros([1, 64, 64, 3], np.float32))
    assert [tuple(e.shape) for e in endpoints] == [
        (1, 7), (1, 32, 32, 16), (1, 16, 16, 32), (1, 8, 8, 48), (1, 4, 4, 112), (1, 2, 2, 192)]
    assert net(np.zeros([1, 64, 64, 3], np.float32), with_endpoints=False).shape == (1, 7)
    with pytest.raises(UserError, match="efficientnetv2-b0-21k.tgz"):  # offline: the released one
        effnetv2_model.get_model("efficientnetv2-b0", weights="imagenet21k")
