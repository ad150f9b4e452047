import math

import keras
import numpy as np
import pytest
from conftest import data_config

from efficientnetv2 import UserError
from efficientnetv2.training.schedules import WarmupSchedule, learning_rate_schedule, weight_decay


def _values(schedule, steps):
    return [float(schedule(s)) for s in steps]


def test_exponential_with_warmup_equals_the_formula():
    config = data_config("imagenet", "train.batch_size=512,train.lr_sched=exponential")
    schedule = learning_rate_schedule(config.train, steps_per_epoch=100, total_steps=10_000)
    base = 0.016 * 512 / 256
    assert _values(schedule, [0, 250, 499]) == pytest.approx([0.0, base * 250 / 500, base * 499 / 500])
    for step in (500, 719, 720, 5000):
        assert float(schedule(step)) == pytest.approx(base * 0.97 ** (step // 240), rel=1e-6)


@pytest.mark.parametrize("kind, formula", [
    ("cosine", lambda s, t: 0.5 * (1 + math.cos(math.pi * s / t))),
    ("linear", lambda s, t: 1 - s / t),
    ("constant", lambda s, t: 1.0),
])
def test_other_schedules_and_floor(kind, formula):
    schedule = WarmupSchedule(kind, 0.1, total_steps=1000, warmup_steps=100, lr_min=0.01)
    for step in (100, 400, 999):
        assert float(schedule(step)) == pytest.approx(max(0.1 * formula(step, 1000), 0.01), rel=1e-5)
    assert float(schedule(50)) == pytest.approx(0.05)


def test_schedule_drives_a_keras_optimizer_and_serializes():
    schedule = WarmupSchedule("cosine", 0.2, total_steps=10)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(np.ones(2, "float32"))
    optimizer.apply_gradients([(np.ones(2, "float32"), variable)])
    assert float(optimizer.learning_rate) == pytest.approx(float(schedule(1)))
    again = WarmupSchedule.from_config(schedule.get_config())
    assert _values(again, range(10)) == _values(schedule, range(10))


def test_unknown_schedule_is_a_user_error():
    with pytest.raises(UserError, match="train.lr_sched 'step'"):
        WarmupSchedule("step", 0.1, 10)


def test_weight_decay_ramp():
    assert float(weight_decay(1e-5, 1.0, 0, 100)) == pytest.approx(1e-5)
    assert float(weight_decay(1e-5, 1.0, 50, 100)) == pytest.approx(1.5e-5)
    assert float(weight_decay(1e-5, 0.0, 80, 100)) == pytest.approx(1e-5)


def test_the_floor_scales_with_the_batch_as_the_peak_does():
    config = data_config("imagenet", "train.batch_size=512,train.lr_sched=cosine,train.lr_min=1e-5")
    schedule = learning_rate_schedule(config.train, steps_per_epoch=10, total_steps=1000)
    assert float(schedule(999)) == pytest.approx(2e-5)  # 1e-5 * 512 / 256, as the original


def test_momentum_is_plain_momentum_as_the_original():
    """Two SGD steps with momentum 0.9 against the hand-computed updates of plain momentum
    (v = 0.9 v - lr g; w += v); Nesterov would move the first step by 1.9 lr g."""
    from efficientnetv2.training.optimization import build_optimizer

    config = data_config("imagenet", "train.optimizer=momentum,train.ema_decay=0,train.gclip=0")
    optimizer = build_optimizer(config.train, 0.1)
    variable = keras.Variable(np.array([1.0, -2.0], "float32"))
    grads = [np.array([0.5, 1.0], "float32"), np.array([-1.0, 2.0], "float32")]
    expected, velocity = np.array([1.0, -2.0]), np.zeros(2)
    for grad in grads:
        optimizer.apply_gradients([(grad, variable)])
        velocity = 0.9 * velocity - 0.1 * grad
        expected = expected + velocity
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-6)


def test_multi_hot_labels_train_softmax_on_labels_scaled_to_one_as_the_original():
    """ImageNet-21k: the original's softmax cross-entropy on multi-hot labels divided by
    their count; a one-hot label is unchanged. Checked against numpy."""
    from efficientnetv2.training.optimization import loss_function

    logits = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]], "float32")
    labels = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], "float32")
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(labels / labels.sum(1, keepdims=True) * log_softmax).sum(1)
    np.testing.assert_allclose(loss_function("softmax", 0.0)(labels, logits), expected, rtol=1e-5)
    smoothed = labels / labels.sum(1, keepdims=True) * 0.9 + 0.1 / 4
    np.testing.assert_allclose(loss_function("softmax", 0.1)(labels, logits),
                               -(smoothed * log_softmax).sum(1), rtol=1e-5)


