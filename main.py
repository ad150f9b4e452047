"""Command line: `python main.py --mode=MODE --model_name=NAME --dataset_cfg=NAME ...`.

See README.md for every mode and flag. User mistakes print one line and exit with status 2.
"""

from __future__ import annotations

import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The checkout's folders (datasets/, hparams/, ...) are installed as efficientnetv2.*; drop the
# script's folder from the path so that they never shadow Hugging Face's `datasets` here.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
try:
    import efficientnetv2  # noqa: E402,F401
except ModuleNotFoundError:
    sys.exit("error: the project is not installed; run 'make demo' (or pip install -e .) first")

from absl import app, flags, logging  # noqa: E402

from efficientnetv2.errors import UserError  # noqa: E402

MODES = ("summary", "train", "eval", "traineval", "export", "predict", "inspect_data",
         "bench", "study")
# The original's infer.py modes, and what they run here (tf1bm and tf2bm: one inference
# benchmark; tf1export: this project's export, a SavedModel of the EMA weights).
INFER_MODES = {"tf2eval": "eval", "tf2bm": "inference_bench", "tf1bm": "inference_bench",
               "tf1export": "export"}

flags.DEFINE_enum("mode", "summary", MODES + tuple(INFER_MODES), "What to do (tf2eval, tf2bm, "
                  "tf1bm, tf1export: the original infer.py's modes).")
flags.DEFINE_string("model_name", "efficientnetv2-s",
                    "Model name (see --mode=summary --model_name=all), 'custom' with "
                    "model.blocks, or 'all' for --mode=summary.")
flags.DEFINE_string("dataset_cfg", "imagenet", "Dataset config name (case-insensitive).")
flags.DEFINE_string("hparam_str", "", "Config overrides: 'train.epochs=10,model.blocks=a|b', "
                    "or a YAML file's path (as the original).")
flags.DEFINE_string("sweeps", "", "More config overrides, applied after --hparam_str (the "
                    "original's).")
