"""Ablation studies and the speed benchmark at toy sizes: they run, and their tables and PNG
come from the runs."""

import dataclasses
import os
import shutil

import pytest
import yaml
from conftest import TINY_BLOCKS, idx_folder
from test_main import assert_one_line_error, main_in_process

import efficientnetv2
from efficientnetv2 import decode_block_strings
from efficientnetv2.errors import UserError
from efficientnetv2.experiments import bench as benchmark
from efficientnetv2.experiments import studies
from efficientnetv2.training import reporting
from efficientnetv2.training.progressive import all_stages

TOY = studies.StudySizes(width=0.25, depth=0.25, epochs=1, image_size=16, train_examples=64,
                         eval_examples=32, batch_size=16)


TINY_STRING = ("train.stages=0,runtime.xla=false,data.augname=none,model.feature_size=32,"
               "model.blocks=" + "|".join(TINY_BLOCKS))
VARIANTS = ["survival-1.0", "survival-0.5"]


def _depth_drop(out, data, sizes=TOY, seeds=2):
    return studies.run_study("depth_drop", sizes, "fashion_mnist", out, "custom", data,
                             TINY_STRING, verbose=False, seeds=seeds, variants=VARIANTS)


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """Two variants of the depth-drop study, two seeds each, on a tiny network."""
    root = tmp_path_factory.mktemp("study")
    data = idx_folder(str(root / "data"), 64, 32)
    out = str(root / "study")
    return _depth_drop(out, data), out, data


def test_study_table_and_png_come_from_every_seed_s_log(finished_study):
    summaries, out, _ = finished_study
    assert [s.name for s in summaries] == VARIANTS
    table = open(os.path.join(out, studies.TABLE_FILE)).read()
    for s in summaries:
        assert [r.seed for r in s.runs] == [0, 1]
        finals = []
        for r in s.runs:
            assert r.run_dir == os.path.join(out, s.name, f"seed{r.seed}")
            rows = reporting.read_log(os.path.join(r.run_dir, reporting.LOG_FILE))
            finals.append(float([row for row in rows if row["kind"] == "eval"][-1]["accuracy"]))
            assert r.seconds == pytest.approx(sum(float(row["seconds"]) for row in rows))
            config = yaml.safe_load(open(os.path.join(r.run_dir, "config.yaml")))
            assert config["train"]["seed"] == r.seed
            assert f"| {s.name} | {r.seed} | {100 * r.top1:.2f}% |" in table
            assert r.images_per_sec > 0 and r.latency_ms > 0
        assert s.top1 == pytest.approx(finals, abs=1e-6)
        mean = 100 * sum(finals) / len(finals)
        assert (f"| {s.name} | 2 | {s.runs[0].params:,} |" in table
                and f"| {mean:.2f}% | {100 * min(finals):.2f}-{100 * max(finals):.2f}% |" in table)
    config = open(os.path.join(summaries[1].runs[0].run_dir, "config.yaml")).read()
    assert "survival_prob: 0.5" in config and "width_coefficient: 0.25" in config
    assert "Ranking by mean top-1: " in table
    assert os.path.getsize(os.path.join(out, studies.CURVES_FILE)) > 20_000


def test_a_rerun_study_skips_finished_runs_and_adds_seeds(finished_study, tmp_path, monkeypatch):
    _, out, data = finished_study
    copy = str(tmp_path / "study")
    shutil.copytree(out, copy)
    os.remove(os.path.join(copy, "survival-0.5", "seed1", studies.RESULT_FILE))  # killed late
    trained = []
    real_run = studies.run_variant
    monkeypatch.setattr(studies, "run_variant",
                        lambda name, config, run_dir, verbose: trained.append(run_dir)
                        or real_run(name, config, run_dir, verbose))
    summaries = _depth_drop(copy, data, seeds=3)
    assert trained == [os.path.join(copy, "survival-1.0", "seed2"),
                       os.path.join(copy, "survival-0.5", "seed1"),
                       os.path.join(copy, "survival-0.5", "seed2")]
    assert [len(s.runs) for s in summaries] == [3, 3]
    before = {(s.name, r.seed): r.top1 for s in finished_study[0] for r in s.runs}
    after = {(s.name, r.seed): r.top1 for s in summaries for r in s.runs}
    assert {k: after[k] for k in before} == pytest.approx(before, abs=1e-6)
    rows = reporting.read_log(os.path.join(copy, "survival-0.5", "seed1", reporting.LOG_FILE))
    assert len([row for row in rows if row["kind"] == "eval"]) == TOY.epochs  # no second row