def test_top_k_counts_the_first_positive_label_as_the_original():
    from efficientnetv2.training.evaluator import top_k_hits

    labels = np.array([[0, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]], "float32")
    logits = np.array([[0, 1, 3, 0, 0, 0], [5, 0, 0, 0, 0, 0]], "float32")
    # example 0: top-1 is class 2, a positive label, but not the first one (class 1)
    assert float(top_k_hits(labels, logits, 1)) == 1.0
    assert float(top_k_hits(labels, logits, 5)) == 2.0


@pytest.mark.parametrize("start", [1.0, 0.0])
def test_rmsprop_steps_equal_the_formula(start):
    """The default optimizer: rho 0.9, momentum 0.9, epsilon 0.001 (inside the root), the
    mean square starting at 1 (TF1's RMSPropOptimizer, the original's main.py) or 0 (Keras,
    its main_tf2.py), three steps against numpy."""
    from efficientnetv2.training.optimization import build_optimizer

    config = data_config("imagenet", f"train.ema_decay=0,train.gclip=0,train.rmsprop_ms_init={start}")
    optimizer = build_optimizer(config.train, 0.01)
    variable = keras.Variable(np.array([0.3, -1.0, 2.0], "float32"))
    weights, square, momentum = np.array([0.3, -1.0, 2.0]), np.full(3, start), np.zeros(3)
    for grad in (np.array([0.2, -0.5, 1.0]), np.array([-0.1, 0.4, 0.0]), np.array([0.3, 0.3, -2.0])):
        optimizer.apply_gradients([(grad.astype("float32"), variable)])
        square = 0.9 * square + 0.1 * grad**2
        momentum = 0.9 * momentum + 0.01 * grad / np.sqrt(square + 0.001)
        weights = weights - momentum
        np.testing.assert_allclose(variable.numpy(), weights, rtol=1e-5)


def test_rmsprop_starts_as_the_original_and_older_runs_as_they_ran(tmp_path):
    """The default is the original's start; a run folder written before the key trained
    with Keras' zero start and reads back so."""
    from efficientnetv2 import run_folder
    from efficientnetv2.run_folder import saved_config

    assert data_config("imagenet").train.rmsprop_ms_init == 1.0
    config = data_config("imagenet")
    del config.train["rmsprop_ms_init"]
    run_folder.save_config(config, str(tmp_path))
    assert saved_config(str(tmp_path)).train.rmsprop_ms_init == 0.0


def test_gclip_scales_the_gradients_to_the_global_norm():
    from efficientnetv2.training.optimization import build_optimizer

    config = data_config("imagenet", "train.optimizer=sgd,train.ema_decay=0,train.gclip=1.0")
    optimizer = build_optimizer(config.train, 1.0)
    first, second = keras.Variable(np.zeros(2, "float32")), keras.Variable(np.zeros(1, "float32"))
    grads = [np.array([3.0, 0.0], "float32"), np.array([4.0], "float32")]  # global norm 5
    optimizer.apply_gradients(zip(grads, [first, second]))
    np.testing.assert_allclose(first.numpy(), [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), [-0.8], rtol=1e-6)
    optimizer.apply_gradients(zip([np.array([0.3, 0.0], "float32"), np.array([0.4], "float32")],
                                  [first, second]))  # norm 0.5: not clipped
    np.testing.assert_allclose(second.numpy(), [-1.2], rtol=1e-6)


def test_nesterov_is_a_key_away():
    from efficientnetv2.training.optimization import build_optimizer

    config = data_config("imagenet", "train.optimizer=momentum,train.nesterov=true,train.ema_decay=0")
    variable = keras.Variable(np.array([1.0], "float32"))
    build_optimizer(config.train, 0.1).apply_gradients([(np.array([1.0], "float32"), variable)])
    np.testing.assert_allclose(variable.numpy(), [1.0 - 1.9 * 0.1], rtol=1e-6)  # w - lr g (1 + m)