flags.DEFINE_string("config_file", None, "YAML file of config overrides.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and the run's config.")
flags.DEFINE_string("data_dir", None, "Directory of the dataset's files (sets data.data_dir).")
flags.DEFINE_integer("image_size", None, "Image size of evaluation and inference (sets "
                     "eval.isize; --mode=summary: the size summarised).", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Batch size of evaluation and inference (sets "
                     "eval.batch_size; --mode=tf2bm/tf1bm: 16 when unset, as infer.py).",
                     lower_bound=1)
flags.DEFINE_bool("mixed_precision", None, "Sets runtime.mixed_precision (unset: on for GPU "
                  "and TPU).")
flags.DEFINE_bool("use_tpu", False, "Train and evaluate on the TPU --tpu names "
                  "(runtime.strategy=tpu), as the original's.")
flags.DEFINE_string("tpu_job_name", None, "The TPU workers' job name (default: worker).")
flags.DEFINE_string("eval_name", None, "--mode=eval: its TensorBoard folder is "
                    "tensorboard/eval_<name> (default: tensorboard/eval).")
flags.DEFINE_bool("archive_ckpt", True, "--mode=eval: keep the best checkpoint evaluated "
                  "(by top-1) in <run>/best, as training's evaluations do.")
flags.DEFINE_bool("export_to_tpu", False, "The original's TPU metagraph export: no effect here "
                  "(the SavedModel serves on CPU, GPU and TPU alike).")
flags.DEFINE_bool("debug", False, "Run tf.functions eagerly (slow; for stepping through with "
                  "a debugger).")
flags.DEFINE_string("trace_file", None, "Write a profiler trace (TensorBoard's profile tab) "
                    "into this folder: of 5 training steps (train modes) or of the timed "
                    "inferences (--mode=tf2bm/tf1bm).")
flags.DEFINE_integer("stage", -1, "Progressive stage for --mode=inspect_data (-1: the last).")
flags.DEFINE_integer("num_images", 32, "Images in the --mode=inspect_data grids.", lower_bound=1)
flags.DEFINE_string("checkpoint", None, "--mode=eval/export/predict: this checkpoint prefix "
                    "or run folder (default: model_dir's latest).")
flags.DEFINE_string("weights", None, "--mode=eval/predict/export: score, use or export "
                    "pretrained weights without a training run: 'imagenet' (keras.applications' "
                    "weights of --model_name), a released name of the original "
                    "(efficientnetv2-s, efficientnetv2-s-21k, efficientnetv2-s-21k-ft1k, ...), "
                    "an automl checkpoint, or a Keras .h5 / .weights.h5 "
                    "file; their classifier must fit --dataset_cfg's classes.")
flags.DEFINE_float("eval_timeout", 0, "--mode=eval: keep waiting this many seconds for each new "
                   "checkpoint (0: evaluate the latest one and stop).")
flags.DEFINE_string("export_dir", None, "--mode=export: where versions go (default: "
                    "<run folder>/export); the SavedModel is <export_dir>/<version>/.")
flags.DEFINE_integer("export_version", None, "--mode=export: version number (default: the "
                     "checkpoint's step).")
flags.DEFINE_bool("overwrite", False, "--mode=export: replace an existing version.")
flags.DEFINE_bool("export_tflite", False, "--mode=export: also write model.tflite (float).")
flags.DEFINE_bool("tflite_int8", False, "--mode=export: also write model_int8.tflite: full "
                  "integer (int8 weights and activations, uint8 pixels in, int8 outputs), "
                  "calibrated on --calibration_images eval images.")
flags.DEFINE_integer("calibration_images", 300, "--mode=export --tflite_int8: eval images "
                     "that calibrate the activations.", lower_bound=1)
flags.DEFINE_bool("tflite_dynamic_int8", False, "--mode=export: also write "
                  "model_dynamic_int8.tflite (int8 weights, float activations and input).")
flags.DEFINE_bool("hub", False, "--mode=export: also write TF-Hub modules (hub/classification, "
                  "hub/feature_vector; images in [0, 1]) for hub.load and hub.KerasLayer.")
flags.DEFINE_multi_string("image", None, "--mode=predict: an image file or a folder of them "
                          "(repeatable).")
flags.DEFINE_string("image_path", None, "--mode=predict: one more image (infer.py's flag).")
flags.DEFINE_string("saved_model", None, "--mode=predict: an export folder or version folder "
                    "to predict with, instead of a checkpoint.")
flags.DEFINE_enum("output", "text", ("text", "json"), "--mode=predict: output format.")
flags.DEFINE_string("plot", None, "--mode=predict: also draw the images with their top classes "
                    "and probabilities into this PNG file (green or red where an image's folder "
                    "names its class).")
flags.DEFINE_bool("explain", False, "--mode=predict --plot: draw each image's Grad-CAM map "
                  "(where the model looked for its top class) over it.")
flags.DEFINE_integer("top_k", 5, "--mode=predict/export: how many classes to report.",
                     lower_bound=1)
flags.DEFINE_list("bench_models", ["efficientnetv2-b0", "efficientnetv2-s"],
                  "--mode=bench: models (with a keras.applications twin).")
flags.DEFINE_list("bench_sizes", ["32", "64", "128"], "--mode=bench: image sizes.")
flags.DEFINE_integer("bench_batch", 64, "--mode=bench: training batch size.", lower_bound=1)
flags.DEFINE_integer("bench_steps", 10, "--mode=bench: timed training steps per measurement.",
                     lower_bound=1)
flags.DEFINE_enum("bench_xla", "both", ("both", "on", "off"), "--mode=bench: XLA settings.")
flags.DEFINE_string("study", None, "--mode=study: blocks, training, depth_drop or v1_vs_v2 "
                    "(experiments/studies.yaml).")
flags.DEFINE_float("study_width", 1.0, "--mode=study: multiplier of every variant's width.")
flags.DEFINE_float("study_depth", 1.0, "--mode=study: multiplier of every variant's depth.")
flags.DEFINE_integer("study_epochs", None, "--mode=study: epochs (default: the dataset config's).")
flags.DEFINE_integer("study_isize", None, "--mode=study: train and eval image size "
                     "(default: the configs').")
flags.DEFINE_integer("study_examples", 0, "--mode=study: train on the first N examples (0: all).")
flags.DEFINE_integer("study_eval_examples", 0, "--mode=study: evaluate on the first N (0: all).")
flags.DEFINE_integer("study_batch", 0, "--mode=study: batch size (0: the dataset config's).")
flags.DEFINE_integer("study_seeds", 1, "--mode=study: runs of every variant, seeds train.seed, "
                     "train.seed + 1, ...", lower_bound=1)
flags.DEFINE_list("study_variants", [], "--mode=study: train only these variants (default: all).")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into N logical devices, so that "
                     "runtime.strategy=gpus runs MirroredStrategy without GPUs (for trying out).")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (runtime.strategy=tpu).")
