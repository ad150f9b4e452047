import pytest
import yaml

import efficientnetv2
from efficientnetv2 import UserError, hparams, run_folder
from efficientnetv2.hparams import parse_value


def test_parse_values():
    assert parse_value("1") == 1 and isinstance(parse_value("1.5"), float)
    assert parse_value("true") is True and parse_value("False") is False
    assert parse_value("none") is None
    assert parse_value("a|b|c") == ["a", "b", "c"]
    assert parse_value("1|2") == [1, 2]
    assert parse_value("efficientnetv2-s") == "efficientnetv2-s"
    # Literals only: nothing is evaluated.
    assert parse_value("__import__('os').getcwd()") == "__import__('os').getcwd()"


def test_hparam_str_overrides_with_types():
    config = hparams.build_config("efficientnetv2-s", "imagenet",
                                  hparam_str="train.epochs=3,train.lr_base=1,model.blocks="
                                             "r1_k3_s1_e1_i8_o8_c1|r1_k3_s2_e4_i8_o16,"
                                             "train.sched=false,data.augname=autoaug")
    assert config.train.epochs == 3
    assert config.train.lr_base == 1.0 and isinstance(config.train.lr_base, float)
    assert config.model.blocks == ["r1_k3_s1_e1_i8_o8_c1", "r1_k3_s2_e4_i8_o16"]
    assert config.train.sched is False
    assert config.data.augname == "autoaug"


@pytest.mark.parametrize("hparam_str, message", [
    ("train.epoch=3", "unknown config key 'train.epoch'; closest: train.epochs"),
    ("trian.lr_base=1", "closest: train.lr_base"),
    ("train.epochs=abc", "'train.epochs' expects int, got 'abc'"),
    ("train.epochs=2.5", "'train.epochs' expects int"),
    ("train.sched=3", "'train.sched' expects bool"),
    ("train", "is neither key=value pairs nor a .yaml file"),
    ("train.epochs=3,oops", "not key=value"),
    ("model.blocks=r1_k3", "block string 'r1_k3'"),
    ("model.model_name=custom", "needs block strings"),
    ("train.batch_size=0", r"train.batch_size=0 must be in \[1, inf\)"),
    ("train.batch_size=-64", r"train.batch_size=-64 must be in \[1, inf\)"),
    ("eval.batch_size=0", "eval.batch_size=0 must be in"),
    ("eval.every_epochs=0", "eval.every_epochs=0 must be in"),
    ("runtime.iterations_per_loop=0", "iterations_per_loop=0 must be in"),
    ("train.stages=-2", r"train.stages=-2 must be in \[0, inf\)"),
    ("data.max_train_examples=-5", "max_train_examples=-5 must be in"),
    ("train.lr_base=-5", r"train.lr_base=-5.0 must be in \[0, inf\)"),
    ("train.label_smoothing=5", r"train.label_smoothing=5.0 must be in \[0, 1\)"),
    ("train.seed=-1", r"train.seed=-1 must be in \[0, 2147483647\]"),
    ("train.ema_decay=1", r"train.ema_decay=1.0 must be in \[0, 1\)"),
    ("data.mixup_alpha=-0.2", "data.mixup_alpha=-0.2 must be in"),
    ("train.epochs=-1", r"train.epochs=-1\S* must be in \[0, inf\)"),
])
def test_bad_overrides_fail_with_one_line(hparam_str, message):
    with pytest.raises(efficientnetv2.UserError, match=message) as error:
        hparams.build_config(hparam_str=hparam_str)
    assert "\n" not in str(error.value)


