"""Command line: `python main.py --mode=MODE --model_name=NAME --dataset_cfg=NAME ...`.

See README.md for every mode and flag. User mistakes print one line and exit with status 2.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The checkout's folders (datasets/, hparams/, ...) are installed as efficientnetv2.*; drop the
# script's folder from the path so that they never shadow Hugging Face's `datasets` here.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
try:
    import efficientnetv2  # noqa: E402,F401
except ModuleNotFoundError:
    sys.exit("error: the project is not installed; run 'make demo' (or pip install -e .) first")

from absl import app, flags  # noqa: E402

MODES = ("summary", "train", "eval", "traineval", "export", "predict", "inspect_data",
         "bench", "study")
PLANNED = {
    "train": "the training issue", "eval": "the training issue",
    "traineval": "the training issue", "export": "the export issue",
    "predict": "the export issue", "inspect_data": "the data issue",
    "bench": "the benchmarks issue", "study": "the benchmarks issue",
}

flags.DEFINE_enum("mode", "summary", MODES, "What to do.")
flags.DEFINE_string("model_name", "efficientnetv2-s",
                    "Model name (see --mode=summary --model_name=all), 'custom' with "
                    "model.blocks, or 'all' for --mode=summary.")
flags.DEFINE_string("dataset_cfg", "imagenet", "Dataset config name (case-insensitive).")
flags.DEFINE_string("hparam_str", "", "Config overrides: 'train.epochs=10,model.blocks=a|b'.")
flags.DEFINE_string("config_file", None, "YAML file of config overrides.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and the run's config.")
flags.DEFINE_string("data_dir", None, "Directory of the dataset's files (sets data.data_dir).")
flags.DEFINE_integer("image_size", None, "Image size for --mode=summary (default: eval size).")
FLAGS = flags.FLAGS


def run_summary() -> None:
    import efficientnetv2
    from efficientnetv2 import hparams
    from efficientnetv2.summary import format_table, summarize

    if FLAGS.model_name == "all":
        summaries = [summarize(name, lambda n=name: efficientnetv2.get_model(n), FLAGS.image_size)
                     for name in efficientnetv2.model_names()]
    else:
        config = hparams.build_config(FLAGS.model_name, FLAGS.dataset_cfg, FLAGS.config_file,
                                      FLAGS.hparam_str, {"data.data_dir": FLAGS.data_dir})
        name, overrides = hparams.model_arguments(config)
        classes = config.model.num_classes or 1000
        summaries = [summarize(config.model.model_name,
                               lambda: efficientnetv2.get_model(name, classes, **overrides),
                               FLAGS.image_size or config.eval.isize)]
        if FLAGS.model_dir:
            hparams.save_config(config, FLAGS.model_dir)
    print(format_table(summaries))
    print("FLOPs are multiply-adds per image of convolutions and dense layers "
          "(the paper's convention); '= original' compares with the original code's counts.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from efficientnetv2.errors import UserError

    try:
        if FLAGS.mode in PLANNED:
            raise UserError(f"--mode={FLAGS.mode} is not available yet; it arrives with "
                            f"{PLANNED[FLAGS.mode]}. Available now: summary")
        run_summary()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
