"""tf.distribute: MirroredStrategy over 2 logical CPUs against one device, and a 2-process
MultiWorkerMirroredStrategy run on 127.0.0.1 (each run is a subprocess of main.py)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import TINY_BLOCKS, idx_folder
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


@pytest.fixture
def data_dir(tmp_path):
    return idx_folder(tmp_path / "data", 128, 40, seed=1)


def train_losses(model_dir) -> list[float]:
    return [float(r["loss"]) for r in reporting.read_log(os.path.join(model_dir, reporting.LOG_FILE))
            if r["kind"] == "train"]


def test_mirrored_over_two_cpus_follows_the_one_device_trajectory(data_dir, tmp_path):
    runs = {}
    for name, extra in (("one", []), ("two", ["--cpu_devices=2"])):
        strategy = "gpus" if extra else "default"
        result = run_main("--mode=train", "--model_name=custom", "--dataset_cfg=fashion_mnist",
                          f"--data_dir={data_dir}", f"--model_dir={tmp_path / name}", *extra,
                          f"--hparam_str={SAME_MATH},runtime.strategy={strategy}")
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = result.stdout
    assert "2 replica(s)" in runs["two"] and "1 replica(s)" in runs["one"]
    one, two = train_losses(tmp_path / "one"), train_losses(tmp_path / "two")
    assert len(one) == len(two) == 16
    # Same data, same math; only the order of float sums differs. Tolerance: 1e-4 relative.
    np.testing.assert_allclose(two, one, rtol=1e-4)
    assert one[0] != one[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_on_localhost_finish_and_agree(data_dir, tmp_path):
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, "main.py", "--mode=train", "--model_name=custom",
             "--dataset_cfg=fashion_mnist", f"--data_dir={data_dir}",
             f"--model_dir={tmp_path / 'run'}",
             f"--hparam_str={SAME_MATH},train.epochs=1,runtime.strategy=multiworker"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        outputs.append(stdout)
    finals = [next(line for line in out.splitlines() if line.startswith("final:")) for out in outputs]
    assert finals[0] == finals[1]
    assert "2 replica(s)" in outputs[0]
    assert os.path.exists(tmp_path / "run" / "ckpt-8.index")  # written by the chief only
    assert len(train_losses(tmp_path / "run")) == 8
