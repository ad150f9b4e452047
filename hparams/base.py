"""The base config: every key a run can set, with the original's defaults.

Per-model and per-dataset configs (model_configs.py, dataset_configs.py) override parts of
it; `--config_file` and `--hparam_str` override last. README.md documents every key.
"""

from __future__ import annotations

import dataclasses

import ml_collections
from ml_collections import config_dict

from efficientnetv2 import ModelOptions


def base_config() -> ml_collections.ConfigDict:
    """A fresh copy of the defaults (sections: model, train, eval, data, runtime)."""
    return ml_collections.ConfigDict({
        "model": {
            "model_name": "efficientnetv2-s",
            "blocks": config_dict.placeholder(list),  # None: the model name's blocks.
            # width_coefficient, depth_coefficient, dropout_rate, survival_prob, activation,
            # bn_momentum, bn_epsilon, synchronized_bn, data_format, feature_size,
            # depth_divisor, min_depth, stem_stride: ModelOptions' defaults (efficientnetv2/builder.py).
            **{f.name: f.default for f in dataclasses.fields(ModelOptions) if f.name != "blocks"},
            "num_classes": config_dict.placeholder(int),  # None: the dataset's.
            # bn, gn (group norm) or tpu_bn (batch norm synchronized across replicas); None:
            # tpu_bn on a TPU, bn elsewhere, as the original
            "bn_type": config_dict.placeholder(str),
        },
        "train": {
            "epochs": 350,
            "batch_size": 4096,
            "stages": 0,
            "sched": False,
            # pixels (an int), or a fraction of eval.isize (a float <= 16, e.g. 0.8 or 1.0):
            # int(eval.isize * isize) // 16 * 16, as the original.
            "isize": config_dict.placeholder(object),
            "optimizer": "rmsprop",
            "lr_sched": "exponential",
            "lr_base": 0.016,
            "lr_decay_epoch": 2.4,
            "lr_decay_factor": 0.97,
            "lr_warmup_epoch": 5.0,
            "lr_min": 0.0,
            # rmsprop's mean square of the gradients starts here: 1 as the original's main.py
            # (TF1 RMSPropOptimizer), 0 as Keras' RMSprop and the original's main_tf2.py.
            "rmsprop_ms_init": 1.0,
            "nesterov": False,  # optimizer momentum: Nesterov's instead of plain (the original's)
            "ema_decay": 0.9999,
            "weight_decay": 1e-5,
            "weight_decay_inc": 0.0,
            "weight_decay_exclude": ".*(bias|gamma|beta).*",
            "label_smoothing": 0.1,
            # none, or balanced: each class's examples weigh N / (classes * its count) in the
            # loss, so that every class counts alike (imbalanced data; data.auto's choice)
            "class_weights": "none",
            # softmax (unset), sigmoid, or custom (sigmoid cross-entropy summed over the classes,
            # the original's); recorded.
            "loss_type": config_dict.placeholder(str),
            "gclip": 0.0,
            "min_steps": 0,
            "split": "train",
            "ft_init_ckpt": config_dict.placeholder(str),
            "ft_init_ema": True,
            "varsexp": config_dict.placeholder(str),
            # train the classifier only: every other layer frozen, batch norm in inference mode
            "freeze_backbone": False,
            "seed": 0,
            "dropout_base": 0.1,  # first stage's dropout when train.sched is on.
        },
        "eval": {
            "batch_size": 64,
            "isize": config_dict.placeholder(int),
            "split": "eval",
            # average each image's logits with its mirror image's (test-time flip; evaluation,
            # export and prediction alike).
            "flip_average": False,
            # also average the logits of each image moved this many pixels up, down, left and
            # right, black pixels filling the border (0: off; 1 suits shift-crop training).
            "shift_average": 0,
            # with shift_average, also move each image diagonally (9 positions, not 5).
            "shift_diagonal": False,
            # --mode=traineval evaluates after every N-th epoch and at each stage's end.
            "every_epochs": 1,
            # what best/ keeps the highest of: top1, or balanced_accuracy (mean per-class
            # recall: for imbalanced data)
            "best_metric": "top1",
        },
        "data": {
            "ds_name": "imagenet",
            "data_dir": config_dict.placeholder(str),
            # randaug, autoaug, none (the default recipe), effnetv1_autoaug, effnetv1_randaug
            # (the legacy EfficientNet-V1 recipe) or ft (fine-tuning); see preprocessing.py.
            "augname": "randaug",
            "recipe": config_dict.placeholder(str),  # written by build_config from augname.
            "normalization": config_dict.placeholder(str),  # None: the recipe's own.
            "ra_num_layers": 2,
            "ram": 15,
            # RandAugment's Cutout and Translate move 40 and 100 pixels at magnitude 10
            # (AutoAugment's 100 and 250), at every image size, as the original. > 0: those
            # pixels hold at this image size and scale with it (224: 100 px is 45% of the image).
            "aug_consts_size": 0,
            "mixup_alpha": 0.0,
            "cutmix_alpha": 0.0,
            "ibase": 128,
            # random-area crop: fraction of the image, at least (None: the recipe's, 0.05 or 0.08).
            "min_crop_area": config_dict.placeholder(float),
            # > 0: instead of the random-area crop, pad by this many pixels and take a random
            # crop of the image's own size (a translation; default and effnetv1 recipes).
            "pad_crop": 0,
            # probability of random erasing: a random rectangle of a training image (2-40% of
            # its area) filled with random values, after the augmentation (every recipe).
            "random_erasing": 0.0,
            # eval centre crop keeps size / (size + crop_padding), never fewer than size pixels.
            "crop_padding": 32,
            "cache": True,
            "shuffle_buffer": 16384,
            "val_fraction": 0.1,  # imagefolder without val/: seeded share of each class.
            "max_train_examples": 0,  # keep only the first N training examples (0: all).
            "max_eval_examples": 0,  # keep only the first N eval examples (0: all).
            # choose unset sizes, layout, batch, epochs, warm-up, EMA and eval cadence from
            # the image folder (hparams/folder_plan.py; on in the imagefolder config).
            "auto": False,
            "auto_plan": config_dict.placeholder(str),  # written: what data.auto chose, and why
            # The original's dataset keys; unset: the registry's (datasets/registry.py).
            "num_classes": config_dict.placeholder(int),  # the data's class count
            "multiclass": config_dict.placeholder(bool),  # multi-hot labels
            "tfds_name": config_dict.placeholder(str),  # the tfds dataset read
            "try_gcs": False,  # tfds reads Google's prepared copy from GCS (online)
            # Per split (train, eval, minival, trainval): num_images (the split's size: only the
            # first N are read), tfds_split, files (a TFRecord glob in data_dir) and slice
            # (appended to the tfds split, '[:1000]'; of the sorted files for TFRecords, '20:').
            "splits": {name: {"num_images": config_dict.placeholder(int),
                              "files": config_dict.placeholder(str),
                              "tfds_split": config_dict.placeholder(str),
                              "slice": config_dict.placeholder(str)}
                       for name in ("train", "eval", "minival", "trainval")},
            # read nowhere by the original either: named as without effect when set
            "tfds_split": config_dict.placeholder(str),
            "resize": config_dict.placeholder(object),
        },
        "runtime": {
            "strategy": "default",
            "iterations_per_loop": 100,  # training steps per tf.function call, at most
            # a progress line at least this often (s): shorter calls when steps are slow
            # (0: always iterations_per_loop steps); results do not depend on it.
            "progress_seconds": 30.0,
            "mixed_precision": config_dict.placeholder(bool),  # None: on for GPU/TPU.
            # None: XLA on GPUs and TPUs, off on CPUs (where TF's own kernels are faster:
            # 2.1x the training throughput of efficientnetv2-b0 at 32 px, --mode=bench).
            "xla": config_dict.placeholder(bool),
            "keep_checkpoint_max": 5,
            # also keep one checkpoint of every this many hours for good (0: none)
            "keep_checkpoint_every_n_hours": 0.0,
            # no TensorBoard summaries of training steps (the original's host call)
            "skip_host_call": False,
            # > 0: a progress line at least every this many steps (the original's
            # log_step_count_steps, 64 there)
            "log_step_count_steps": 0,
            # checkpoints are written whole before training goes on: no effect here
            "use_async_checkpointing": False,
        },
    })