def test_a_study_folder_refuses_other_settings(finished_study):
    _, out, data = finished_study
    table = open(os.path.join(out, studies.TABLE_FILE)).read()
    with pytest.raises(UserError, match=r"other settings \(survival-1.0: train.epochs was 1, "
                                        r"now 2\); rerun with the same flags"):
        _depth_drop(out, data, dataclasses.replace(TOY, epochs=2))
    with pytest.raises(UserError, match="holds the 'depth_drop' study"):
        studies.run_study("training", TOY, "fashion_mnist", out, "custom", data, TINY_STRING,
                          verbose=False)
    with pytest.raises(UserError, match="`study_variants`: nope not in the 'depth_drop' study"):
        studies.run_study("depth_drop", TOY, "fashion_mnist", out, variants=["nope"])
    assert open(os.path.join(out, studies.TABLE_FILE)).read() == table


def _configs(name, **kwargs):
    study = studies.load_studies()[name]
    return {variant: studies.variant_config(study, overrides, kwargs.get("sizes", TOY),
                                            "efficientnetv2-b0", "fashion_mnist", None, "")
            for variant, overrides in study["variants"].items()}


def test_blocks_study_variants_are_the_asked_architectures():
    configs = _configs("blocks")
    blocks = {name: decode_block_strings(list(c.model.blocks or [])) for name, c in configs.items()
              if name != "v2-s"}
    assert configs["v2-s"].model.model_name == "efficientnetv2-s"
    assert all(not b.conv_type for b in blocks["all-mbconv"])
    assert all(b.conv_type == 1 for b in blocks["all-fused"])
    assert [b.repeats for b in blocks["half-repeats"]] == [1, 2, 2, 3, 5, 8]
    dropped = blocks["two-stages-dropped"]
    assert len(dropped) == 4 and (dropped[0].input_filters, dropped[0].output_filters) == (24, 48)
    assert (dropped[-1].input_filters, dropped[-1].output_filters) == (128, 256)
    assert all(c.model.width_coefficient == 0.25 for c in configs.values())
    # the seed write-up's variants
    assert all(not b.conv_type and b.se_ratio == 0.25 for b in blocks["seed-all-mbconv-se"])
    assert [b.repeats for b in blocks["seed-half-repeats"]] == [1, 2, 2, 3, 4, 7]
    seed_dropped = blocks["seed-stages-2-5-dropped"]
    assert [(b.input_filters, b.output_filters) for b in seed_dropped] == [
        (24, 48), (48, 64), (64, 128), (128, 256)]
    assert [b.strides for b in seed_dropped] == [1, 2, 2, 2] and not seed_dropped[0].conv_type


def test_training_and_v1_vs_v2_variants():
    configs = _configs("training", sizes=studies.StudySizes(epochs=4, image_size=32))
    sizes = {name: [s.image_size for s in all_stages(c)] for name, c in configs.items()}
    assert sizes["progressive"] == [20, 24, 28, 32] and sizes["fixed-size"] == [32]
    assert [s.ram for s in all_stages(configs["no-stage-regularization"])] == [10.0] * 4
    assert configs["no-wd-ramp"].train.weight_decay_inc == 0
    v1v2 = _configs("v1_vs_v2", sizes=studies.StudySizes(width=0.5, image_size=32))
    assert v1v2["efficientnet-b2"].model.width_coefficient == pytest.approx(0.55)
    assert {c.train.isize for c in v1v2.values()} == {32}


def test_benchmark_rows_make_the_table(monkeypatch):
    """The benchmark's whole path (our loop, keras fit, inference, FLOPs, the table) with the
    tiny network on both sides; `make bench` runs the full-size keras.applications twins."""
    def EfficientNetV2Tiny(weights, classes, classifier_activation, input_shape,  # noqa: N802
                           include_preprocessing):
        return efficientnetv2.get_model(TINY_BLOCKS, classes, input_shape=input_shape,
                                        feature_size=32)

    monkeypatch.setitem(benchmark.KERAS_APPLICATIONS, "efficientnetv2-b0", EfficientNetV2Tiny)
    rows = benchmark.run_benchmark(["efficientnetv2-b0"], [32], batch_size=4, steps=2,
                                   xla_modes=(False,), log=lambda line: None,
                                   overrides=TINY_STRING)
    (row,) = rows
    assert row.ours_step_s > 0 and row.keras_step_s > 0 and row.multiply_adds > 0
    table = benchmark.format_table(rows, peak_flops=1e11)
    line = next(line for line in table.splitlines() if line.startswith("| efficientnetv2-b0"))
    assert f"| {row.ratio:.2f}x |" in line and f"| {row.ours_images_s:,.1f} |" in line
    assert f"{100 * row.utilisation(1e11):.1f}%" in line
    assert row.ratio == pytest.approx(row.keras_step_s / row.ours_step_s)


@pytest.mark.parametrize("args, message", [
    (["--mode=study"], "error: --mode=study needs --study=NAME: one of blocks, training"),
    (["--mode=study", "--study=nope"], "error: unknown study 'nope'"),
    (["--mode=bench", "--bench_models=efficientnetv2-xl", "--bench_sizes=32"],
     "error: --bench_models: efficientnetv2-xl has no keras.applications twin"),
])
def test_study_and_bench_mistakes_are_one_line(capsys, args, message):
    assert_one_line_error(main_in_process(capsys, *args), message)