flags.DEFINE_string("tpu_zone", None, "GCE zone of the TPU.")
flags.DEFINE_string("gcp_project", None, "GCP project of the TPU.")
FLAGS = flags.FLAGS


def run_summary() -> None:
    import efficientnetv2
    from efficientnetv2 import hparams
    from efficientnetv2.summary import format_table, summarize

    if FLAGS.model_name == "all":
        summaries = [summarize(name, lambda n=name: efficientnetv2.get_model(n), FLAGS.image_size)
                     for name in efficientnetv2.model_names()]
    else:
        config = build_config()
        name, overrides = hparams.model_arguments(config)
        classes = config.model.num_classes or 1000
        summaries = [summarize(config.model.model_name,
                               lambda: efficientnetv2.get_model(name, classes, **overrides),
                               FLAGS.image_size or config.eval.isize)]
        if FLAGS.model_dir:
            from efficientnetv2 import run_folder

            run_folder.save_config(config, FLAGS.model_dir)
    print(format_table(summaries))
    print("FLOPs are multiply-adds per image of convolutions and dense layers "
          "(the paper's convention); '= original' compares with the original code's counts.")


def build_config():
    from efficientnetv2 import run_folder

    return run_folder.build_config(FLAGS.model_name, FLAGS.dataset_cfg, FLAGS.config_file,
                                   FLAGS.hparam_str, flag_overrides(), FLAGS.sweeps)


def flag_overrides() -> dict:
    """The config keys flags set (unset flags: None, which changes nothing)."""
    return {"data.data_dir": FLAGS.data_dir, "eval.isize": FLAGS.image_size,
            "eval.batch_size": FLAGS.batch_size, "runtime.mixed_precision": FLAGS.mixed_precision,
            "runtime.strategy": "tpu" if FLAGS.use_tpu else None}


def run_inspect_data() -> None:
    import os

    from efficientnetv2 import run_folder
    from efficientnetv2.datasets import DataInput
    from efficientnetv2.datasets.inspect import first_batch, throughput, write_grid
    from efficientnetv2.datasets.preprocessing import describe_augmentation
    from efficientnetv2.training.progressive import all_stages

    config = build_config()
    stages = all_stages(config)
    if not -len(stages) <= FLAGS.stage < len(stages):
        raise UserError(f"--stage={FLAGS.stage} out of range: this config has {len(stages)} stage(s)")
    stage = stages[FLAGS.stage]
    out_dir = FLAGS.model_dir or os.path.join("runs", "inspect", config.data.ds_name)
    os.makedirs(out_dir, exist_ok=True)
    run_folder.save_config(config, out_dir)
    seed = config.train.seed
    train = DataInput(config.data, config.train.split, True, seed=seed)
    train_ds = train.dataset(max(FLAGS.num_images, 64), stage.image_size, train.augmentation(stage))
    path = write_grid(*first_batch(train_ds, FLAGS.num_images), train.class_names,
                      os.path.join(out_dir, f"train_stage{stage.index}.png"),
                      f"{config.data.ds_name} train, stage {stage.index}: {stage.image_size}px, "
                      f"{describe_augmentation(config.data.augname, stage.ram)}, "
                      f"mixup {stage.mixup_alpha:.2f}, "
                      f"cutmix {stage.cutmix_alpha:.2f}")
    print(f"wrote {path}")
    evaluation = DataInput(config.data, config.eval.split, False, seed=seed)
    eval_ds = evaluation.dataset(max(FLAGS.num_images, 64), config.eval.isize)
    path = write_grid(*first_batch(eval_ds, FLAGS.num_images), evaluation.class_names,
                      os.path.join(out_dir, "eval.png"),
                      f"{config.data.ds_name} eval: {config.eval.isize}px centre crop")
    print(f"wrote {path}")
    rate = throughput(train_ds, batches=20)
    print(f"train pipeline: {rate:,.0f} images/s at {stage.image_size}px "
          f"({train.source.origin}, {train.num_examples:,} images)")
    for line in train.source.skipped + evaluation.source.skipped:
        print(f"skipped {line}")


def model_dir(config) -> str:
    return FLAGS.model_dir or os.path.join("runs", f"{config.model.model_name}-{config.data.ds_name}")


