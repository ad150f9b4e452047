"""Ablation studies: train every variant of a study (experiments/studies.yaml) with the same sizes
and one or more seeds, then write a markdown table (mean and range over the seeds) and one PNG
of every run's eval accuracy curve.

    results = run_study("training", StudySizes(epochs=3, image_size=32), "fashion_mnist",
                        out_dir="runs/study-training", seeds=2)

A study folder holds `study.json` (the variants' configs), `<variant>/seed<N>/` (one run each,
with `result.json` once finished), the table and the PNG. Rerunning the same command resumes:
finished runs are read back, an interrupted one resumes from its checkpoint; other settings in
the same folder are refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics

import keras
import yaml

import efficientnetv2
from efficientnetv2 import hparams, run_folder
from efficientnetv2.errors import UserError
from efficientnetv2.flops import count_multiply_adds
from efficientnetv2.training import reporting

STUDIES_FILE = os.path.join(os.path.dirname(__file__), "studies.yaml")
SETTINGS_FILE = "study.json"
RESULT_FILE = "result.json"
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
class RunResult:
    """One seed of one variant. `seconds` is the time its log.csv records (training loops
    and evaluations, summed over resumes); `latency_ms` is inference at batch 1."""

    name: str
    seed: int
    params: int
    multiply_adds: int
    image_size: int
    images_per_sec: float
    seconds: float
    latency_ms: float
    top1: float
    run_dir: str


@dataclasses.dataclass
class VariantSummary:
    """A variant's runs over its seeds."""

    name: str
    runs: list[RunResult]

    @property
    def top1(self) -> list[float]:
        return [r.top1 for r in self.runs]

    def mean(self, field: str) -> float:
        return statistics.fmean(getattr(r, field) for r in self.runs)


def variant_config(study: dict, variant: dict, sizes: StudySizes, model_name: str,
                   dataset_cfg: str, data_dir: str | None, hparam_str: str,
                   config_file: str | None = None):
    """The config of one variant: model < dataset < `config_file` < `hparam_str` < sizes <
    the variant."""
    variant = dict(variant or {})
    name = variant.pop("model_name", None) or study.get("model_name") or model_name
    config = run_folder.build_config(name, dataset_cfg, config_file, hparam_str=hparam_str,
                                     extra={"data.data_dir": data_dir})
    scaled = {"model.width_coefficient": config.model.width_coefficient * sizes.width,
              "model.depth_coefficient": config.model.depth_coefficient * sizes.depth}
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