def test_model_and_dataset_configs():
    s = hparams.build_config("efficientnetv2-s", "imagenet")
    assert (s.train.isize, s.eval.isize, s.train.stages, s.train.sched) == (300, 384, 4, True)
    assert (s.data.ram, s.data.mixup_alpha, s.model.dropout_rate) == (10, 0.0, 0.2)
    large = hparams.build_config("efficientnetv2-l", "ImageNet")  # case-insensitive
    assert (large.data.ram, large.data.mixup_alpha, large.data.cutmix_alpha,
            large.eval.isize) == (20, 0.5, 0.5, 480)
    b3 = hparams.build_config("efficientnet-b3", "cifar10ft")
    assert (b3.model.width_coefficient, b3.model.depth_coefficient) == (1.2, 1.4)
    assert (b3.train.lr_sched, b3.train.batch_size, b3.data.ds_name) == ("constant", 512, "cifar10")
    k21 = hparams.build_config("efficientnetv2-m", "imagenet21k")
    assert (k21.train.stages, k21.train.lr_sched, hparams.loss_type(k21)) == (0, "cosine", "softmax")


# The original's (train size, eval size, augname) per model on ImageNet, and the recipe and
# normalisation that augname means (../shared/DESIGN.md, Preprocessing).
ORIGINAL_RECIPES = {
    "efficientnetv2-s": (300, 384, "randaug", "default", "scale_128"),
    "efficientnetv2-m": (384, 480, "randaug", "default", "scale_128"),
    "efficientnetv2-l": (384, 480, "randaug", "default", "scale_128"),
    "efficientnetv2-xl": (384, 512, "randaug", "default", "scale_128"),
    "efficientnetv2-b0": (192, 224, "effnetv1_autoaug", "effnetv1", "imagenet"),
    "efficientnetv2-b1": (192, 240, "effnetv1_autoaug", "effnetv1", "imagenet"),
    "efficientnetv2-b2": (208, 260, "effnetv1_autoaug", "effnetv1", "imagenet"),
    "efficientnetv2-b3": (240, 300, "effnetv1_autoaug", "effnetv1", "imagenet"),
    # V1: 0.8 of the eval size, // 16 * 16
    "efficientnet-b0": (176, 224, "effnetv1_autoaug", "effnetv1", "imagenet"),
    "efficientnet-b3": (240, 300, "effnetv1_autoaug", "effnetv1", "imagenet"),
    "efficientnet-b7": (480, 600, "effnetv1_autoaug", "effnetv1", "imagenet"),
}


@pytest.mark.parametrize("name", ORIGINAL_RECIPES)
def test_each_model_gets_the_originals_sizes_and_recipe(name):
    config = hparams.build_config(name, "imagenet")
    assert (config.train.isize, config.eval.isize, config.data.augname, config.data.recipe,
            config.data.normalization) == ORIGINAL_RECIPES[name]
    # the fine-tuning configs train at the eval size ("isize=1.0") with the ft recipe
    ft = hparams.build_config(name, "cifar10ft")
    assert ft.train.isize == config.eval.isize // 16 * 16
    assert (ft.data.recipe, ft.data.normalization) == ("ft", "scale_255")


def test_fractional_and_bad_image_sizes():
    config = hparams.build_config("efficientnetv2-b0", "imagenet", hparam_str="train.isize=0.5")
    assert config.train.isize == 112  # int(224 * 0.5) // 16 * 16
    for bad in ("train.isize=0", "train.isize=-3", "eval.isize=0", "train.isize=0.01",
                "train.isize=big"):
        with pytest.raises(efficientnetv2.UserError, match="isize") as error:
            hparams.build_config("efficientnetv2-b0", "imagenet", hparam_str=bad)
        assert "\n" not in str(error.value)


def test_image_folders_from_scratch_or_fine_tuned():
    scratch = hparams.build_config("efficientnetv2-s", "imagefolder")
    assert (scratch.data.recipe, scratch.train.optimizer, scratch.train.lr_sched) == (
        "default", "adamw", "cosine")
    assert scratch.data.auto and scratch.data.auto_plan is None  # no --data_dir: no choices
    tuned = hparams.build_config("efficientnetv2-s", "imagefolder",
                                 hparam_str="train.ft_init_ckpt=/some/run")
    # fine-tuning a folder: the same recipe (the original's fine-tuning recipe lost to it)
    assert (tuned.data.recipe, tuned.train.optimizer, tuned.data.ds_name) == (
        "default", "adamw", "imagefolder")
    assert tuned.data.auto and tuned.data.normalization == "scale_128"  # V2-S's own inputs