def on_strategy(kind, config, directory: str | None = None):
    """A Trainer or Evaluator (`kind`) of `config` on the strategy the flags ask for."""
    from efficientnetv2.training.strategies import split_cpu

    if FLAGS.cpu_devices > 1:
        split_cpu(FLAGS.cpu_devices)
    return kind(config, directory or model_dir(config), tpu=FLAGS.tpu, tpu_zone=FLAGS.tpu_zone,
                gcp_project=FLAGS.gcp_project, tpu_job_name=FLAGS.tpu_job_name)


def run_train() -> None:
    from efficientnetv2.training.trainer import Trainer

    trainer = on_strategy(Trainer, build_config())
    trainer.trace_dir = FLAGS.trace_file
    result = trainer.train(eval_every_epoch=FLAGS.mode == "traineval")
    print(f"final: {result.scores()}, loss {result.loss:.4f} "
          f"at step {result.step}; checkpoints in {trainer.model_dir}")


def eval_config():
    """What --mode=eval evaluates with: the run's own saved config when --checkpoint or
    --model_dir names a run folder (evaluation sees what training saw), with the eval. keys of
    --hparam_str and --data_dir; the flags' config before training has written one."""
    from efficientnetv2 import run_folder
    from efficientnetv2.run_folder import CONFIG_FILENAME

    folder = FLAGS.model_dir
    if FLAGS.checkpoint:
        folder = run_folder.folder_of(run_folder.resolve_checkpoint(FLAGS.checkpoint))
    folder = run_folder.run_to_evaluate(folder)
    if folder is None:
        config = build_config()
        return config, model_dir(config)
    kept = {key: value for key, value in flag_overrides().items()  # --data_dir, runtime flags
            if value is not None and key.startswith(("data.", "runtime."))}
    config = run_folder.saved_config(folder, eval_overrides() | kept)
    print(f"evaluating with the run's saved config ({os.path.join(folder, CONFIG_FILENAME)})")
    return config, folder


def run_eval() -> None:
    from efficientnetv2 import run_folder
    from efficientnetv2.run_folder import checkpoints
    from efficientnetv2.training.evaluator import Evaluator
    from efficientnetv2.training.reporting import write_eval_summary

    if using_weights():
        result = on_strategy(Evaluator, build_config()).evaluate_weights(FLAGS.weights)
        print(f"{FLAGS.weights}: {result.scores()}, loss {result.loss:.4f}")
        return
    config, directory = eval_config()
    if FLAGS.checkpoint:
        paths = [FLAGS.checkpoint]
    else:
        paths = checkpoints.wait_for_checkpoints(directory, FLAGS.eval_timeout)
    evaluator = None
    for path in paths:
        path = run_folder.resolve_checkpoint(path)
        evaluator = evaluator or on_strategy(Evaluator, config, directory)
        result = evaluator.evaluate_checkpoint(path)
        print(f"{path}: {result.scores()}, loss {result.loss:.4f}")
        if not run_folder.is_run(directory) or not evaluator.chief:
            continue
        write_eval_summary(directory, FLAGS.eval_name, result)
        metric = config.eval.get("best_metric") or "top1"
        if FLAGS.archive_ckpt and checkpoints.archive_if_best(directory, path, result.score(metric),
                                                              metric):
            print(f"kept {path} in {os.path.join(directory, checkpoints.BEST_DIR)} (the best "
                  f"{metric} evaluated so far)")
    if evaluator is None:
        raise UserError(f"no checkpoint in {directory}" + (
            f" after waiting {FLAGS.eval_timeout:g}s" if FLAGS.eval_timeout else "")
            + "; train first or pass --model_dir / --checkpoint")


def eval_overrides() -> dict:
    """The `eval.` keys of --hparam_str, --sweeps, --image_size and --batch_size: for
    evaluation, export and prediction from a checkpoint they replace the run's saved
    evaluation settings (eval.isize, eval.flip_average, ...)."""
    from efficientnetv2.hparams.overrides import parse_overrides

    given = (flag_overrides() | parse_overrides(FLAGS.hparam_str)
             | parse_overrides(FLAGS.sweeps, "sweeps"))
    return {key: value for key, value in given.items()
            if key.startswith("eval.") and value is not None}


def using_weights() -> bool:
    """Whether --weights names the model to use (never together with --checkpoint)."""
    if FLAGS.weights and FLAGS.checkpoint:
        raise UserError("pass --weights or --checkpoint, not both")
    return bool(FLAGS.weights)


