"""Evaluation of a config's model on its eval split, with its EMA weights: a run's
checkpoint, pretrained weights, or (as the Trainer's base) the weights being trained.

    evaluator = Evaluator(config, model_dir)
    result = evaluator.evaluate_checkpoint(path)   # top-1, top-5, loss, confusion
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

import efficientnetv2
from efficientnetv2 import hparams, run_folder
from efficientnetv2.datasets import DataInput
from efficientnetv2.datasets.preprocessing import eval_views
from efficientnetv2.errors import UserError, first_line
from efficientnetv2.inference import inference_logits
from efficientnetv2.run_folder import checkpoints

from . import optimization, reporting
from .progressive import all_stages
from .strategies import is_chief, make_strategy


@dataclasses.dataclass
class EvalResult:
    step: int
    loss: float
    top1: float
    top5: float
    count: int
    image_size: int
    confusion: np.ndarray | None = None  # [true, predicted] counts (single-label, few classes)
    multilabel: dict | None = None  # global AP, precision and recall at 1 and 5 (multi-label)
    seconds: float = 0.0  # the evaluation's wall time
    # mean per-class recall over the classes the eval split holds (single-label data)
    balanced_accuracy: float | None = None

    def scores(self) -> str:
        """Top-1, the balanced accuracy (single-label data) and top-5, as the lines print them."""
        balanced = (f", balanced accuracy {self.balanced_accuracy:.4f}"
                    if self.balanced_accuracy is not None else "")
        return f"top-1 {self.top1:.4f}{balanced}, top-5 {self.top5:.4f}"

    def score(self, metric: str) -> float:
        """The figure `eval.best_metric` names: top1, or balanced_accuracy (top-1 where the
        data is multi-label)."""
        if metric == "balanced_accuracy" and self.balanced_accuracy is not None:
            return self.balanced_accuracy
        return self.top1


def mixed_precision_policy(config, strategy: tf.distribute.Strategy) -> str:
    """float32, or mixed_float16 on GPU / mixed_bfloat16 on TPU and CPU when
    `runtime.mixed_precision` is true (unset: on for GPU and TPU)."""
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    enabled = config.runtime.mixed_precision
    if enabled is None:
        enabled = on_tpu or on_gpu
    if not enabled:
        return "float32"
    return "mixed_float16" if on_gpu and not on_tpu else "mixed_bfloat16"


class Evaluator:
    """A config's model and its EMA on a strategy, evaluated on the eval split. The caller's
    config is not changed: `self.config` is a copy that records the class count."""

    def __init__(self, config, model_dir: str, strategy: tf.distribute.Strategy | None = None,
                 verbose: bool = True, **tpu_flags):
        self.config = config = config.copy_and_resolve_references()
        self.model_dir = model_dir
        self.strategy = strategy or make_strategy(config.runtime.strategy, **tpu_flags)
        self.chief = is_chief(self.strategy)
        self.verbose = verbose and self.chief
        self.replicas = self.strategy.num_replicas_in_sync
        self.policy = mixed_precision_policy(config, self.strategy)
        # XLA cannot compile a replica's step on logical CPU devices (variables of the other
        # devices): with several CPU replicas (tests, trying out) the steps run without it.
        on_cpu = not (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
        xla = config.runtime.xla if config.runtime.xla is not None else not on_cpu
        self.xla = bool(xla) and (self.replicas == 1 or not on_cpu)
        keras.config.set_dtype_policy(self.policy)
        seed = config.train.seed
        keras.utils.set_random_seed(seed)

        self.eval_data = DataInput(config.data, config.eval.split, False, seed=seed)
        self.eval_views = eval_views(config)
        self.train_data = self._training_split()
        data = self.train_data or self.eval_data
        self.num_classes = config.model.num_classes or data.num_classes
        if data.num_classes != self.num_classes:
            raise UserError(f"model.num_classes={self.num_classes} but {config.data.ds_name} has "
                            f"{data.num_classes} classes; unset model.num_classes")
        with config.unlocked():
            config.model.num_classes = self.num_classes
        self.class_names = data.class_names
        for split in filter(None, (self.train_data, self.eval_data)):
            count = f"{split.num_examples:,}" if split.num_examples is not None else "unknown"
            self._log(f"data: {split.split} split from {split.source.origin} ({count} images)")
        self._eval_fns = {}  # image size -> compiled evaluation
        self._step = 0  # of the weights evaluated
        self.loss_type = hparams.loss_type(config)
        self.eval_loss_fn = optimization.loss_function(self.loss_type, 0.0)
        self.stages = all_stages(config)
        with self.strategy.scope():
            self.model = self._build_model()
            self.variables = optimization.trained_variables(self.model, config.train.varsexp)
            # The EMA of the trained weights and of the batch-norm statistics, updated after
            # each training step with the same decay (train.ema_decay > 0).
            ema = config.train.ema_decay > 0
            self.averages = [optimization.average_of(v) for v in self.variables] if ema else []
            self.statistics = checkpoints.batch_norm_statistics(self.model) if ema else []
            self.statistic_averages = [optimization.average_of(v) for v in self.statistics]
        self.ema_pairs = (list(zip(self.variables, self.averages))
                          + list(zip(self.statistics, self.statistic_averages)))

    def _training_split(self) -> DataInput | None:
        """The training split, which a Trainer reads; evaluation reads the eval split only."""
        return None

    def _build_model(self) -> keras.Model:
        """The config's architecture (its trainable layers as the run trained them)."""
        name, overrides = hparams.model_arguments(self.config)
        overrides["dropout_rate"] = max(s.dropout_rate for s in self.stages)
        overrides["synchronized_bn"] = self.synchronized_bn
        model = efficientnetv2.get_model(name, self.num_classes, **overrides)
        if self.config.train.get("freeze_backbone"):
            for layer in model.layers:  # frozen batch norm also normalises as in inference
                layer.trainable = layer.name == "predictions"
        return model

    @property
    def synchronized_bn(self) -> bool:
        """Batch norm synchronized across replicas: `model.bn_type=tpu_bn` or
        `model.synchronized_bn`, and on a TPU when `model.bn_type` is unset (the original's
        default there)."""
        model = self.config.model
        on_tpu = isinstance(self.strategy, tf.distribute.TPUStrategy)
        return bool(model.synchronized_bn or model.bn_type == "tpu_bn"
                    or (model.bn_type is None and on_tpu))

    def _replica_multiple(self, key: str, batch: int) -> int:
        """`batch`, checked to split evenly over the replicas."""
        if batch % self.replicas:
            raise UserError(f"{key}={batch} must be a multiple of the {self.replicas} replicas")
        return batch

    def _log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    @property
    def step(self) -> int:
        """The training step of the weights evaluated."""
        return self._step

    @contextlib.contextmanager
    def ema_weights(self):
        """The trained variables and batch-norm statistics hold their EMA inside the block
        (when EMA is on)."""
        if not self.ema_pairs:
            yield
            return
        self._swap_ema()
        try:
            yield
        finally:
            self._swap_ema()

    @tf.function
    def _swap_ema(self):
        for variable, average in self.ema_pairs:
            value = tf.identity(variable)
            variable.assign(average)
            average.assign(value)

    def evaluate(self, image_size: int | None = None) -> EvalResult:
        """top-1, top-5 and cross-entropy on the eval split at `image_size` (default:
        `eval.isize`), with EMA weights if kept."""
        size = image_size or self.config.eval.isize
        if size not in self._eval_fns:
            self._eval_fns[size] = self._make_eval_fn(size)
        with self.ema_weights():
            try:
                totals, confusion, label_stats, per_class = self._eval_fns[size]()
            except tf.errors.ResourceExhaustedError:
                raise UserError(f"out of memory evaluating at {size}px in batches of "
                                f"{self._eval_batch()}; lower eval.batch_size or eval.isize") from None
        loss_sum, top1, top5, count = totals.numpy()
        count = max(count, 1)
        hits, images = per_class.numpy()
        confusion = confusion.numpy().astype(np.int64) if self.confusion_classes else None
        multilabel = (reporting.multilabel_metrics(label_stats.numpy(), count,
                                                   min(5, self.num_classes))
                      if self.eval_data.multiclass else None)
        balanced = (None if self.eval_data.multiclass else
                    reporting.balanced_accuracy(hits, images))
        return EvalResult(self.step, loss_sum / count, top1 / count, top5 / count, int(count),
                          size, confusion, multilabel, balanced_accuracy=balanced)

    @property
    def confusion_classes(self) -> int:
        """Classes of the confusion matrix evaluation counts (0: none, for multi-label data
        or more than reporting.CONFUSION_MAX_CLASSES classes)."""
        few = self.num_classes <= reporting.CONFUSION_MAX_CLASSES
        return self.num_classes if few and not self.eval_data.multiclass else 0

    def _eval_batch(self) -> int:
        """`eval.batch_size`, or fewer when the eval split is smaller (a batch is padded to
        its full size: two images need not be evaluated as 64)."""
        batch = self._replica_multiple("eval.batch_size", self.config.eval.batch_size)
        examples = self.eval_data.num_examples
        if examples:
            batch = min(batch, math.ceil(examples / self.replicas) * self.replicas)
        return batch

    def _make_eval_fn(self, size: int):
        """A tf.function summing (loss, top-1 hits, top-5 hits, count) and the confusion
        matrix over the eval split."""
        batch = self._eval_batch()
        examples = self.eval_data.num_examples

        def dataset_fn(context):
            per_replica = context.get_per_replica_batch_size(batch)
            dataset = self.eval_data.dataset(per_replica, size, input_context=context)
            return _padded_batches(dataset, per_replica, examples, context)
        dataset = self.strategy.distribute_datasets_from_function(dataset_fn)
        compute = tf.function(self._eval_stats, jit_compile=self.xla)

        classes = self.confusion_classes
        label_stats = reporting.MULTILABEL_STATS if self.eval_data.multiclass else 0

        per_class_width = 0 if self.eval_data.multiclass else self.num_classes

        @tf.function
        def run():
            totals, confusion = tf.zeros([4]), tf.zeros([classes, classes])
            labelled, per_class = tf.zeros([label_stats]), tf.zeros([2, per_class_width])
            for images, labels, mask in dataset:
                stats, counts, more, recall = self.strategy.run(compute, args=(images, labels, mask))
                totals += self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
                confusion += self.strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)
                labelled += self.strategy.reduce(tf.distribute.ReduceOp.SUM, more, axis=None)
                per_class += self.strategy.reduce(tf.distribute.ReduceOp.SUM, recall, axis=None)
            return totals, confusion, labelled, per_class
        return run

    def _eval_stats(self, images, labels, mask):
        logits = inference_logits(self.model, images, self.eval_views)
        losses = self.eval_loss_fn(labels, logits)
        stats = tf.stack([tf.reduce_sum(losses * mask), top_k_hits(labels, logits, 1, mask),
                          top_k_hits(labels, logits, min(5, self.num_classes), mask),
                          tf.reduce_sum(mask)])
        classes = self.confusion_classes
        if self.eval_data.multiclass:
            more, recall = reporting.multilabel_counts(labels, logits, mask), tf.zeros([2, 0])
        else:
            more, recall = tf.zeros([0]), reporting.per_class_counts(labels, logits, mask,
                                                                      self.num_classes)
        if not classes:
            return stats, tf.zeros([0, 0]), more, recall
        return stats, tf.math.confusion_matrix(tf.argmax(labels, 1), tf.argmax(logits, 1),
                                               classes, weights=mask, dtype=tf.float32), more, recall

    def evaluate_and_log(self, image_size: int | None = None) -> EvalResult:
        """`evaluate`, printed as one line, with per-class top-1 and the confusion plot at
        the final size."""
        began = time.time()
        result = self.evaluate(image_size)
        result.seconds = time.time() - began
        final_size = result.image_size == self.config.eval.isize
        where = f"{result.image_size}px" + ("" if final_size else
                                            f", this stage's size; the final eval is at "
                                            f"{self.config.eval.isize}px")
        labelled = "".join(f", {name} {value:.4f}" for name, value in (result.multilabel or {}).items())
        self._log(f"eval at step {result.step} ({where}): {result.scores()}, "
                  f"loss {result.loss:.4f}{labelled} ({result.count} "
                  f"images, {result.seconds:.1f}s)")
        if result.confusion is not None and final_size:
            names = run_folder.names_or_ids(self.class_names, self.num_classes)
            self._log(reporting.per_class_line(result.confusion, names))
            if self.chief:
                os.makedirs(self.model_dir, exist_ok=True)
                reporting.plot_confusion(result.confusion, names,
                                         os.path.join(self.model_dir, reporting.CONFUSION_FILE),
                                         f"{self.config.model.model_name} at step {result.step}")
        return result

    def evaluate_weights(self, weights: str) -> EvalResult:
        """Loads pretrained `weights` ('imagenet', an automl checkpoint, a Keras file) with
        their classifier, and evaluates them (without a run: no checkpoint is written)."""
        from efficientnetv2.pretrained import load_pretrained

        loaded = load_pretrained(self.model, self.config.model.model_name, weights,
                                 keep_classifier=True)
        self._log(f"loaded {loaded}")
        for variable, average in self.ema_pairs:  # evaluation reads the averages
            average.assign(variable)
        return self.evaluate_and_log()

    def evaluate_checkpoint(self, path: str) -> EvalResult:
        """Restores `path` (model, EMA) and evaluates it."""
        try:
            tf.train.Checkpoint(model=self.model, ema=self._ema_by_key()).restore(path).expect_partial()
        except checkpoints.DAMAGED + checkpoints.MISMATCHED as e:
            raise UserError(f"cannot restore {path} into {self.config.model.model_name} with "
                            f"{self.num_classes} classes: {first_line(e)}"
                            f"{run_folder.before_hint(path)}") from None
        self._step = checkpoints.step_of(path)
        return self.evaluate_and_log()

    def _ema_by_key(self) -> dict:
        """The EMA as a checkpoint holds it (`ema` dict, keyed by variable path)."""
        return {checkpoints.ema_key(v): a for v, a in self.ema_pairs}


