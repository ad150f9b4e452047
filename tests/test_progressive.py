import numpy as np
import pytest
from conftest import data_config

from efficientnetv2 import hparams
from efficientnetv2.training.progressive import all_stages, stage_settings


def test_v2_s_recipe_matches_the_formulas():
    config = hparams.build_config("efficientnetv2-l", "imagenet")  # isize 384, ram 20, mix 0.5
    stages = all_stages(config)
    assert [s.image_size for s in stages] == [int(128 + (384 - 128) * (k + 1) / 4) for k in range(4)]
    assert [s.ram for s in stages] == pytest.approx(list(np.linspace(5, 20, 4)))
    assert [s.mixup_alpha for s in stages] == pytest.approx(list(np.linspace(0, 0.5, 4)))
    assert [s.cutmix_alpha for s in stages] == pytest.approx(list(np.linspace(0, 0.5, 4)))
    assert [s.dropout_rate for s in stages] == pytest.approx(list(np.linspace(0.1, 0.4, 4)))


def test_switching_techniques_off():
    no_stages = all_stages(data_config(hparam_str="train.stages=0"))
    assert len(no_stages) == 1 and no_stages[0].image_size == 64
    no_sched = all_stages(data_config(hparam_str="train.sched=false"))
    assert [s.image_size for s in no_sched] == [40, 48, 56, 64]
    assert {(s.ram, s.dropout_rate) for s in no_sched} == {(10.0, 0.2)}
    with pytest.raises(ValueError):
        stage_settings(data_config(), 4)