def restored_model():
    """--weights (pretrained, for --model_name on --dataset_cfg) or the run's checkpoint."""
    from efficientnetv2.run_folder import pretrained_model, restore_model

    if using_weights():
        return pretrained_model(build_config(), FLAGS.weights)
    return restore_model(FLAGS.checkpoint or model_dir(build_config()),
                         eval_overrides=eval_overrides())


def run_export() -> None:
    import tensorflow as tf

    from efficientnetv2.errors import first_line
    from efficientnetv2.run_folder import folder_of
    from efficientnetv2.serving.export import export_run

    restored = restored_model()
    if FLAGS.weights:  # no run folder, no step
        export_dir = FLAGS.export_dir or os.path.join(model_dir(restored.config), "export")
        version = FLAGS.export_version or 1
    else:
        export_dir = FLAGS.export_dir or os.path.join(folder_of(restored.checkpoint), "export")
        version = FLAGS.export_version
    try:
        wanted = {"none": FLAGS.export_tflite, "dynamic": FLAGS.tflite_dynamic_int8,
                  "full": FLAGS.tflite_int8}
        paths = export_run(restored, export_dir, version, FLAGS.overwrite,
                           tuple(k for k, on in wanted.items() if on), FLAGS.top_k,
                           FLAGS.calibration_images, FLAGS.hub)
    except (OSError, tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError) as e:
        reason = getattr(e, "strerror", None) or first_line(e)
        raise UserError(f"cannot write the export into {export_dir}: {reason}; give a writable "
                        "--export_dir") from None
    weights = "EMA weights" if restored.ema else "weights"
    print(f"exported {restored.checkpoint} ({weights}, {restored.config.eval.isize}px, "
          f"{len(restored.class_names)} classes):")
    for path in paths:
        print(f"  {path}")


def run_predict() -> None:
    from efficientnetv2.serving.predict import (
        Predictor,
        format_predictions,
        image_files,
        plot_predictions,
        read_images,
        true_class,
    )

    if FLAGS.saved_model and (FLAGS.checkpoint or FLAGS.weights):
        raise UserError("pass --checkpoint, --weights or --saved_model, not two of them")
    if FLAGS.explain and not FLAGS.plot:
        raise UserError("--explain draws into the --plot picture; pass --plot=FILE.png too")
    files = image_files((FLAGS.image or []) + ([FLAGS.image_path] if FLAGS.image_path else []))
    images = read_images(files)
    if FLAGS.saved_model:
        if eval_overrides():
            raise UserError("eval. keys (--hparam_str, --image_size, --batch_size) cannot change a "
                            "SavedModel (its preprocessing is fixed at export); export again with "
                            "them, or predict from --checkpoint")
        predictor = Predictor.from_saved_model(FLAGS.saved_model)
    else:
        predictor = Predictor.from_restored(restored_model(), FLAGS.top_k)
    tops = predictor.top_k(images, FLAGS.top_k)
    print(format_predictions(files, tops, FLAGS.output == "json"))
    known = [(top[0][1], truth) for top, truth in
             ((top, true_class(path, predictor.class_names)) for path, top in zip(files, tops))
             if truth is not None]
    if known:
        right = sum(predicted == truth for predicted, truth in known)
        print(f"{right} of {len(known)} images whose folder names their class are right "
              f"({right / len(known):.1%})", file=sys.stderr)
    if FLAGS.plot:
        heatmaps = predictor.grad_cams(images) if FLAGS.explain else None
        path = plot_predictions(files, images, tops, FLAGS.plot,
                                class_names=predictor.class_names, heatmaps=heatmaps)
        print(f"wrote {path}", file=sys.stderr)


def run_inference_bench() -> None:
    """The original infer.py's tf2bm / tf1bm: inference time and images/s of --batch_size
    (16) images at --image_size (eval.isize), of the restored run or --weights (random
    weights without them); through a SavedModel in --export_dir when given."""
    import efficientnetv2
    from efficientnetv2 import hparams, run_folder
    from efficientnetv2.experiments.bench import inference_benchmark

    if FLAGS.weights or FLAGS.checkpoint or (FLAGS.model_dir and run_folder.is_run(FLAGS.model_dir)):
        restored = restored_model()
        model, config = restored.model, restored.config
        print(f"model: {restored.checkpoint}")
    else:
        config = build_config()
        name, overrides = hparams.model_arguments(config)
        model = efficientnetv2.get_model(name, config.model.num_classes or 1000, **overrides)
        print(f"model: {config.model.model_name} with random weights (no --model_dir run)")
    size, batch = FLAGS.image_size or config.eval.isize, FLAGS.batch_size or 16
    seconds = inference_benchmark(model, size, batch, FLAGS.export_dir, FLAGS.trace_file)
    print(f"Per batch inference time: {seconds:.6f} s ({batch} images at {size}px"
          + (f", through the SavedModel in {FLAGS.export_dir}" if FLAGS.export_dir else "") + ")")
    print(f"FPS: {batch / seconds:.1f}")
    if FLAGS.trace_file:
        print(f"wrote a profiler trace into {FLAGS.trace_file} (TensorBoard, profile tab)")