def top_k_hits(labels, logits, k: int, mask=None):
    """How many examples have their label among their top-k logits; for multi-hot labels the
    first positive class, as the original's acc_top1 / acc_top5 (the argmax of the labels)."""
    target = tf.argmax(labels, axis=1, output_type=tf.int32)
    if k == 1:
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), target), tf.float32)
    else:
        hits = tf.cast(tf.math.in_top_k(target, tf.cast(logits, tf.float32), k), tf.float32)
    return tf.reduce_sum(hits if mask is None else hits * mask)


def _padded_batches(dataset: tf.data.Dataset, batch: int, examples: int | None,
                    context: tf.distribute.InputContext) -> tf.data.Dataset:
    """Eval batches as (images, labels, mask), every batch full (padding has mask 0) and as
    many batches on every input pipeline, a multiple of its replicas: no replica or worker
    ever sees an empty or missing batch, and shapes stay static."""
    def pad(images, labels):
        missing = batch - tf.shape(images)[0]
        mask = tf.pad(tf.ones(tf.shape(images)[:1]), [[0, missing]])
        return (tf.pad(images, [[0, missing], [0, 0], [0, 0], [0, 0]]),
                tf.pad(labels, [[0, missing], [0, 0]]), mask)
    dataset = dataset.map(pad)
    if examples is None:
        return dataset
    local_replicas = context.num_replicas_in_sync // context.num_input_pipelines
    batches = math.ceil(examples / context.num_input_pipelines / batch)
    batches = math.ceil(batches / local_replicas) * local_replicas
    filler = dataset.take(1).map(lambda i, y, m: (tf.zeros_like(i), tf.zeros_like(y), tf.zeros_like(m)))
    return dataset.concatenate(filler.repeat()).take(batches)

