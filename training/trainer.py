"""The custom training loop: progressive stages, weight-decay ramp, EMA, checkpoints that
resume exactly, evaluation; one device, several GPUs, several machines or a TPU.

    trainer = Trainer(config, model_dir)
    trainer.train(eval_every_epoch=False)   # evaluation alone: evaluator.Evaluator

A step is a tf.GradientTape pass run by `strategy.run`; `runtime.iterations_per_loop` steps run
inside one tf.function (the original's `iterations_per_loop`), XLA-compiled with `runtime.xla`.
Everything about a step (stage, epoch, position in the data) follows from the optimizer's step
counter, which the checkpoint holds.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from efficientnetv2 import hparams, run_folder
from efficientnetv2.datasets import DataInput
from efficientnetv2.datasets.preprocessing import describe_augmentation, describe_recipe
from efficientnetv2.errors import UserError, first_line
from efficientnetv2.run_folder import checkpoints

from . import gpu_projection, optimization, reporting
from .evaluator import EvalResult, Evaluator, top_k_hits
from .progressive import StepPlan, num_stages
from .schedules import learning_rate_schedule, weight_decay

TRACE_STEPS = 5  # training steps a `trace_dir` profile holds


class Trainer(Evaluator):
    """Trains a config's model into `model_dir`: progressive stages, the weight-decay ramp,
    EMA, checkpoints that resume exactly; evaluates as its Evaluator does."""

    def __init__(self, config, model_dir: str, strategy: tf.distribute.Strategy | None = None,
                 verbose: bool = True, **tpu_flags):
        super().__init__(config, model_dir, strategy, verbose, **tpu_flags)
        config = self.config
        self._seconds_per_step: float | None = None  # of the latest training loop
        self._estimated = False  # the run-time estimate is printed once
        # a folder for a profiler trace of TRACE_STEPS steps (after the first call, which
        # traces the step function), readable in TensorBoard's profile tab
        self.trace_dir: str | None = None
        self.plan = self._plan()
        with self.strategy.scope():
            self.dropout = next((layer for layer in self.model.layers
                                 if layer.name == "top_dropout"), None)
            self.decayed = optimization.decayed_variables(self.variables,
                                                          config.train.weight_decay_exclude)
            self.weight_decay = _scalar_variable(config.train.weight_decay, "weight_decay")
            self.ema_decay = _scalar_variable(config.train.ema_decay, "ema_decay")
            self.learning_rate = learning_rate_schedule(config.train, self.plan.steps_per_epoch,
                                                        self.plan.total_steps)
            decayed = {id(v) for v in self.decayed}
            self.optimizer = optimization.build_optimizer(
                config.train, self.learning_rate, mixed_float16=self.policy == "mixed_float16",
                weight_decay=self.weight_decay,
                not_decayed=[v for v in self.variables if id(v) not in decayed])
            self.optimizer.build(self.variables)
            self.loss_fn = optimization.loss_function(self.loss_type, config.train.label_smoothing)
        self.class_weights = self._class_weights()
        seeds = [v.value for v in self.model.non_trainable_variables if "seed_generator" in v.path]
        self.checkpoints = checkpoints.Checkpoints(
            model_dir, config.runtime.keep_checkpoint_max, write=self.chief,
            keep_every_n_hours=config.runtime.get("keep_checkpoint_every_n_hours"),
            model=self.model, optimizer=self.optimizer, seeds=seeds, ema=self._ema_by_key())

    # ----------------------------------------------------------------- set-up
    def _plan(self) -> StepPlan:
        train = self.config.train
        batch = self._replica_multiple("train.batch_size", train.batch_size)
        examples = self.train_data.num_examples
        steps_per_epoch = examples // batch
        if steps_per_epoch < 1:
            raise UserError(f"train.batch_size={batch} is larger than the {examples} training "
                            "examples; lower train.batch_size")
        total = max(int(round(train.epochs * steps_per_epoch)), int(train.min_steps or 0))
        if total < 1:
            raise UserError(f"train.epochs={train.epochs:g} of {steps_per_epoch} steps and "
                            f"train.min_steps={train.min_steps} train no step; raise one of them")
        # fewer steps than stages: the stages without a step are skipped, as the original
        return StepPlan(steps_per_epoch, total, num_stages(self.config))

    def _class_weights(self) -> tf.Tensor | None:
        """`train.class_weights` from the training split's labels (None: every example
        weighs 1)."""
        kind = self.config.train.get("class_weights") or "none"
        if kind == "none":
            return None
        source = self.train_data.source
        if source.table is None or self.train_data.multiclass:
            raise UserError(f"train.class_weights={kind} needs single-label data whose labels are "
                            "known before training (image folders, IDX files); set it to none")
        labels = source.table[-1].numpy().astype(np.int64)
        counts = np.bincount(labels, minlength=self.num_classes)
        weights = optimization.class_weights(kind, counts)
        self._log(f"class weights ({kind}): {weights.min():.2f} to {weights.max():.2f} for "
                  f"{counts.min()} to {counts.max()} training images per class")
        return tf.constant(weights)

    def _training_split(self) -> DataInput:
        return DataInput(self.config.data, self.config.train.split, True, seed=self.config.train.seed)

    def _build_model(self) -> keras.Model:
        """The architecture, with the initial weights of `train.ft_init_ckpt` if set."""
        model = super()._build_model()
        init = self.config.train.ft_init_ckpt
        if init:
            from .restore import load_initial_weights
            load_initial_weights(model, init, self.config.model.model_name,
                                 self.config.train.ft_init_ema, log=self._log)
        return model

    @property
    def step(self) -> int:
        """The step the optimizer has taken (restored from the latest checkpoint)."""
        return int(self.optimizer.iterations.numpy())

    # ----------------------------------------------------------------- steps
    def loss_and_gradients(self, images, labels, decay):
        """Loss, gradients and (loss sum, correct, count) of one replica's batch."""
        global_batch = self.config.train.batch_size
        with tf.GradientTape() as tape:
            logits = tf.cast(self.model(images, training=True), tf.float32)
            per_example = self.loss_fn(labels, logits)
            if self.class_weights is not None:  # a mixed label weighs as its mix of classes
                per_example *= tf.reduce_sum(labels * self.class_weights, axis=-1)
            loss = tf.reduce_sum(per_example) / global_batch
            if self.config.train.optimizer != "adamw" and self.decayed:
                loss += decay * optimization.l2_loss(self.decayed) / self.replicas
            scaled = self.optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, self.variables)
        stats = tf.stack([tf.reduce_sum(per_example), top_k_hits(labels, logits, 1),
                          tf.cast(tf.shape(labels)[0], tf.float32)])
        return grads, stats

    def make_train_loop(self):
        """A tf.function running `steps` training steps from a distributed iterator."""
        train = self.config.train
        total = self.plan.total_steps
        compute = self.loss_and_gradients
        if self.xla and self.replicas > 1 and not self.synchronized_bn:
            # Cross-replica sums (of gradients here, of batch statistics with synchronized
            # BN) cannot run inside an XLA function: compile the forward and backward pass.
            compute = tf.function(self.loss_and_gradients, jit_compile=True)

        def step(images, labels):
            iterations = self.optimizer.iterations
            decay = weight_decay(train.weight_decay, train.weight_decay_inc, iterations, total)
            self.weight_decay.assign(decay)
            self.ema_decay.assign(optimization.ema_decay_at(train.ema_decay, iterations))
            grads, stats = compute(images, labels, decay)
            self.optimizer.apply(grads, self.variables)
            ema_decay = tf.convert_to_tensor(self.ema_decay)  # read once for every average
            for value, average in self.ema_pairs:
                average.assign(ema_decay * average + (1.0 - ema_decay) * value)
            return stats

        if self.xla and self.replicas == 1:
            step = tf.function(step, jit_compile=True)

        @tf.function
        def loop(iterator, steps):
            totals = tf.zeros([3])
            for _ in tf.range(steps):
                images, labels = next(iterator)
                stats = self.strategy.run(step, args=(images, labels))
                totals += self.strategy.reduce(tf.distribute.ReduceOp.SUM, stats, axis=None)
            return totals
        return loop

    def stage_batches(self, stage, step: int):
        """A distributed iterator over stage `stage`'s data, positioned at `step`."""
        batch = self.config.train.batch_size
        done = (step - self.plan.stage_start(stage.index)) * batch
        augmentation = self.train_data.augmentation(stage)
        seed = self.config.train.seed + stage.index

        def dataset_fn(context: tf.distribute.InputContext):
            return self.train_data.dataset(
                context.get_per_replica_batch_size(batch), stage.image_size, augmentation,
                context, seed=seed, skip=done)
        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))


    # ----------------------------------------------------------------- train
    def train(self, eval_every_epoch: bool = False) -> EvalResult | None:
        """Trains to the end (resuming from the latest checkpoint), evaluates, plots. The
        chief holds the run folder meanwhile: a second run into it is refused."""
        if not self.chief:
            return self._train(eval_every_epoch)
        checkpoints.check_writable(self.model_dir)
        with checkpoints.run_lock(self.model_dir), _sigterm_interrupts():
            return self._train(eval_every_epoch)

    def _train(self, eval_every_epoch: bool) -> EvalResult | None:
        plan, config = self.plan, self.config
        run_folder.check_resumable(self.model_dir, config, self.class_names)
        restored = self.checkpoints.restore_latest(self._log)  # before writing anything: a mismatch
        if self.chief:                                  # must leave the folder as it was
            run_folder.save_config(config, self.model_dir)
            run_folder.write_class_names(self.model_dir, self.class_names)
        start = self.step
        if restored:
            self._log(f"resumed from {restored}: step {start}, epoch {plan.epoch_of(start) + 1}, "
                      f"stage {plan.stage_of(start) + 1}")
        log = reporting.MetricsLog(self.model_dir, start, enabled=self.chief,
                                   summaries=("eval",) if config.runtime.get("skip_host_call")
                                   else ("train", "eval"))
        progress = reporting.Progress(self.verbose)
        self._log(f"training {config.model.model_name} on {config.data.ds_name}: "
                  f"{plan.total_steps} steps ({plan.steps_per_epoch}/epoch, global batch "
                  f"{config.train.batch_size} = {config.train.batch_size // self.replicas} per "
                  f"replica x {self.replicas} replica(s), {self.policy}), "
                  f"{len(self.stages)} stage(s): "
                  + ", ".join(f"{s.image_size}px" for s in self.stages)
                  + f"; eval at {config.eval.isize}px; {describe_recipe(config)}, "
                  f"{config.train.optimizer} lr {config.train.lr_base:g} {config.train.lr_sched}"
                  + (f", initial weights {config.train.ft_init_ckpt}" if config.train.ft_init_ckpt
                     else ""))
        if config.data.get("auto_plan"):
            self._log(config.data.auto_plan)
        for note in hparams.without_effect(config):
            self._log(note)
        result = None
        if restored and eval_every_epoch and self._evaluated_after(start) and start < plan.total_steps:
            # a kill between an epoch's checkpoint and its evaluation: evaluate it now
            size = self._eval_size(self.stages[plan.stage_of(start - 1)])
            if (start, size) not in log.evaluated:
                result = self._evaluate_in_run(log, size)
        try:
            while self.step < plan.total_steps:
                result = self._train_stage(self.stages[plan.stage_of(self.step)], log, progress,
                                           eval_every_epoch) or result
        except KeyboardInterrupt as stop:
            path = self.checkpoints.save(self.step)
            sigterm = isinstance(stop, Terminated)
            self._log(f"\n{'stopped by SIGTERM' if sigterm else 'interrupted'}: saved {path} at "
                      f"step {self.step}; rerun the same command to resume")
            raise SystemExit(143 if sigterm else 130) from None
        except tf.errors.ResourceExhaustedError:
            raise UserError(
                f"out of memory training at {self.stages[plan.stage_of(self.step)].image_size}px "
                f"in batches of {config.train.batch_size}; the last checkpoint "
                f"({self.checkpoints.latest or 'none'}) is kept: lower train.batch_size (in "
                "another `model_dir`) or train.isize, or set runtime.mixed_precision") from None
        except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
            if config.data.ds_name != "imagefolder":
                raise
            from efficientnetv2.datasets.imagefolder import unusable

            paths = [p.decode() for p in self.train_data.source.table[0].numpy()]
            gone = unusable(paths) or [first_line(e, 160)]
            raise UserError(
                f"{len(gone)} image(s) went away or stopped being images during training "
                f"({', '.join(gone[:3])}{' ...' if len(gone) > 3 else ''}); the last checkpoint "
                f"({self.checkpoints.latest or 'none'}) is kept: rerun the same command to "
                "resume (the folder is scanned again, without them)") from None
        except (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError) as e:
            if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
                raise
            latest = self.checkpoints.latest
            raise UserError(
                f"a worker of this multi-worker run stopped ({first_line(e)}); the last "
                f"checkpoint is {latest or 'none'} (step {checkpoints.step_of(latest) if latest else 0}):"
                " restart every worker with the same command to resume from it") from None
        if result is None or result.step != self.step or result.image_size != config.eval.isize:
            logged = (self.step, config.eval.isize) in log.evaluated  # a finished run, rerun
            result = self._evaluate_in_run(None if logged else log)
        if self.chief:
            path = reporting.plot_curves(log.path, os.path.join(self.model_dir, reporting.CURVES_FILE),
                                         f"{config.model.model_name} on {config.data.ds_name}")
            self._log(f"wrote {path}")
        return result

    def _train_stage(self, stage, log, progress, eval_every_epoch) -> EvalResult | None:
        plan, config = self.plan, self.config
        end = plan.stage_start(stage.index + 1)
        if self.dropout:  # the step function is traced below, with this rate
            self.dropout.rate = stage.dropout_rate
        loop = self.make_train_loop()
        iterator = self.stage_batches(stage, self.step)
        self._log(f"stage {stage.index + 1}/{len(self.stages)}: {stage.image_size}px, "
                  f"{describe_augmentation(config.data.augname, stage.ram)}, "
                  f"mixup {stage.mixup_alpha:g}, "
                  f"cutmix {stage.cutmix_alpha:g}, dropout {stage.dropout_rate:g}")
        result = None
        while self.step < end:
            step = self.step
            epoch = plan.epoch_of(step)
            epoch_start = epoch * plan.steps_per_epoch
            epoch_steps = min(plan.steps_per_epoch, plan.total_steps - epoch_start)
            if step == epoch_start or progress.epoch_steps != epoch_steps:
                progress.start_epoch(epoch, math.ceil(plan.total_steps / plan.steps_per_epoch),
                                     epoch_steps)
            steps = min(self._loop_steps(), plan.next_boundary(step) - step)
            tracing = bool(self.trace_dir) and self._seconds_per_step is not None
            if tracing:
                steps = min(steps, TRACE_STEPS)
                tf.profiler.experimental.start(self.trace_dir)
            began = time.time()
            try:
                loss_sum, correct, count = loop(iterator, tf.constant(steps)).numpy()
            finally:
                if tracing:
                    tf.profiler.experimental.stop()
            seconds = time.time() - began
            if tracing:
                self._log(f"wrote a profiler trace of steps {step + 1}-{step + steps} into "
                          f"{self.trace_dir} (TensorBoard --logdir={self.trace_dir}, profile tab)")
                self.trace_dir = None
            timed = self._seconds_per_step is not None  # the first loop also traces
            self._seconds_per_step = seconds / steps
            loss, accuracy = loss_sum / max(count, 1), correct / max(count, 1)
            if not np.isfinite(loss):
                latest = self.checkpoints.latest
                raise UserError(
                    f"the loss became {loss} between steps {step} and {step + steps}; stopped "
                    "without saving, " + (f"the last good checkpoint ({latest}) is kept. Lower "
                    "train.lr_base or set train.gclip, then rerun to resume from it" if latest
                    else "before any checkpoint. Lower train.lr_base or set train.gclip, then "
                    "rerun (it starts afresh)"))
            now = self.step
            values = {"epoch": now / plan.steps_per_epoch, "stage": stage.index,
                      "image_size": stage.image_size, "ram": stage.ram,
                      "mixup": stage.mixup_alpha, "cutmix": stage.cutmix_alpha,
                      "dropout": self.dropout.rate if self.dropout else 0.0,
                      "learning_rate": float(self.learning_rate(now - 1)),
                      "weight_decay": float(self.weight_decay.numpy()),
                      "loss": loss, "accuracy": accuracy,
                      "images_per_sec": count / seconds, "seconds": seconds}
            log.write("train", now, **values)
            progress.update(now - epoch_start, seconds / steps, loss, accuracy,
                            values["learning_rate"], stage.image_size, values["images_per_sec"],
                            run_steps_left=plan.total_steps - now)
            if timed and not self._estimated:
                self._estimated = True
                self._log(self._run_estimate(stage, seconds / steps, plan.total_steps - now))
            if now % plan.steps_per_epoch == 0 or now in (end, plan.total_steps):
                self.checkpoints.save(now)
                if eval_every_epoch and self._evaluated_after(now):
                    result = self._evaluate_in_run(log, self._eval_size(stage))
        return result

    def _loop_steps(self) -> int:
        """Steps of the next `tf.function` call: `runtime.iterations_per_loop` at most, and
        few enough that a progress line comes every `runtime.progress_seconds` (the first
        call, which also traces, runs one step; not across workers, whose clocks differ), and
        at most `runtime.log_step_count_steps` when set. Steps and results do not depend on it."""
        most = self.config.runtime.iterations_per_loop
        if self.config.runtime.get("log_step_count_steps"):
            most = min(most, self.config.runtime.log_step_count_steps)
        every = self.config.runtime.get("progress_seconds") or 0
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            every = 0  # every worker must run the same steps per call: by steps only
        if self._seconds_per_step is None:
            return 1 if every > 0 else most
        if every <= 0:
            return most
        return int(max(1, min(most, every / max(self._seconds_per_step, 1e-9))))

    def _run_estimate(self, stage, seconds_per_step: float, steps_left: int) -> str:
        """The run's time left at this stage's step time; on a CPU, when hours, what one GPU
        would take by the rates measured on an H200 (gpu_projection.py)."""
        left = seconds_per_step * steps_left
        line = (f"estimated time left here: {reporting.duration(left)} ({steps_left:,} steps at "
                f"{seconds_per_step:.2f} s/step, {stage.image_size}px)")
        if left >= 3600 and not tf.config.list_physical_devices("GPU"):
            from efficientnetv2.flops import count_multiply_adds

            rate = gpu_projection.gpu_images_per_sec(stage.image_size,
                                                count_multiply_adds(self.model, stage.image_size))
            images = steps_left * self.config.train.batch_size
            line += (f"; one GPU would take about {reporting.duration(images / rate)} "
                     f"(a projection from an H200's measured rates, docs/gpu.md)")
        return line

    def _evaluated_after(self, step: int) -> bool:
        """Whether training that evaluates (traineval) does so at this step: after every
        `eval.every_epochs`-th epoch and at each stage's end."""
        plan = self.plan
        epoch_end = step % plan.steps_per_epoch == 0
        return (epoch_end and plan.epoch_of(step) % self.config.eval.every_epochs == 0
                or plan.stage_start(plan.stage_of(step)) == step or step == plan.total_steps)

    def _eval_size(self, stage) -> int:
        """Where a progressive stage before the last is evaluated: at its own training size
        (a network trained at 20 px does not yet work at 28 px, and a figure taken there
        would say nothing about its progress); the last stage at `eval.isize`."""
        return stage.image_size if stage.index < len(self.stages) - 1 else self.config.eval.isize

    def _evaluate_in_run(self, log: reporting.MetricsLog | None,
                         image_size: int | None = None) -> EvalResult:
        """An evaluation during training: logged to `log` (when given), and the checkpoint
        kept in `best/` when it is the best at the final size."""
        result = self.evaluate_and_log(image_size)
        if log is not None:
            log.write("eval", result.step, epoch=result.step / self.plan.steps_per_epoch,
                      image_size=result.image_size, loss=result.loss, accuracy=result.top1,
                      balanced_accuracy=result.balanced_accuracy,
                      top5=result.top5, images_per_sec=result.count / result.seconds,
                      seconds=result.seconds, **(result.multilabel or {}))
        if result.image_size == self.config.eval.isize:  # `best/` compares like with like
            metric = self.config.eval.get("best_metric") or "top1"
            self.checkpoints.save_if_best(result.step, result.score(metric), metric)
        return result


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler preempting the machine) during training: handled as Ctrl-C is."""


@contextlib.contextmanager
def _sigterm_interrupts():
    """While training, SIGTERM raises `Terminated` in the main thread (elsewhere: unchanged),
    so that the run saves a checkpoint and exits within the grace period."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _scalar_variable(value: float, name: str) -> tf.Variable:
    """A float the training step sets (same on every replica)."""
    return tf.Variable(float(value), trainable=False, name=name,
                       aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
