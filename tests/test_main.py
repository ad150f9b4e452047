"""The command line, run as a user runs it: a subprocess from the repository root (or, for
the one-line error checks, main.py's absl app in this process, which saves a TensorFlow
start-up per case)."""

import functools
import importlib.util
import os
import subprocess
import sys

import pytest
from absl import app, flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@functools.cache
def _cli():
    spec = importlib.util.spec_from_file_location("main_cli", os.path.join(ROOT, "main.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines the flags: once per process
    return module


def main_in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """`python main.py ARGS` as absl runs it, in this process: exit status and output."""
    cli, cwd = _cli(), os.getcwd()
    flags.FLAGS.unparse_flags()
    os.chdir(ROOT)
    try:
        app.run(cli.main, argv=["main.py", *args], flags_parser=cli.parse_flags)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, printed.out, printed.err)


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_summary_prints_counts_beside_the_paper(tmp_path, capsys):
    result = main_in_process(capsys, "--mode=summary", "--model_name=efficientnetv2-b0",
                             f"--model_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("| efficientnetv2-b0"))
    assert "| 224 | 7,200,312 | 7,139,704 | yes | 0.718 | 7.1 | 0.72 |" in row
    assert "multiply-adds" in result.stdout
    assert (tmp_path / "config.yaml").exists()


def test_summary_of_a_custom_architecture_at_a_given_size(capsys):
    result = main_in_process(capsys, "--mode=summary", "--model_name=custom", "--image_size=64",
                             "--hparam_str=model.blocks=r1_k3_s1_e1_i8_o8_c1|r1_k3_s2_e4_i8_o16")
    assert result.returncode == 0, result.stderr
    assert "| custom | 64 |" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--model_name=efficientnetv2-q"], "error: unknown model name 'efficientnetv2-q'; valid names:"),
    (["--hparam_str=train.epoch=1"], "error: --hparam_str: unknown config key 'train.epoch'"),
    (["--mode=summary", "--dataset_cfg=nope"], "error: unknown dataset config 'nope'"),
    (["--mode=nope"], "error: flag --mode=nope: value should be one of <summary|train"),
    (["--top_k=0"], "error: flag --top_k=0: 0 is not a positive integer"),
    (["--image_size=0"], "error: flag --image_size=0: 0 is not a positive integer"),
])
def test_user_errors_are_one_line_with_exit_2(capsys, args, message):
    assert_one_line_error(main_in_process(capsys, "--mode=summary", *args), message)


def test_a_user_error_in_a_real_process_is_one_line_with_exit_2():
    assert_one_line_error(run_main("--mode=summary", "--model_name=efficientnetv2-q"),
                          "error: unknown model name 'efficientnetv2-q'; valid names:")
    assert_one_line_error(run_main("--mode=nope"), "error: flag --mode=nope: value should be")


def test_inspect_data_writes_grids_and_prints_throughput(tmp_path, idx_dir, capsys):
    out = tmp_path / "inspect"
    result = main_in_process(capsys, "--mode=inspect_data", "--dataset_cfg=fashion_mnist",
                             f"--data_dir={idx_dir}", f"--model_dir={out}", "--stage=0",
                             "--num_images=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "train_stage0.png").stat().st_size > 1000 and (out / "eval.png").exists()
    assert "images/s at 40px" in result.stdout
    assert (out / "config.yaml").exists()


def test_inspect_data_bad_input_is_one_line(tmp_path, capsys):
    result = main_in_process(capsys, "--mode=inspect_data", "--dataset_cfg=imagefolder",
                             f"--data_dir={tmp_path}/nope")
    assert_one_line_error(result, "error: data_dir")
    assert "nope" in result.stderr


TINY_TRAIN = ("--hparam_str=model.blocks=r1_k3_s1_e1_i8_o8_c1|r2_k3_s2_e4_i8_o16_se0.25,"
              "model.feature_size=32,train.epochs=2,train.batch_size=8,train.isize=24,"
              "eval.isize=24,eval.batch_size=8,train.stages=2,train.sched=true,data.ibase=16,"
              "data.augname=none")


def test_train_then_eval_reports_the_same_accuracy(tmp_path, idx_dir, capsys):
    common = ["--model_name=custom", "--dataset_cfg=fashion_mnist", f"--data_dir={idx_dir}",
              f"--model_dir={tmp_path / 'run'}", TINY_TRAIN]
    trained = main_in_process(capsys, "--mode=traineval", *common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    final = next(line for line in trained.stdout.splitlines() if line.startswith("final:"))
    assert "at step 10" in final and "stage 2/2: 24px" in trained.stdout
    assert trained.stdout.count("eval at step") == 2  # after each epoch
    for name in ("curves.png", "log.csv", "config.yaml", "ckpt-10.index", "best/best.json"):
        assert (tmp_path / "run" / name).exists(), name
    assert list((tmp_path / "run" / "tensorboard" / "train").iterdir())
    evaluated = main_in_process(capsys, "--mode=eval", *common)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    top1 = final.split("top-1 ")[1].split(",")[0]
    assert f"ckpt-10: top-1 {top1}," in evaluated.stdout
    # the run folder alone: its saved config, not the flags' defaults (model and dataset)
    for where in (f"--model_dir={tmp_path / 'run'}", f"--checkpoint={tmp_path / 'run' / 'ckpt-10'}"):
        alone = main_in_process(capsys, "--mode=eval", where)
        assert alone.returncode == 0, alone.stderr[-3000:]
        assert "with the run's saved config" in alone.stdout
        assert f"ckpt-10: top-1 {top1}," in alone.stdout


@pytest.mark.parametrize("args, message", [
    (["--mode=eval"], "error: no checkpoint in"),
    (["--mode=eval", "--checkpoint=/nonexistent/ckpt-3"],
     "error: checkpoint '/nonexistent/ckpt-3' not found"),
    (["--mode=train", "--model_dir=/dev/null/run"], "error: --model_dir '/dev/null/run' is not writable"),
    (["--mode=train", TINY_TRAIN + ",train.optimizer=lamb"], "error: train.optimizer 'lamb' must be one of"),
])
def test_training_user_errors_are_one_line(tmp_path, idx_dir, capsys, args, message):
    result = main_in_process(capsys, "--model_name=custom", "--dataset_cfg=fashion_mnist",
                             f"--data_dir={idx_dir}", f"--model_dir={tmp_path / 'empty'}",
                             TINY_TRAIN, *args)
    assert_one_line_error(result, message)


def test_a_huge_value_is_cut_in_the_middle_and_the_reason_kept(capsys):
    """A 120 KB value in an error: the line is cut in the middle of the quoted value, and
    the reason and the fix at its end are kept."""
    result = main_in_process(capsys, "--mode=summary", "--model_name=efficientnetv2-b0",
                             f"--hparam_str=train.loss_type={'x' * 120_000}")
    assert_one_line_error(result, "error: train.loss_type 'xxx")
    line = result.stderr.strip().splitlines()[-1]
    assert len(line) < 2200 and "characters]..." in line
    assert line.endswith("must be one of softmax, sigmoid, custom")