def run_bench() -> None:
    from efficientnetv2.experiments import bench as benchmark

    try:
        sizes = [int(s) for s in FLAGS.bench_sizes]
    except ValueError:
        raise UserError(f"--bench_sizes={','.join(FLAGS.bench_sizes)}: give integers, e.g. 32,64") from None
    xla = {"both": (True, False), "on": (True,), "off": (False,)}[FLAGS.bench_xla]
    peak = benchmark.matmul_peak()
    rows = benchmark.run_benchmark(FLAGS.bench_models, sizes, FLAGS.bench_batch,
                                   FLAGS.bench_steps, xla)
    table = benchmark.format_table(rows, peak)
    out_dir = FLAGS.model_dir or os.path.join("runs", "bench")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "bench.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table + f"\nwritten to {out_dir}/bench.md")


def run_study() -> None:
    from efficientnetv2.experiments import studies

    if not FLAGS.study:
        raise UserError(f"--mode=study needs --study=NAME: one of {', '.join(studies.load_studies())}")
    sizes = studies.StudySizes(FLAGS.study_width, FLAGS.study_depth, FLAGS.study_epochs,
                               FLAGS.study_isize, FLAGS.study_examples, FLAGS.study_eval_examples,
                               FLAGS.study_batch)
    out_dir = FLAGS.model_dir or os.path.join("runs", f"study-{FLAGS.study}-{FLAGS.dataset_cfg}")
    results = studies.run_study(FLAGS.study, sizes, FLAGS.dataset_cfg, out_dir, FLAGS.model_name,
                                FLAGS.data_dir, FLAGS.hparam_str, seeds=FLAGS.study_seeds,
                                variants=FLAGS.study_variants, config_file=FLAGS.config_file)
    print(studies.format_table(results))
    print(f"written: {out_dir}/{studies.TABLE_FILE}, {out_dir}/{studies.CURVES_FILE}")


def in_flags(message: str) -> str:
    """A library message as the command line says it: an argument the library names in
    backticks (`model_dir`) that is also a flag becomes the flag (--model_dir)."""
    return re.sub(r"`([a-z_][a-z0-9_]*)`", lambda m: f"--{m[1]}" if m[1] in FLAGS else m[0], message)


def shortened(message: str, limit: int = 2000) -> str:
    """A message of at most about `limit` characters, cut in the middle (a long quoted value
    is cut, the reason and the fix at the end are kept)."""
    if len(message) <= limit:
        return message
    return f"{message[:limit // 2]} ...[{len(message) - limit:,} characters]... {message[-limit // 2:]}"


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)  # TensorFlow's per-checkpoint INFO lines
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.export_to_tpu:
        print("note: --export_to_tpu has no effect here: the exported SavedModel serves on CPU, "
              "GPU and TPU alike", file=sys.stderr)
    if FLAGS.debug:
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    mode = INFER_MODES.get(FLAGS.mode, FLAGS.mode)
    try:
        {"summary": run_summary, "inspect_data": run_inspect_data, "train": run_train,
         "traineval": run_train, "eval": run_eval, "export": run_export,
         "predict": run_predict, "bench": run_bench, "study": run_study,
         "inference_bench": run_inference_bench}[mode]()
    except KeyboardInterrupt:  # training saves and exits by itself; the other modes stop here
        print(f"error: --mode={FLAGS.mode} interrupted (Ctrl-C); an export writes its version "
              "only when complete", file=sys.stderr)
        sys.exit(130)
    except UserError as e:
        print(f"error: {shortened(in_flags(str(e)))}", file=sys.stderr)
        # TensorFlow warns at exit about a half-restored checkpoint; the error line says it all
        logging.set_verbosity(logging.ERROR)
        if "tensorflow" in sys.modules:
            sys.modules["tensorflow"].get_logger().setLevel("ERROR")
        sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, with a bad flag reported as one line and exit status 2."""
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}; see python main.py --help", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
