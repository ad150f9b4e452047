"""data.auto: from-scratch defaults chosen from the user's own folder."""

import os

import numpy as np
import pytest
import yaml
from PIL import Image

import efficientnetv2
from efficientnetv2 import hparams, run_folder
from efficientnetv2.datasets.imagefolder import FolderStats, folder_stats
from efficientnetv2.hparams import folder_plan


def _folder(root, size=(28, 28), per_class=20, classes=("a", "b", "c"), split=None):
    rng = np.random.RandomState(0)
    for name in classes:
        folder = root / split / name if split else root / name
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            pixels = rng.randint(0, 255, (size[1], size[0], 3), np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _last_feature_map(config) -> int:
    name, overrides = hparams.model_arguments(config)
    model = efficientnetv2.get_model(name, 3, **overrides)
    features = efficientnetv2.feature_extractor(model)
    size = config.eval.isize
    outputs = features(np.zeros((1, size, size, 3), np.float32))
    return max(outputs.values(), key=lambda t: t.shape[-1]).shape[1]


def test_a_small_image_folder_gets_its_own_size_a_layout_that_keeps_a_map_and_enough_epochs(tmp_path):
    root = _folder(tmp_path)  # 60 images of 28 px, 10% held out per class
    config = hparams.build_config("efficientnetv2-b0", "imagefolder", extra={"data.data_dir": str(root)})
    assert (config.eval.isize, config.train.isize) == (28, 28)
    assert config.train.batch_size == 16  # the smallest batch
    assert config.data.pad_crop == 4  # small images: shifted by up to 1/8, not area-cropped
    assert config.train.epochs == 100  # 54 images: the most epochs
    # a small folder from scratch: B0's first four stages, the last at stride 1, ending at
    # 4x4 from 28 px (B0's own layout ends at 1x1), without dropout or stochastic depth
    assert config.model.blocks == ["r1_k3_s1_e1_i32_o16_c1", "r2_k3_s2_e4_i16_o32_c1",
                                   "r2_k3_s2_e4_i32_o48_c1", "r3_k3_s1_e4_i48_o96_se0.25"]
    assert _last_feature_map(config) == 4
    assert (config.model.dropout_rate, config.model.survival_prob) == (0.0, 1.0)
    assert "54 training images in 3 classes, median shorter side 28px" in config.data.auto_plan
    assert "model.blocks=r1_k3_s1_e1_i32_o16_c1|" in config.data.auto_plan
    run_folder.save_config(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "config.yaml", encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    assert saved["eval"]["isize"] == 28 and saved["model"]["blocks"] == config.model.blocks
    assert saved["data"]["auto_plan"] == config.data.auto_plan


def test_keys_the_user_sets_are_kept_and_auto_can_be_switched_off(tmp_path):
    root = _folder(tmp_path)
    config = hparams.build_config("efficientnetv2-b0", "imagefolder",
                                  hparam_str="eval.isize=24,train.epochs=3,model.stem_stride=2",
                                  extra={"data.data_dir": str(root)})
    assert (config.eval.isize, config.train.isize, config.train.epochs) == (24, 24, 3)
    assert config.model.stem_stride == 2 and config.model.blocks  # a stage's stride instead
    assert _last_feature_map(config) >= 2
    off = hparams.build_config("efficientnetv2-b0", "imagefolder", hparam_str="data.auto=false",
                               extra={"data.data_dir": str(root)})
    assert (off.eval.isize, off.train.epochs, off.data.auto_plan) == (224, 30, None)


@pytest.mark.parametrize("accelerator, expected", [(False, 64), (True, 160)])
def test_large_images_are_capped_at_the_models_size_or_on_a_cpu(accelerator, expected):
    config = hparams.build_config("efficientnetv2-b0", "imagefolder")
    stats = FolderStats(train_images=50_000, num_classes=100, short_side=161, sampled=300)
    choices = {c.key: c.value for c in folder_plan.plan(config, stats, set(), accelerator)}
    assert choices["eval.isize"] == expected
    assert choices["train.epochs"] == folder_plan.MIN_EPOCHS  # 50,000 images: the fewest
    assert choices["train.batch_size"] == folder_plan.MAX_BATCH
    assert "data.pad_crop" not in choices  # images of 64 px and up: the random-area crop
    tiny = {c.key: c.value for c in folder_plan.plan(config, FolderStats(3, 2, 20, 3), set(), False)}
    assert tiny["train.batch_size"] == 2  # never more than the training images
    huge = FolderStats(2_000, 5, 4_000, 300)
    size = {c.key: c.value for c in folder_plan.plan(config, huge, set(), True)}["eval.isize"]
    assert size == 224  # B0's own size


def test_large_folders_and_fine_tuning_keep_the_models_own_network():
    scratch = hparams.build_config("efficientnetv2-b0", "imagefolder")
    large = FolderStats(train_images=200_000, num_classes=100, short_side=64, sampled=300)
    choices = {c.key: c.value for c in folder_plan.plan(scratch, large, set(), False)}
    assert "model.blocks" not in choices  # B0's own, ending at 2x2 from 64 px
    assert "model.dropout_rate" not in choices  # 10 epochs of 200,000 images: a long run
    limit = FolderStats(folder_plan.SMALL_FOLDER, 100, 64, 300)
    assert "model.blocks" not in {c.key for c in folder_plan.plan(scratch, limit, set(), False)}
    small = FolderStats(train_images=2_000, num_classes=10, short_side=40, sampled=300)
    finetune = hparams.build_config("efficientnetv2-b0", "imagefolder",
                                    hparam_str="train.ft_init_ckpt=imagenet")
    choices = {c.key: c.value for c in folder_plan.plan(finetune, small, set(), False)}
    assert "model.blocks" not in choices  # the initial weights' network
    assert (choices["model.dropout_rate"], choices["model.survival_prob"]) == (0.0, 1.0)


def test_folder_stats_count_the_training_split_and_read_sizes(tmp_path):
    _folder(tmp_path / "split", size=(50, 30), per_class=7, split="train")
    _folder(tmp_path / "split", size=(50, 30), per_class=2, split="val")
    stats = folder_stats(str(tmp_path / "split"))
    assert (stats.train_images, stats.num_classes, stats.short_side) == (21, 3, 30)
    _folder(tmp_path / "flat", size=(20, 20), per_class=10)
    assert folder_stats(str(tmp_path / "flat"), val_fraction=0.2).train_images == 24  # 8 a class
    assert folder_stats(str(tmp_path / "split")).class_counts == (7, 7, 7)


@pytest.mark.parametrize("counts, weighted", [((300, 100, 60), True), ((300, 120, 101), False),
                                              ((50,), False)])
def test_an_imbalanced_folder_keeps_the_best_balanced_accuracy(counts, weighted):
    """At 3x or more between the largest and the smallest class, data.auto keeps the
    checkpoint of the best balanced accuracy, saying why (and leaves the loss unweighted, as
    measured); a key the user set stays."""
    config = hparams.build_config("efficientnetv2-b0", "imagefolder")
    stats = FolderStats(sum(counts), len(counts), 28, 100, class_counts=counts)
    choices = {c.key: c for c in folder_plan.plan(config, stats, set(), False)}
    assert ("eval.best_metric" in choices) == weighted and "train.class_weights" not in choices
    if weighted:
        assert choices["eval.best_metric"].value == "balanced_accuracy"
        assert "5.0x the smallest" in choices["eval.best_metric"].why
        kept = folder_plan.plan(config, stats, {"eval.best_metric"}, False)
        assert "eval.best_metric" not in {c.key for c in kept}


def test_balanced_class_weights_weigh_each_class_alike():
    from efficientnetv2.training.optimization import class_weights

    weights = class_weights("balanced", [300, 100, 0])
    np.testing.assert_allclose(weights, [400 / 600, 2.0, 0.0], rtol=1e-6)
    assert 300 * weights[0] == pytest.approx(100 * weights[1])  # each class weighs alike
    assert (300 * weights[0] + 100 * weights[1]) / 400 == pytest.approx(1.0)  # mean weight 1
    assert class_weights("none", [300, 100]).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("model_name, expected", [("efficientnetv2-b0", "imagenet"),
                                                  ("efficientnet-b0", "imagenet"),
                                                  ("efficientnetv2-s", "scale_128")])
def test_fine_tuning_normalises_inputs_as_the_initial_weights_were_trained(model_name, expected):
    config = hparams.build_config(model_name, "imagefolder", hparam_str="train.ft_init_ckpt=imagenet")
    assert config.data.recipe == "default" and config.data.normalization == expected
    kept = hparams.build_config(model_name, "imagefolder",
                                hparam_str="train.ft_init_ckpt=imagenet,data.normalization=scale_255")
    assert kept.data.normalization == "scale_255"


def test_fine_tuning_from_a_run_takes_the_runs_normalisation(tmp_path):
    source = hparams.build_config("efficientnetv2-b0", "fashion_mnist")  # B0: ImageNet mean/std ...
    assert source.data.normalization != hparams.build_config(
        "efficientnetv2-b0", "imagefolderft").data.normalization  # ... where ft has scale_255
    run_folder.save_config(source, str(tmp_path / "run"))
    tuned = run_folder.build_config("efficientnetv2-b0", "imagefolder",
                                 hparam_str=f"train.ft_init_ckpt={tmp_path / 'run'}")
    assert tuned.data.normalization == source.data.normalization


def test_fine_tuning_from_a_run_takes_its_network_and_plans_the_small_folder(tmp_path):
    source = hparams.build_config("efficientnetv2-b0", "imagefolder",
                                  extra={"data.data_dir": str(_folder(tmp_path / "a"))})
    run_folder.save_config(source, str(tmp_path / "run"))
    target = _folder(tmp_path / "b", size=(40, 40), per_class=30)
    config = run_folder.build_config("efficientnetv2-b0", "imagefolder", extra={
        "data.data_dir": str(target), "train.ft_init_ckpt": str(tmp_path / "run")})
    assert config.data.augname == "none" and config.train.optimizer == "adamw"  # as from scratch
    assert config.model.blocks == source.model.blocks  # the run's compact network
    assert config.model.stem_stride == source.model.stem_stride
    assert config.train.batch_size == 16 and config.eval.isize == 40  # 81 images of 40 px
    kept = run_folder.build_config("efficientnetv2-b0", "imagefolder", hparam_str="model.stem_stride=1",
                                extra={"data.data_dir": str(target),
                                       "train.ft_init_ckpt": str(tmp_path / "run")})
    assert kept.model.stem_stride == 1


def test_a_run_written_before_newer_keys_still_loads_and_fine_tunes(tmp_path):
    """A config.yaml without the keys added since (model.bn_type, train.nesterov, ...): they
    take their defaults, or what such runs did (Nesterov momentum, relative augmentation)."""
    source = hparams.build_config("efficientnetv2-b0", "imagefolder",
                                  extra={"data.data_dir": str(_folder(tmp_path / "a"))})
    run_folder.save_config(source, str(tmp_path / "run"))
    path = tmp_path / "run" / "config.yaml"
    saved = yaml.safe_load(path.read_text())
    for section, key in (("model", "bn_type"), ("model", "headbias"), ("train", "nesterov"),
                         ("data", "aug_consts_size")):
        del saved[section][key]
    path.write_text(yaml.safe_dump(saved))
    old = run_folder.saved_config(str(tmp_path / "run"))
    assert (old.model.bn_type, old.train.nesterov, old.data.aug_consts_size) == ("bn", True, 224)
    assert hparams.model_arguments(old)[1]["bn_type"] == "bn"
    config = run_folder.build_config("efficientnetv2-b0", "imagefolder", extra={
        "data.data_dir": str(_folder(tmp_path / "b")), "train.ft_init_ckpt": str(tmp_path / "run")})
    assert config.model.blocks == source.model.blocks


def test_fine_tuning_from_a_named_models_run_takes_its_blocks_and_norm(tmp_path):
    source = hparams.build_config("efficientnetv2-b1", "imagefolder",
                                  hparam_str="data.auto=false,model.bn_type=gn")
    assert not source.model.blocks  # B1's own network, by its name
    run_folder.save_config(source, str(tmp_path / "run"))
    config = run_folder.build_config("efficientnetv2-b0", "imagefolder", extra={
        "data.data_dir": str(_folder(tmp_path / "b")), "train.ft_init_ckpt": str(tmp_path / "run")})
    from efficientnetv2.families import ARCHITECTURES

    assert config.model.blocks == list(ARCHITECTURES["efficientnetv2-b1"].blocks)
    assert config.model.bn_type == "gn" and config.model.depth_coefficient == 1.1