def test_normalisation_can_be_set_and_is_recorded():
    config = hparams.build_config("efficientnetv2-s", "cifar10ft",
                                  hparam_str="data.normalization=imagenet")
    assert (config.data.recipe, config.data.normalization) == ("ft", "imagenet")
    with pytest.raises(efficientnetv2.UserError, match="data.normalization"):
        hparams.build_config(hparam_str="data.normalization=zscore")
    with pytest.raises(efficientnetv2.UserError, match="data.augname"):
        hparams.build_config(hparam_str="data.augname=effnetv2_autoaug")


def test_every_model_and_dataset_config_is_valid():
    for name in efficientnetv2.model_names():
        for dataset in hparams.DATASET_CONFIGS:
            hparams.build_config(name, dataset)
    with pytest.raises(efficientnetv2.UserError, match="unknown dataset config"):
        hparams.build_config("efficientnetv2-s", "mnisst")


def test_yaml_file_and_precedence(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 7\n  lr_base: 0.1\nmodel.dropout_rate: 0.4\n")
    config = hparams.build_config("efficientnetv2-s", "imagenet", str(path), "train.lr_base=0.2")
    assert (config.train.epochs, config.train.lr_base, config.model.dropout_rate) == (7, 0.2, 0.4)


def test_yaml_is_safe_loaded(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(efficientnetv2.UserError, match="not valid YAML"):
        hparams.build_config(config_file=str(path))
    with pytest.raises(efficientnetv2.UserError, match="does not exist"):
        hparams.build_config(config_file=str(tmp_path / "missing.yaml"))


def test_saved_config_reloads_to_the_same_config(tmp_path):
    config = hparams.build_config("efficientnetv2-b0", "cifar10ft", hparam_str="train.epochs=2")
    path = run_folder.save_config(config, str(tmp_path / "run"))
    assert yaml.safe_load(open(path)) == config.to_dict()
    again = hparams.build_config("efficientnetv2-b0", "cifar10ft", config_file=path)
    assert again.to_dict() == config.to_dict()


def test_model_arguments_build_the_configured_model():
    config = hparams.build_config("efficientnetv2-s", "imagenet", hparam_str=(
        "model.model_name=custom,model.blocks=r1_k3_s1_e1_i8_o8_c1|r1_k3_s2_e4_i8_o16,"
        "model.feature_size=16,model.dropout_rate=0.5"))
    name, overrides = hparams.model_arguments(config)
    model = efficientnetv2.get_model(name, num_classes=3, **overrides)
    assert model.name == "custom" and model.get_layer("top_dropout").rate == 0.5
    assert model.get_layer("head").filters == 16


def test_config_file_mistakes_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="is a folder; pass a YAML file"):
        hparams.build_config("efficientnetv2-b0", "fashion_mnist", str(tmp_path))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("train:\n  epochs: 3  # r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"is not UTF-8 text \(byte \d+\); save it as UTF-8"):
        hparams.build_config("efficientnetv2-b0", "fashion_mnist", str(latin1))


def test_a_key_twice_or_a_huge_value_is_a_short_one_line_error(tmp_path):
    with pytest.raises(efficientnetv2.UserError, match="sets 'train.epochs' twice"):
        hparams.build_config(hparam_str="train.epochs=3,train.batch_size=8,train.epochs=4")
    with pytest.raises(efficientnetv2.UserError) as error:
        hparams.build_config(hparam_str="train.epochs=" + "9" * 100_000 + "x")
    assert len(str(error.value)) < 300
    bomb = tmp_path / "bomb.yaml"  # "billion laughs": 9 levels of 9 aliases, 387M strings
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb.write_text("\n".join(lines) + "\ntrain: {optimizer: *a8}\n")
    with pytest.raises(efficientnetv2.UserError) as error:
        hparams.build_config(config_file=str(bomb))
    assert len(str(error.value)) < 300
