"""Exact resume: a run killed (SIGKILL, or Ctrl-C) and resumed ends with the same weights
as an uninterrupted run with the same seed (subprocesses of main.py on a tiny model)."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_BLOCKS, hparam_string, idx_folder
from test_main import ROOT

# 96 images, batch 8: 12 steps per epoch, 4 epochs in 2 stages (stage boundary at step 24).
# Mixup, cutmix, RandAugment, dropout and stochastic depth are on; XLA off (the CPU default).
RUN = ("model.blocks=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,"
       "model.dropout_rate=0.3,model.survival_prob=0.5,train.epochs=4,train.batch_size=8,"
       "train.stages=2,train.sched=true,train.isize=24,data.ibase=16,eval.isize=24,"
       "eval.batch_size=16,runtime.iterations_per_loop=4,runtime.xla=false,data.shuffle_buffer=64,"
       "data.mixup_alpha=0.4,data.cutmix_alpha=0.5,data.ram=10,train.lr_warmup_epoch=1,"
       "train.weight_decay_inc=1.0")
STEPS_PER_EPOCH, TOTAL = 12, 48


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return idx_folder(tmp_path_factory.mktemp("data"), 96, 20, seed=2)


def start(data_dir, model_dir, extra: str = "") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "main.py", "--mode=train", "--model_name=custom",
         "--dataset_cfg=fashion_mnist", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
         f"--hparam_str={hparam_string(RUN, extra)}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background job ignores SIGINT, and its children would too: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(process) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def interrupt_after(process, model_dir, step: int, sig) -> tuple[int, str]:
    """Sends `sig` as soon as the checkpoint of `step` is the latest; returns the exit code."""
    deadline = time.time() + 300
    while tf.train.latest_checkpoint(str(model_dir)) != f"{model_dir}/ckpt-{step}":
        assert process.poll() is None and time.time() < deadline, "the run ended early"
        time.sleep(0.01)
    process.send_signal(sig)
    stdout, _ = process.communicate(timeout=120)
    return process.returncode, stdout


def weights(model_dir, step: int) -> dict:
    reader = tf.train.load_checkpoint(f"{model_dir}/ckpt-{step}")
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH" and "save_counter" not in key}


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    finish(start(data_dir, model_dir))
    return weights(model_dir, TOTAL)


def assert_same(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys() and len(reference) > 50
    for key in reference:
        np.testing.assert_array_equal(resumed[key], reference[key], err_msg=key)


@pytest.mark.parametrize("sig, code_expected, said", [
    (signal.SIGINT, 130, "interrupted: saved"),  # Ctrl-C
    (signal.SIGTERM, 143, "stopped by SIGTERM: saved"),  # a scheduler's preemption
])
def test_ctrl_c_or_sigterm_saves_where_it_stopped_and_resumes_exactly(data_dir, tmp_path, reference,
                                                                     sig, code_expected, said):
    """Sent once the first epoch's checkpoint is the latest (three epochs still to run): the
    run saves where it stopped, exits 130 or 143, and resumed ends with the uninterrupted
    run's weights."""
    model_dir = tmp_path / "run"
    code, stdout = interrupt_after(start(data_dir, model_dir), model_dir, STEPS_PER_EPOCH, sig)
    assert code == code_expected and said in stdout
    saved = int(tf.train.latest_checkpoint(str(model_dir)).rsplit("-", 1)[1])
    assert saved >= STEPS_PER_EPOCH
    stdout = finish(start(data_dir, model_dir))
    assert f"resumed from {model_dir}/ckpt-{saved}: step {saved}, epoch 2, stage 1" in stdout
    assert_same(weights(model_dir, TOTAL), reference)


def _seen(path, text: str = "") -> bool:
    """Whether the file exists (and holds `text`)."""
    try:
        with open(path, encoding="utf-8") as f:
            return text in f.read()
    except FileNotFoundError:
        return False


def kill_when(process, ready) -> None:
    """SIGKILL as soon as `ready()` holds (polled every 10 ms), whatever the machine's speed."""
    deadline = time.time() + 300
    while not ready():
        assert process.poll() is None and time.time() < deadline, "the run ended before it"
        time.sleep(0.01)
    process.kill()
    process.communicate(timeout=120)


def test_sigkill_at_each_kind_of_moment_resumes_exactly(data_dir, tmp_path, reference):
    """Fault injection on progress, not on time: SIGKILL at start-up (the config just
    written, no step yet), between checkpoints (a logged step past the last save), while a
    checkpoint is written (its data file on disk, maybe before the index that makes it the
    latest) and during the last save and final evaluation; the run resumed after each ends
    with the uninterrupted run's weights."""
    model_dir = tmp_path / "run"
    moments = [
        lambda: _seen(model_dir / "config.yaml"),
        lambda: _seen(model_dir / "log.csv", "\ntrain,20,"),  # ckpt-12 is the latest
        lambda: any(model_dir.glob("ckpt-24.*")),  # the stage boundary's save
        lambda: any(model_dir.glob(f"ckpt-{TOTAL}.*")),
    ]
    for ready in moments:
        kill_when(start(data_dir, model_dir), ready)
    stdout = finish(start(data_dir, model_dir))
    assert "resumed from" in stdout
    assert_same(weights(model_dir, TOTAL), reference)


def test_progress_by_time_reports_every_step_and_changes_no_result(data_dir, tmp_path, reference):
    """runtime.progress_seconds tiny: one step per tf.function call, a progress line per
    step and the run-time estimate; the weights equal those of calls of 4 steps."""
    model_dir = tmp_path / "run"
    stdout = finish(start(data_dir, model_dir, ",runtime.progress_seconds=1e-6"))
    assert stdout.count(f"/{STEPS_PER_EPOCH} loss") == TOTAL  # one line per step
    assert "estimated time left here: " in stdout and f"{TOTAL - 2} steps at" in stdout
    assert_same(weights(model_dir, TOTAL), reference)


@pytest.fixture(scope="module")
def reference_xla(data_dir, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("uninterrupted_xla")
    finish(start(data_dir, model_dir, ",runtime.xla=true"))
    return weights(model_dir, TOTAL)


def test_xla_trains_and_resumes_exactly(data_dir, tmp_path, reference_xla):
    """The GPU/TPU default (runtime.xla, jit-compiled steps) on this CPU: killed mid-run and
    resumed, the weights equal an uninterrupted XLA run's."""
    model_dir = tmp_path / "run"
    process = start(data_dir, model_dir, ",runtime.xla=true")
    code, _ = interrupt_after(process, model_dir, STEPS_PER_EPOCH, signal.SIGKILL)
    assert code == -signal.SIGKILL
    stdout = finish(start(data_dir, model_dir, ",runtime.xla=true"))
    assert f"step {STEPS_PER_EPOCH}, epoch 2, stage 1" in stdout
    assert_same(weights(model_dir, TOTAL), reference_xla)
