"""Training and inference speed of our loop against keras.applications' same model trained
with `model.fit(..., jit_compile=True)`, on the same synthetic batches, in one process.

    rows = run_benchmark(["efficientnetv2-b0"], [32, 64], batch_size=32, steps=10)
    print(format_table(rows, matmul_peak()))
"""

from __future__ import annotations

import dataclasses
import resource
import tempfile
import time

import keras
import tensorflow as tf

from efficientnetv2 import hparams
from efficientnetv2.errors import UserError
from efficientnetv2.flops import count_multiply_adds
from efficientnetv2.pretrained import KERAS_APPLICATIONS
from efficientnetv2.training import optimization

CLASSES = 10
TRAIN_FLOPS_PER_MULTIPLY_ADD = 6  # 2 FLOPs per multiply-add, backward pass twice the forward


@dataclasses.dataclass
class BenchRow:
    model: str
    image_size: int
    batch_size: int
    xla: bool
    ours_step_s: float
    keras_step_s: float
    ours_latency_ms: float  # inference, batch 1
    keras_latency_ms: float
    ours_infer_images_s: float  # inference, batch 64
    keras_infer_images_s: float
    multiply_adds: int  # per image, forward
    peak_memory_mb: float

    @property
    def ours_images_s(self) -> float:
        return self.batch_size / self.ours_step_s

    @property
    def keras_images_s(self) -> float:
        return self.batch_size / self.keras_step_s

    @property
    def ratio(self) -> float:
        """Our training throughput over keras fit's (above 1: ours is faster)."""
        return self.keras_step_s / self.ours_step_s

    def utilisation(self, peak_flops: float) -> float:
        return self.ours_images_s * self.multiply_adds * TRAIN_FLOPS_PER_MULTIPLY_ADD / peak_flops


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an XLA-compiled float32 n x n matmul on the default device (the best of
    `repeats` runs): the reference for utilisation."""
    a = tf.random.stateless_normal([n, n], [1, 2])
    b = tf.random.stateless_normal([n, n], [3, 4])
    matmul = tf.function(lambda x, y: tf.matmul(x, y), jit_compile=True)
    matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - began)
    return 2 * n ** 3 / best


def synthetic_batch(batch_size: int, image_size: int, seed: int = 0):
    images = tf.random.stateless_uniform([batch_size, image_size, image_size, 3], [seed, 1], -1, 1)
    labels = tf.one_hot(tf.range(batch_size) % CLASSES, CLASSES)
    return images, labels


def bench_config(model_name: str, image_size: int, batch_size: int, steps: int, xla: bool,
                 overrides: str = ""):
    """The config both sides are timed with (`overrides`: more config keys, e.g. a smaller
    architecture)."""
    fixed = hparams.parse_hparam_str(
        f"train.batch_size={batch_size},train.isize={image_size},eval.isize={image_size},"
        f"runtime.iterations_per_loop={steps},runtime.xla={xla},runtime.mixed_precision=false,"
        "train.ema_decay=0.9999,train.weight_decay=1e-5,train.label_smoothing=0.1,"
        "train.optimizer=rmsprop")
    return hparams.build_config(model_name, "synthetic",
                                extra={**fixed, **hparams.parse_hparam_str(overrides)})


def _timed(warmup, run, steps: int) -> float:
    """Seconds per step of `run(steps)` after `warmup()` (tracing, compilation)."""
    warmup()
    began = time.perf_counter()
    run(steps)
    return (time.perf_counter() - began) / steps


def our_training(model_name: str, image_size: int, batch_size: int, steps: int, xla: bool,
                 overrides: str = ""):
    """(seconds per step, the model): our Trainer's training loop on one synthetic batch
    (`overrides`: more config keys, as for `hparam_str`)."""
    from efficientnetv2.training.trainer import Trainer

    config = bench_config(model_name, image_size, batch_size, steps, xla, overrides)
    trainer = Trainer(config, tempfile.mkdtemp(prefix="efficientnetv2_bench_"), verbose=False)
    loop = trainer.make_train_loop()
    data = tf.data.Dataset.from_tensors(synthetic_batch(batch_size, image_size)).repeat()
    iterator = iter(trainer.strategy.experimental_distribute_dataset(data))
    seconds = _timed(lambda: loop(iterator, tf.constant(2)).numpy(),
                     lambda n: loop(iterator, tf.constant(n)).numpy(), steps)
    return seconds, trainer.model


def keras_training(model_name: str, image_size: int, batch_size: int, steps: int, xla: bool,
                   overrides: str = ""):
    """(seconds per step, the model): keras.applications' model with `fit`, the same
    optimizer (RMSprop 0.9/0.9/1e-3 with EMA), loss (label smoothing 0.1) and batch."""
    config = bench_config(model_name, image_size, batch_size, steps, xla, overrides)
    constructor = KERAS_APPLICATIONS[model_name]
    kwargs = {"include_preprocessing": False} if "V2" in constructor.__name__ else {}
    model = constructor(weights=None, classes=CLASSES, classifier_activation=None,
                        input_shape=(image_size, image_size, 3), **kwargs)
    optimizer = keras.optimizers.RMSprop(config.train.lr_base, rho=0.9, momentum=0.9,
                                         epsilon=0.001, use_ema=True, ema_momentum=0.9999)
    loss = optimization.loss_function(hparams.loss_type(config), config.train.label_smoothing)
    model.compile(optimizer, loss, jit_compile=xla,
                  metrics=["accuracy"])
    data = tf.data.Dataset.from_tensors(synthetic_batch(batch_size, image_size)).repeat()
    model.fit(data, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)  # compilation
    times = _StepTimes()
    model.fit(data, epochs=1, steps_per_epoch=steps + 1, verbose=0, shuffle=False,
              callbacks=[times])
    return (times.ends[-1] - times.ends[0]) / steps, model


class _StepTimes(keras.callbacks.Callback):
    """When each training step of `fit` ended: the steady-state step time without fit's
    per-call set-up (iterator, callbacks), which a longer run would spread thinner."""

    def __init__(self):
        super().__init__()
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def inference(model: keras.Model, image_size: int, batch_size: int, xla: bool,
              repeats: int = 5) -> float:
    """Seconds per batch of `model(x, training=False)` (the best of `repeats`)."""
    forward = tf.function(lambda x: model(x, training=False), jit_compile=xla)
    images, _ = synthetic_batch(batch_size, image_size)
    forward(images).numpy()
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        forward(images).numpy()
        best = min(best, time.perf_counter() - began)
    return best


def inference_benchmark(model: keras.Model, image_size: int, batch_size: int,
                        export_dir: str | None = None, trace_dir: str | None = None,
                        warmup: int = 10, runs: int = 10) -> float:
    """The original's infer.py --mode=tf2bm (and tf1bm): seconds per batch of
    `batch_size` images of ones at `image_size`, the mean of `runs` calls after `warmup`;
    through a SavedModel written to `export_dir` and loaded back when given; the timed calls
    profiled into `trace_dir` (TensorBoard's profile tab) when given."""
    spec = tf.TensorSpec([None, image_size, image_size, 3], tf.float32)
    module = tf.Module()
    module.model = model  # its variables, saved with the function
    module.f = tf.function(lambda images: model(images, training=False), input_signature=[spec])
    if export_dir:
        tf.saved_model.save(module, export_dir, signatures=module.f.get_concrete_function())
        module = tf.saved_model.load(export_dir)
    images = tf.ones([batch_size, image_size, image_size, 3])
    for _ in range(warmup):
        module.f(images).numpy()
    if trace_dir:
        tf.profiler.experimental.start(trace_dir)
    began = time.perf_counter()
    for _ in range(runs):
        module.f(images).numpy()
    seconds = (time.perf_counter() - began) / runs
    if trace_dir:
        tf.profiler.experimental.stop()
    return seconds


def peak_memory_mb() -> float:
    """Peak memory: the GPU's since the last reset, else this process's peak RSS."""
    if tf.config.list_logical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        tf.config.experimental.reset_memory_stats("GPU:0")
        return peak / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_one(model_name: str, image_size: int, batch_size: int, steps: int, xla: bool,
              inference_batch: int = 64, overrides: str = "") -> BenchRow:
    keras.backend.clear_session()
    ours_step, ours = our_training(model_name, image_size, batch_size, steps, xla, overrides)
    ours_latency = inference(ours, image_size, 1, xla)
    ours_throughput = inference_batch / inference(ours, image_size, inference_batch, xla)
    keras_step, theirs = keras_training(model_name, image_size, batch_size, steps, xla, overrides)
    keras_latency = inference(theirs, image_size, 1, xla)
    keras_throughput = inference_batch / inference(theirs, image_size, inference_batch, xla)
    macs = count_multiply_adds(ours, image_size)
    return BenchRow(model_name, image_size, batch_size, xla, ours_step, keras_step,
                    1000 * ours_latency, 1000 * keras_latency, ours_throughput,
                    keras_throughput, macs, peak_memory_mb())


def run_benchmark(models: list[str], sizes: list[int], batch_size: int = 64, steps: int = 10,
                  xla_modes: tuple[bool, ...] = (True, False), log=print,
                  overrides: str = "") -> list[BenchRow]:
    rows = []
    for model_name in models:
        if model_name not in KERAS_APPLICATIONS:
            raise UserError(f"`bench_models`: {model_name} has no keras.applications twin; "
                            f"use {', '.join(KERAS_APPLICATIONS)}")
        for size in sizes:
            for xla in xla_modes:
                row = bench_one(model_name, size, batch_size, steps, xla, overrides=overrides)
                log(f"{model_name} {size}px XLA {'on' if xla else 'off'}: ours "
                    f"{row.ours_images_s:,.1f} images/s, keras fit {row.keras_images_s:,.1f} "
                    f"images/s, ratio {row.ratio:.2f}")
                rows.append(row)
    return rows


def format_table(rows: list[BenchRow], peak_flops: float) -> str:
    lines = [
        f"Matmul peak (XLA float32 2048x2048, this device): {peak_flops / 1e9:,.1f} GFLOP/s. "
        "Training: images/s and ms per step; ratio = ours / keras fit (above 1: ours faster); "
        "utilisation = our training FLOP/s (6 x multiply-adds x images/s) / matmul peak. "
        "Inference: latency at batch 1, throughput at batch 64 (ours / keras). "
        "Peak memory: GPU peak, or this process's peak RSS so far on a CPU.",
        "",
        "| model | px | batch | XLA | ours img/s | ours ms/step | keras fit img/s | "
        "keras ms/step | ratio | utilisation | infer b1 ms | infer b64 img/s | peak MiB |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.image_size} | {r.batch_size} | {'on' if r.xla else 'off'} | "
            f"{r.ours_images_s:,.1f} | {1000 * r.ours_step_s:,.0f} | {r.keras_images_s:,.1f} | "
            f"{1000 * r.keras_step_s:,.0f} | {r.ratio:.2f}x | {100 * r.utilisation(peak_flops):.1f}% | "
            f"{r.ours_latency_ms:.1f} / {r.keras_latency_ms:.1f} | "
            f"{r.ours_infer_images_s:,.0f} / {r.keras_infer_images_s:,.0f} | {r.peak_memory_mb:,.0f} |")
    return "\n".join(lines) + "\n"
