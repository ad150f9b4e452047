"""Ablation studies: train every variant of a study (hparams/studies.yaml) with the same sizes,
then write a markdown table and one PNG of all variants' eval accuracy curves.

    results = run_study("training", StudySizes(epochs=3, image_size=32), "fashion_mnist",
                        out_dir="runs/study-training")
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import yaml

import efficientnetv2
from efficientnetv2 import hparams
from efficientnetv2.errors import UserError
from efficientnetv2.families import ARCHITECTURES
from efficientnetv2.flops import count_multiply_adds

from . import reporting

STUDIES_FILE = os.path.join(os.path.dirname(hparams.__file__), "studies.yaml")
TABLE_FILE = "results.md"
CURVES_FILE = "accuracy.png"


def load_studies() -> dict:
    with open(STUDIES_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclasses.dataclass(frozen=True)
class StudySizes:
    """What every variant shares: multipliers of the architecture's width and depth, epochs,
    the train/eval image size (progressive stages start at half of it), the subset sizes
    (0: all) and the batch size (0: the dataset config's)."""

    width: float = 1.0
    depth: float = 1.0
    epochs: int | None = None
    image_size: int | None = None
    train_examples: int = 0
    eval_examples: int = 0
    batch_size: int = 0

    def overrides(self) -> dict:
        values = {"data.max_train_examples": self.train_examples,
                  "data.max_eval_examples": self.eval_examples}
        if self.epochs:
            values["train.epochs"] = self.epochs
        if self.image_size:
            values.update({"train.isize": self.image_size, "eval.isize": self.image_size,
                           "data.ibase": self.image_size // 2})
        if self.batch_size:
            values.update({"train.batch_size": self.batch_size, "eval.batch_size": self.batch_size})
        return values


@dataclasses.dataclass
class VariantResult:
    name: str
    params: int
    multiply_adds: int
    image_size: int
    images_per_sec: float
    wall_seconds: float
    top1: float
    run_dir: str


def variant_config(study: dict, variant: dict, sizes: StudySizes, model_name: str,
                   dataset_cfg: str, data_dir: str | None, hparam_str: str):
    """The config of one variant: model < dataset < --hparam_str < sizes < the variant."""
    variant = dict(variant or {})
    name = variant.pop("model_name", None) or study.get("model_name") or model_name
    config = hparams.build_config(name, dataset_cfg, hparam_str=hparam_str,
                                  extra={"data.data_dir": data_dir})
    arch = ARCHITECTURES.get(name)
    scaled = {"model.width_coefficient": (arch.width_coefficient if arch else 1.0) * sizes.width,
              "model.depth_coefficient": (arch.depth_coefficient if arch else 1.0) * sizes.depth}
    hparams.apply_overrides(config, {**scaled, **sizes.overrides(), **variant}, "the study")
    efficientnetv2.resolve_options(*hparams.model_arguments(config))  # bad block strings, ...
    return config


def _train_rate(log_rows: list[dict]) -> float:
    """Mean training images/s, leaving out each stage's first loop (tracing, compilation)
    unless every stage had one loop only."""
    train = [row for row in log_rows if row["kind"] == "train"]
    later = [row for row, before in zip(train[1:], train) if row["stage"] == before["stage"]]
    rates = [float(row["images_per_sec"]) for row in (later or train)]
    return sum(rates) / len(rates) if rates else float("nan")


def run_variant(name: str, config, run_dir: str, verbose: bool = True) -> VariantResult:
    from .trainer import Trainer

    keras.backend.clear_session()
    began = time.time()
    trainer = Trainer(config, run_dir, verbose=verbose)
    result = trainer.train(eval_every_epoch=True)
    wall = time.time() - began
    isize = config.eval.isize
    params = trainer.model.count_params()
    macs = count_multiply_adds(trainer.model, isize)
    rows = reporting.read_log(os.path.join(run_dir, reporting.LOG_FILE))
    return VariantResult(name, params, macs, isize, _train_rate(rows), wall, result.top1, run_dir)


def run_study(study_name: str, sizes: StudySizes, dataset_cfg: str, out_dir: str,
              model_name: str = "efficientnetv2-s", data_dir: str | None = None,
              hparam_str: str = "", verbose: bool = True) -> list[VariantResult]:
    """Trains every variant into `out_dir/<variant>` and writes the table and the PNG."""
    studies = load_studies()
    if study_name not in studies:
        raise UserError(f"unknown study {study_name!r}; studies: {', '.join(studies)}")
    study = studies[study_name]
    configs = {name: variant_config(study, variant, sizes, model_name, dataset_cfg, data_dir,
                                    hparam_str)
               for name, variant in study["variants"].items()}  # all checked before training
    results = []
    for name, config in configs.items():
        if verbose:
            print(f"--- {study_name}: {name}", flush=True)
        results.append(run_variant(name, config, os.path.join(out_dir, name), verbose))
    title = f"{study_name} study on {dataset_cfg}: {study['description']}"
    write_table(results, os.path.join(out_dir, TABLE_FILE), title, sizes)
    plot_accuracy(results, os.path.join(out_dir, CURVES_FILE), title)
    return results


def format_table(results: list[VariantResult], title: str = "", sizes: StudySizes | None = None) -> str:
    lines = [f"### {title}", ""] if title else []
    if sizes:
        lines += [f"Sizes: {dataclasses.asdict(sizes)}", ""]
    lines += ["| variant | params | FLOPs (multiply-adds) | eval px | train images/s | wall time | "
              "final top-1 |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r.name} | {r.params:,} | {r.multiply_adds / 1e6:,.1f}M | {r.image_size} | "
                     f"{r.images_per_sec:,.0f} | {r.wall_seconds:,.0f}s | {100 * r.top1:.2f}% |")
    return "\n".join(lines) + "\n"


def write_table(results, path: str, title: str, sizes: StudySizes) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_table(results, title, sizes))
    return path


def accuracy_curve(run_dir: str) -> tuple[list[float], list[float], list[float]]:
    """(epochs, cumulative training seconds, eval top-1) at each evaluation of a run."""
    epochs, seconds, accuracy, spent = [], [], [], 0.0
    for row in reporting.read_log(os.path.join(run_dir, reporting.LOG_FILE)):
        if row["kind"] == "train":
            spent += float(row["seconds"])
        else:
            epochs.append(float(row["epoch"]))
            seconds.append(spent)
            accuracy.append(float(row["accuracy"]))
    return epochs, seconds, accuracy


def plot_accuracy(results: list[VariantResult], path: str, title: str) -> str:
    """Eval top-1 of every variant against epochs and against training time."""
    plt = reporting.pyplot()
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.8))
    for r in results:
        epochs, seconds, accuracy = accuracy_curve(r.run_dir)
        by_epoch.plot(epochs, [100 * a for a in accuracy], "o-", label=r.name)
        by_time.plot([s / 60 for s in seconds], [100 * a for a in accuracy], "o-", label=r.name)
    for ax, label in ((by_epoch, "epoch"), (by_time, "training time (minutes)")):
        ax.set_xlabel(label)
        ax.set_ylabel("eval top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