def run_variant(name: str, config, run_dir: str, verbose: bool = True) -> RunResult:
    """Trains (or resumes) one run and writes its result.json."""
    from efficientnetv2.training.trainer import Trainer

    from .bench import inference

    keras.backend.clear_session()
    trainer = Trainer(config, run_dir, verbose=verbose)
    result = trainer.train(eval_every_epoch=True)
    isize = config.eval.isize
    rows = reporting.read_log(os.path.join(run_dir, reporting.LOG_FILE))
    run = RunResult(name, int(config.train.seed), int(trainer.model.count_params()),
                    int(count_multiply_adds(trainer.model, isize)), isize, _train_rate(rows),
                    sum(float(row["seconds"]) for row in rows),
                    1000 * inference(trainer.model, isize, 1, xla=False), float(result.top1),
                    run_dir)
    path = os.path.join(run_dir, RESULT_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(dataclasses.asdict(run), f, indent=1)
    os.replace(path + ".tmp", path)  # a kill leaves no half-written result
    return run


def finished_run(run_dir: str) -> RunResult | None:
    path = os.path.join(run_dir, RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return RunResult(**{**json.load(f), "run_dir": run_dir})


def _settings(configs: dict) -> dict:
    """What must not change between runs of one study folder: every variant's config, less
    the seed (more seeds may be added later)."""
    settings = {}
    for name, config in configs.items():
        values = hparams.flatten(config.to_dict())
        values.pop("train.seed")
        settings[name] = json.loads(json.dumps(values, default=str))
    return settings


def check_settings(out_dir: str, study_name: str, settings: dict) -> None:
    """Writes study.json, or refuses a folder whose earlier runs used other settings."""
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            before = json.load(f)
        if before["study"] != study_name:
            raise UserError(f"{out_dir} holds the {before['study']!r} study; pass another "
                            f"`model_dir` for the {study_name!r} study")
        for name, values in settings.items():
            old = before["variants"].get(name, {})
            changed = sorted(k for k in set(values) | set(old) if values.get(k) != old.get(k))
            if changed:
                key = changed[0]
                raise UserError(
                    f"{out_dir} holds runs of this study with other settings ({name}: {key} was "
                    f"{old.get(key)!r}, now {values.get(key)!r}); rerun with the same flags to "
                    "resume it, or pass another `model_dir`")
        return
    os.makedirs(out_dir, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"study": study_name, "variants": settings}, f, indent=1, sort_keys=True)


def run_study(study_name: str, sizes: StudySizes, dataset_cfg: str, out_dir: str,
              model_name: str = "efficientnetv2-s", data_dir: str | None = None,
              hparam_str: str = "", verbose: bool = True, seeds: int = 1,
              variants: list[str] | None = None,
              config_file: str | None = None) -> list[VariantSummary]:
    """Trains `seeds` runs of every variant (or of those named) into
    `out_dir/<variant>/seed<N>`, skipping finished ones, and writes the table and the PNG."""
    studies = load_studies()
    if study_name not in studies:
        raise UserError(f"unknown study {study_name!r}; studies: {', '.join(studies)}")
    study = studies[study_name]
    unknown = sorted(set(variants or []) - set(study["variants"]))
    if unknown:
        raise UserError(f"`study_variants`: {', '.join(unknown)} not in the {study_name!r} study; "
                        f"its variants: {', '.join(study['variants'])}")
    configs = {name: variant_config(study, variant, sizes, model_name, dataset_cfg, data_dir,
                                    hparam_str, config_file)
               for name, variant in study["variants"].items()}  # all checked before training
    check_settings(out_dir, study_name, _settings(configs))
    base_seed = next(iter(configs.values())).train.seed
    summaries = []
    for name, config in configs.items():
        if variants and name not in variants:
            continue
        runs = []
        for seed in range(base_seed, base_seed + seeds):
            run_dir = os.path.join(out_dir, name, f"seed{seed}")
            run = finished_run(run_dir)
            if run is None:
                if verbose:
                    print(f"--- {study_name}: {name}, seed {seed}", flush=True)
                with config.unlocked():
                    config.train.seed = seed
                run = run_variant(name, config, run_dir, verbose)
            elif verbose:
                print(f"--- {study_name}: {name}, seed {seed}: finished before "
                      f"({100 * run.top1:.2f}%)", flush=True)
            runs.append(run)
        summaries.append(VariantSummary(name, runs))
    title = f"{study_name} study on {dataset_cfg}: {study['description']}"
    write_table(summaries, os.path.join(out_dir, TABLE_FILE), title, sizes)
    plot_accuracy(summaries, os.path.join(out_dir, CURVES_FILE), title)
    return summaries


def _separated(a: VariantSummary, b: VariantSummary) -> bool:
    """Whether the seeds' ranges of top-1 do not overlap (needs two seeds of each)."""
    if len(a.runs) < 2 or len(b.runs) < 2:
        return False
    return min(a.top1) > max(b.top1) or min(b.top1) > max(a.top1)


def format_table(summaries: list[VariantSummary], title: str = "",
                 sizes: StudySizes | None = None) -> str:
    """One row per variant (means over its seeds; top-1 with its min-max range), one row
    per run, and the ranking with whether seed noise can explain each step of it."""
    lines = [f"### {title}", ""] if title else []
    if sizes:
        lines += [f"Sizes: {dataclasses.asdict(sizes)}", ""]
    lines += ["| variant | seeds | params | FLOPs (multiply-adds) | eval px | train images/s | "
              "time | infer b1 ms | top-1 mean | top-1 min-max |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summaries:
        first = s.runs[0]
        lines.append(
            f"| {s.name} | {len(s.runs)} | {first.params:,} | {first.multiply_adds / 1e6:,.1f}M | "
            f"{first.image_size} | {s.mean('images_per_sec'):,.0f} | {s.mean('seconds'):,.0f}s | "
            f"{s.mean('latency_ms'):.1f} | {100 * s.mean('top1'):.2f}% | "
            f"{100 * min(s.top1):.2f}-{100 * max(s.top1):.2f}% |")
    lines += ["", "| variant | seed | top-1 | time | train images/s |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.name} | {r.seed} | {100 * r.top1:.2f}% | {r.seconds:,.0f}s | "
              f"{r.images_per_sec:,.0f} |" for s in summaries for r in s.runs]
    ranked = sorted(summaries, key=lambda s: -s.mean("top1"))
    steps = [f"{a.name} > {b.name}: " + ("decided (the seeds' ranges do not overlap)"
                                         if _separated(a, b) else "within seed noise")
             for a, b in zip(ranked, ranked[1:])]
    lines += ["", "Time: training loops and evaluations as log.csv records them. Ranking by mean "
              "top-1: " + ("; ".join(steps) if steps else ranked[0].name if ranked else "none")]
    return "\n".join(lines) + "\n"


def write_table(summaries, path: str, title: str, sizes: StudySizes) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_table(summaries, title, sizes))
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


def plot_accuracy(summaries: list[VariantSummary], path: str, title: str) -> str:
    """Eval top-1 of every run against epochs and against training time, a colour per variant."""
    plt = reporting.pyplot()
    fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(12, 4.8))
    for colour, s in enumerate(summaries):
        for k, run in enumerate(s.runs):
            epochs, seconds, accuracy = accuracy_curve(run.run_dir)
            style = {"color": f"C{colour % 10}", "marker": "o", "alpha": 0.85,
                     "label": f"{s.name} ({len(s.runs)} seeds)" if k == 0 else None}
            by_epoch.plot(epochs, [100 * a for a in accuracy], **style)
            by_time.plot([t / 60 for t in seconds], [100 * a for a in accuracy], **style)
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
