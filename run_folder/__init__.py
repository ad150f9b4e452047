"""A run folder (a run's `model_dir`): `config.yaml`, `classes.txt`, checkpoints `ckpt-N`
(with the EMA weights), `best/`, `run.lock` and SavedModel exports.

This module reads one for evaluation, export, prediction and fine-tuning (config, class
names, the restored inference model); `checkpoints` writes, locks and restores the
checkpoints training leaves there. Nothing here trains."""

from __future__ import annotations

import dataclasses
import os

import keras
import ml_collections
import tensorflow as tf
import yaml

import efficientnetv2
from efficientnetv2 import hparams
from efficientnetv2.errors import UserError, first_line, quoted
from efficientnetv2.files import write_text
from efficientnetv2.hparams import model_arguments
from efficientnetv2.hparams.base import base_config
from efficientnetv2.hparams.overrides import apply_overrides

from .checkpoints import (
    DAMAGED,
    MISMATCHED,
    batch_norm_statistics,
    ema_key,
    has_checkpoints,
    resolve_checkpoint,
    step_of,
)

CLASSES_FILENAME = "classes.txt"
SAVED_MODEL = "saved_model.pb"

CONFIG_FILENAME = "config.yaml"  # the run's final config, which reads it back everywhere


def save_config(config: ml_collections.ConfigDict, directory: str) -> str:
    """Writes the run's final config as YAML in `directory` (whole or not at all); returns
    the path."""
    os.makedirs(directory, exist_ok=True)
    return write_text(os.path.join(directory, CONFIG_FILENAME),
                      yaml.safe_dump(config.to_dict(), sort_keys=False))



def write_class_names(directory: str, names: list[str]) -> str:
    """Writes the class names, one per line, beside the run's config (whole or not at all)."""
    return write_text(os.path.join(directory, CLASSES_FILENAME), "".join(f"{name}\n" for name in names))


def folder_of(checkpoint: str) -> str | None:
    """The run folder (holding config.yaml) of a checkpoint in it or in its best/."""
    directory = os.path.dirname(checkpoint)
    for folder in (directory, os.path.dirname(directory)):  # model_dir or model_dir/best
        if os.path.exists(os.path.join(folder, CONFIG_FILENAME)):
            return folder
    return None


def saved_model_version(path: str) -> str | None:
    """The SavedModel folder that `path` names: itself, or the newest numbered version of an
    export folder; None when it is neither."""
    if not os.path.isdir(path):
        return None
    if os.path.exists(os.path.join(path, SAVED_MODEL)):
        return path
    versions = [int(v) for v in os.listdir(path)
                if v.isdigit() and os.path.exists(os.path.join(path, v, SAVED_MODEL))]
    return os.path.join(path, str(max(versions))) if versions else None


def is_run(path: str) -> bool:
    """A run folder or a checkpoint of one (rather than an automl checkpoint or a file)."""
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, CONFIG_FILENAME))
    return tf.io.gfile.exists(path + ".index") and folder_of(path) is not None


def check_resumable(folder: str, config: ml_collections.ConfigDict, names: list[str]) -> None:
    """A UserError when `folder` holds a run with checkpoints on other data than `config`
    (another dataset, preprocessing recipe or class names; a moved `data_dir` is fine) or of
    another batch size: resuming would mix them. Nothing is written."""
    if not (is_run(folder) and has_checkpoints(folder)):
        return
    saved = saved_config(folder)
    changed = [f"{key} {saved.data.get(key)!r} -> {config.data.get(key)!r}"
               for key in ("ds_name", "recipe")  # (runs older than a key do not record it)
               if saved.data.get(key) is not None and saved.data.get(key) != config.data.get(key)]
    before = saved_class_names(folder)
    if before is not None and before != list(names):
        changed.append(f"classes {quoted(before, 60)} -> {quoted(list(names), 60)}")
    start_from_it = (f"train into another `model_dir`, adding `hparam_str`=train.ft_init_ckpt="
                     f"{folder} to start from its weights")
    if changed:
        raise UserError(f"{folder} holds a run on other data ({'; '.join(changed)}); nothing was "
                        f"changed: {start_from_it}")
    if saved.train.batch_size != config.train.batch_size:  # its step counter counts batches
        raise UserError(f"{folder} holds a run of train.batch_size={saved.train.batch_size}, not "
                        f"{config.train.batch_size}: its steps would land elsewhere in the data; "
                        f"nothing was changed: resume with train.batch_size="
                        f"{saved.train.batch_size}, or {start_from_it}")


