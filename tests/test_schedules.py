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
