"""Ablation studies and the speed benchmark at toy sizes: they run, and their tables and PNG
come from the runs."""

import os

import pytest
from conftest import idx_folder
from test_main import run_main

from efficientnetv2 import decode_block_strings
from efficientnetv2.training import benchmark, reporting, studies
from efficientnetv2.training.progressive import all_stages

TOY = studies.StudySizes(width=0.25, depth=0.25, epochs=2, image_size=16, train_examples=64,
                         eval_examples=32, batch_size=16)


def test_depth_drop_study_writes_a_table_and_png_from_its_runs(tmp_path):
    data = idx_folder(str(tmp_path / "data"), 64, 32)
    out = str(tmp_path / "study")
    results = studies.run_study("depth_drop", TOY, "fashion_mnist", out, "efficientnetv2-b0",
                                data, "train.stages=0,runtime.xla=false", verbose=False)
    assert [r.name for r in results] == ["survival-1.0", "survival-0.8", "survival-0.5"]
    table = open(os.path.join(out, studies.TABLE_FILE)).read()
    for r in results:
        rows = reporting.read_log(os.path.join(r.run_dir, reporting.LOG_FILE))
        last_eval = [row for row in rows if row["kind"] == "eval"][-1]
        assert r.top1 == pytest.approx(float(last_eval["accuracy"]), abs=1e-6)
        assert f"| {r.name} | {r.params:,} |" in table and f"{100 * r.top1:.2f}% |" in table
        assert r.images_per_sec > 0 and r.wall_seconds > 0
    configs = [open(os.path.join(r.run_dir, "config.yaml")).read() for r in results]
    assert "survival_prob: null" in configs[0] and "survival_prob: 0.5" in configs[2]
    assert "width_coefficient: 0.25" in configs[0]
    assert os.path.getsize(os.path.join(out, studies.CURVES_FILE)) > 20_000


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


def test_training_and_v1_vs_v2_variants():
    configs = _configs("training", sizes=studies.StudySizes(epochs=4, image_size=32))
    sizes = {name: [s.image_size for s in all_stages(c)] for name, c in configs.items()}
    assert sizes["progressive"] == [20, 24, 28, 32] and sizes["fixed-size"] == [32]
    assert [s.ram for s in all_stages(configs["no-stage-regularization"])] == [10.0] * 4
    assert configs["no-wd-ramp"].train.weight_decay_inc == 0
    v1v2 = _configs("v1_vs_v2", sizes=studies.StudySizes(width=0.5, image_size=32))
    assert v1v2["efficientnet-b2"].model.width_coefficient == pytest.approx(0.55)
    assert {c.train.isize for c in v1v2.values()} == {32}


def test_benchmark_rows_make_the_table():
    rows = benchmark.run_benchmark(["efficientnetv2-b0"], [32], batch_size=4, steps=2,
                                   xla_modes=(False,), log=lambda line: None)
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
def test_study_and_bench_mistakes_are_one_line(args, message):
    result = run_main(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-1000:]