def before_hint(checkpoint: str) -> str:
    """'; the checkpoint before it is PATH' when the folder keeps an older one, for the
    error of a checkpoint that cannot be read."""
    state = tf.train.get_checkpoint_state(os.path.dirname(checkpoint))
    paths = [os.path.join(os.path.dirname(checkpoint), os.path.basename(p))
             for p in (state.all_model_checkpoint_paths if state else [])]
    older = [p for p in paths if p != checkpoint and step_of(p) < step_of(checkpoint)
             and tf.io.gfile.exists(p + ".index")]
    return f"; the checkpoint before it is {older[-1]}" if older else ""


def run_checkpoint(path: str) -> str:
    """A checkpoint of this project's training from a prefix or run folder; a one-line error
    for a SavedModel or a checkpoint without its run's config."""
    if saved_model_version(path):
        raise UserError(f"{path} is a SavedModel export, not a checkpoint: pass it as "
                        "`saved_model` (predict), or give the run's `model_dir` / `checkpoint`")
    checkpoint = resolve_checkpoint(path)
    if folder_of(checkpoint) is None:
        raise UserError(f"no {CONFIG_FILENAME} beside {checkpoint}: not a checkpoint "
                        "written by this project's training")
    return checkpoint


def build_config(model_name: str = "efficientnetv2-s", dataset_cfg: str = "imagenet",
                 config_file: str | None = None, hparam_str: str = "",
                 extra: dict | None = None, sweeps: str = "") -> ml_collections.ConfigDict:
    """hparams.build_config, given the saved config of the run `train.ft_init_ckpt` names (a
    run folder or a checkpoint of one), whose network fine-tuning takes."""
    sources = hparams.user_overrides(config_file, hparam_str, extra, sweeps)
    init = next((flat["train.ft_init_ckpt"] for flat in reversed(sources.values())
                 if flat.get("train.ft_init_ckpt")), None)
    run = None
    if init and is_run(init):
        run = saved_config(init if os.path.isdir(init) else folder_of(init))
    return hparams.build_config(model_name, dataset_cfg, config_file, hparam_str, extra, sweeps,
                                initial_run=run)


def run_to_evaluate(folder: str | None) -> str | None:
    """`folder` when it is a run folder, whose saved config evaluation uses; None when there
    is none there yet; a UserError for checkpoints without the config.yaml their run wrote."""
    if not folder or not os.path.isdir(folder):
        return None
    if is_run(folder):
        return folder
    if has_checkpoints(folder):
        raise UserError(f"{folder} holds checkpoints but not the {CONFIG_FILENAME} its run wrote; "
                        "put it back (evaluation needs the run's settings)")
    return None


