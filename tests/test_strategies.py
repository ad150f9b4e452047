"""tf.distribute: MirroredStrategy over 2 logical CPUs against one device, and a 2-process
MultiWorkerMirroredStrategy run on 127.0.0.1 (each run is a subprocess of main.py)."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_BLOCKS, hparam_string, idx_folder
from test_main import ROOT, run_main

from efficientnetv2.training import reporting

# 128 images, global batch 16: 8 steps per epoch, one step per loop so every loss is logged.
# No dropout or stochastic depth (their random draws are per replica) and synchronized BN
# (batch statistics over the global batch): the 2-replica run computes what one device does.
SAME_MATH = ("model.blocks=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,"
             "model.dropout_rate=0,model.survival_prob=1.0,model.synchronized_bn=true,"
             "train.epochs=2,train.batch_size=16,train.isize=24,eval.isize=24,"
             "eval.batch_size=16,runtime.iterations_per_loop=1,data.shuffle_buffer=128,"
             "train.lr_warmup_epoch=1,train.stages=0")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return idx_folder(tmp_path_factory.mktemp("strategies") / "data", 128, 40, seed=1)


def train_losses(model_dir) -> list[float]:
    return [float(r["loss"]) for r in reporting.read_log(os.path.join(model_dir, reporting.LOG_FILE))
            if r["kind"] == "train"]


def _train_here(data_dir, model_dir, strategy: str, *flags) -> str:
    result = run_main("--mode=train", "--model_name=custom", "--dataset_cfg=fashion_mnist",
                      f"--data_dir={data_dir}", f"--model_dir={model_dir}", *flags,
                      f"--hparam_str={SAME_MATH},runtime.strategy={strategy}")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def one_device_run(data_dir, tmp_path_factory):
    """The reference: the same 16 steps on one device."""
    run = tmp_path_factory.mktemp("one_device") / "run"
    stdout = _train_here(data_dir, run, "default")
    assert "global batch 16 = 16 per replica x 1 replica(s)" in stdout
    return run


def test_mirrored_over_two_cpus_follows_the_one_device_trajectory(data_dir, one_device_run, tmp_path):
    stdout = _train_here(data_dir, tmp_path / "two", "gpus", "--cpu_devices=2")
    assert "global batch 16 = 8 per replica x 2 replica(s)" in stdout
    one, two = train_losses(one_device_run), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 16
    # Same data, same math; only the order of float sums differs. Tolerance: 1e-4 relative.
    np.testing.assert_allclose(two, one, rtol=1e-4)
    assert one[0] != one[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_workers(data_dir, model_dir, epochs: int) -> list[subprocess.Popen]:
    """Two main.py workers of one MultiWorkerMirroredStrategy run on 127.0.0.1."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "main.py", "--mode=train", "--model_name=custom",
             "--dataset_cfg=fashion_mnist", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
             "--hparam_str=" + hparam_string(SAME_MATH, f"train.epochs={epochs}",
                                             "runtime.strategy=multiworker")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes) -> list[str]:
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    return outputs


def _weights(checkpoint: str) -> dict:
    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith("model/")}


@pytest.fixture(scope="module")
def two_worker_run(data_dir, tmp_path_factory):
    """An uninterrupted two-worker run of 2 epochs (16 steps)."""
    root = tmp_path_factory.mktemp("multiworker")
    outputs = _finish(_start_workers(data_dir, root / "run", epochs=2))
    return {"data": data_dir, "dir": root / "run", "outputs": outputs}


def test_two_workers_on_localhost_finish_and_agree(two_worker_run):
    outputs, run = two_worker_run["outputs"], two_worker_run["dir"]
    finals = [next(line for line in out.splitlines() if line.startswith("final:")) for out in outputs]
    assert finals[0] == finals[1]
    assert "2 replica(s)" in outputs[0]
    assert os.path.exists(run / "ckpt-16.index")  # written by the chief only
    assert len(train_losses(run)) == 16


def test_two_workers_train_on_the_batches_of_one_device(two_worker_run, one_device_run):
    """Each worker reads its block of every global batch of the one-device order, augmented
    as there: two workers compute what one device does (only float sums differ)."""
    np.testing.assert_allclose(train_losses(two_worker_run["dir"]), train_losses(one_device_run),
                               rtol=1e-4)
    workers, one = _weights(str(two_worker_run["dir"] / "ckpt-16")), _weights(str(one_device_run / "ckpt-16"))
    assert workers.keys() == one.keys() and len(one) > 10
    for name, value in one.items():
        np.testing.assert_allclose(workers[name], value, rtol=1e-3, atol=1e-5, err_msg=name)


def test_a_killed_worker_stops_the_other_and_a_restart_resumes_exactly(two_worker_run, tmp_path):
    """SIGKILL worker 1 after the first epoch's checkpoint: worker 0 stops within a bounded
    time with one line; both restarted with the same command end with the weights of the
    uninterrupted run."""
    run = tmp_path / "run"
    processes = _start_workers(two_worker_run["data"], run, epochs=2)
    deadline = time.time() + 300
    while not (run / "ckpt-8.index").exists() and time.time() < deadline:
        time.sleep(0.2)
    processes[1].kill()
    killed = time.time()
    _, stderr = processes[0].communicate(timeout=120)
    assert time.time() - killed < 60
    assert processes[0].returncode == 2
    assert stderr.strip().splitlines()[-1].startswith(
        "error: a worker of this multi-worker run stopped (")
    assert "restart every worker with the same command" in stderr
    processes[1].communicate()
    outputs = _finish(_start_workers(two_worker_run["data"], run, epochs=2))
    assert "resumed from" in outputs[0]
    resumed, reference = _weights(str(run / "ckpt-16")), _weights(str(two_worker_run["dir"] / "ckpt-16"))
    assert resumed.keys() == reference.keys() and len(resumed) > 10
    for name, value in reference.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