def run_config(checkpoint: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """The saved config of a checkpoint's run, with `overrides` (see saved_config)."""
    return saved_config(folder_of(checkpoint), overrides)


# Keys added with a default other than what runs written before them did.
BEFORE_THE_KEY = {"train.nesterov": True, "data.aug_consts_size": 224, "train.rmsprop_ms_init": 0.0,
                  "model.bn_type": "bn"}


def _multi_label(ds_name: str | None) -> bool:
    from efficientnetv2.datasets.registry import REGISTRY

    return bool(ds_name in REGISTRY and REGISTRY[ds_name].multiclass)


def saved_config(folder: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
    """A run folder's saved config with `overrides` from `hparam_str` ({'eval.isize': ...});
    keys added since it was written (e.g. eval.flip_average, model.bn_type) take their
    defaults, or BEFORE_THE_KEY's value where that is what the run did, so older runs load,
    evaluate, export and take `eval.` overrides."""
    path = os.path.join(folder, CONFIG_FILENAME)
    try:
        with open(path, encoding="utf-8") as f:
            config = ml_collections.ConfigDict(yaml.safe_load(f))
    except FileNotFoundError:
        raise UserError(f"the run's config {path} is missing; put back the config.yaml the run "
                        "wrote (its checkpoints cannot be read without it)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError) as e:
        raise UserError(f"the run's config {path} is damaged ({first_line(e, 100)}); put back "
                        "the config.yaml the run wrote") from None
    for section, values in base_config().items():
        if section not in config:
            config[section] = ml_collections.ConfigDict()
        for key, value in values.items():
            if key not in config[section]:
                config[section][key] = BEFORE_THE_KEY.get(f"{section}.{key}", value)
    if not config.train.get("loss_type") and _multi_label(config.data.get("ds_name")):
        config.train.loss_type = "sigmoid"  # unset meant sigmoid for multi-label data then
    apply_overrides(config, overrides or {}, "`hparam_str`")
    return config


def saved_class_names(folder: str) -> list[str] | None:
    """The class names a run folder recorded (`classes.txt`), or None."""
    path = os.path.join(folder, CLASSES_FILENAME)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def names_or_ids(names, count: int) -> list[str]:
    """`names` when there is one for each of `count` classes, else the class ids."""
    return list(names) if names and len(names) == count else [str(i) for i in range(count)]


def class_names(checkpoint: str, config) -> list[str]:
    """The run's class names: `classes.txt` of the run, else the dataset's own names (when
    they are known without its files), else the class ids."""
    saved = saved_class_names(folder_of(checkpoint))
    if saved is not None:
        if len(saved) != config.model.num_classes:
            raise UserError(f"{os.path.join(folder_of(checkpoint), CLASSES_FILENAME)} names "
                            f"{len(saved)} class(es) for a model of {config.model.num_classes}; "
                            "put back the classes.txt the run wrote (one name per line)")
        return saved
    from efficientnetv2.datasets.registry import get_spec

    return names_or_ids(get_spec(config.data.ds_name).class_names, config.model.num_classes)


def _float32_model(config: ml_collections.ConfigDict) -> keras.Model:
    """`config`'s model with `model.num_classes` classes in float32, whatever the policy."""
    name, overrides = model_arguments(config)
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        return efficientnetv2.get_model(name, config.model.num_classes, **overrides)
    finally:
        keras.config.set_dtype_policy(policy)


@dataclasses.dataclass
class RestoredModel:
    model: keras.Model
    config: ml_collections.ConfigDict
    class_names: list[str]
    checkpoint: str
    ema: bool  # whether the EMA weights were loaded


def restore_model(path: str, use_ema: bool = True,
                  eval_overrides: dict | None = None) -> RestoredModel:
    """The float32 inference model of a run's checkpoint (prefix or run folder), with the
    EMA weights when the checkpoint has them and `use_ema`. `eval_overrides` ({'eval.isize':
    ..., 'eval.flip_average': ...}) replace the run's saved evaluation settings, which
    export and prediction serve."""
    checkpoint = run_checkpoint(path)
    config = run_config(checkpoint, eval_overrides)
    model = _float32_model(config)
    averaged = model.trainable_variables + batch_norm_statistics(model)
    averages = {ema_key(v): tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False)
                for v in averaged}
    try:
        tf.train.Checkpoint(model=model, ema=averages).restore(checkpoint).expect_partial()
    except DAMAGED + MISMATCHED as e:
        raise UserError(f"cannot restore {checkpoint}: {first_line(e)}{before_hint(checkpoint)}") from None
    saved = {key.split("/")[1] for key, _ in tf.train.list_variables(checkpoint)
             if key.startswith("ema/")}
    ema = use_ema and bool(saved)
    if ema:
        for variable in averaged:  # checkpoints from before the statistics were averaged
            key = ema_key(variable)  # have none for them: those keep the trained values
            if key.replace(".", "..") in saved:  # checkpoint keys escape "." as ".."
                variable.assign(averages[key])
    return RestoredModel(model, config, class_names(checkpoint, config), checkpoint, ema)


def pretrained_model(config: ml_collections.ConfigDict, weights: str) -> RestoredModel:
    """The float32 inference model of `config`'s model with pretrained `weights` ('imagenet',
    an automl checkpoint, a Keras `.h5` / `.weights.h5` file) and their own classifier, for
    the dataset of `config` (its classes and names): prediction and export without a run."""
    from efficientnetv2 import released
    from efficientnetv2.datasets.registry import get_spec
    from efficientnetv2.pretrained import load_pretrained

    spec = get_spec(config.data.ds_name)
    class_names = spec.class_names
    classes = config.model.num_classes or spec.num_classes
    if released.is_released(weights) and not config.model.num_classes:
        classes = released.num_classes(weights)  # a 21k head keeps its 21,843 classes
        class_names = class_names if classes == spec.num_classes else None
    if not classes:
        raise UserError(f"dataset {config.data.ds_name!r} names no class count; set "
                        "model.num_classes to the classes of the weights")
    with config.unlocked():
        config.model.num_classes = classes
    model = _float32_model(config)
    load_pretrained(model, config.model.model_name, weights, keep_classifier=True)
    return RestoredModel(model, config, names_or_ids(class_names, classes), weights, ema=False)


