"""The training loop in-process, on a tiny model and a tiny Fashion-MNIST-format folder."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_BLOCKS, hparam_string, idx_folder, write_idx

from efficientnetv2 import hparams
from efficientnetv2.errors import UserError
from efficientnetv2.run_folder import checkpoints
from efficientnetv2.training import reporting
from efficientnetv2.training.evaluator import Evaluator
from efficientnetv2.training.optimization import ema_decay_at
from efficientnetv2.training.progressive import all_stages
from efficientnetv2.training.restore import load_initial_weights
from efficientnetv2.training.trainer import Trainer

# 64 train images, batch 8: 8 steps per epoch; 4 epochs in 2 stages.
TINY_RUN = ("model.blocks=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,"
            "train.epochs=4,train.batch_size=8,train.stages=2,train.sched=true,train.isize=24,"
            "data.ibase=16,eval.isize=24,eval.batch_size=16,runtime.iterations_per_loop=3,"
            "train.lr_warmup_epoch=1,data.shuffle_buffer=64,train.weight_decay_inc=1.0,"
            "data.mixup_alpha=0.4,data.cutmix_alpha=0.6,model.dropout_rate=0.3,"
            "train.dropout_base=0.1,data.ram=9,runtime.xla=false,"
            "data.augname=none")  # RandAugment's tracing was a third of a run; one test keeps it


@pytest.fixture
def data_dir(tmp_path):
    return idx_folder(tmp_path / "data", 64, 32)


def tiny_config(data_dir, extra: str = ""):
    return hparams.build_config("custom", "fashion_mnist", hparam_str=hparam_string(TINY_RUN, extra),
                                extra={"data.data_dir": str(data_dir)})


def test_per_stage_values_at_every_step_equal_the_formulas(data_dir, tmp_path):
    config = tiny_config(data_dir, ",data.augname=randaug")
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    assert config.model.num_classes is None and trainer.config.model.num_classes == 10  # a copy
    trainer.train()
    rows = [r for r in reporting.read_log(str(tmp_path / "run" / reporting.LOG_FILE))
            if r["kind"] == "train"]
    total = 32
    stages = all_stages(config)
    assert [s.image_size for s in stages] == [20, 24]
    for row in rows:
        step = int(row["step"])
        stage = stages[(step - 1) * 2 // total]  # the stage of the loop's last step
        assert int(row["stage"]) == stage.index
        assert int(row["image_size"]) == int(16 + (24 - 16) * (stage.index + 1) / 2)
        assert float(row["ram"]) == pytest.approx(np.linspace(5, 9, 2)[stage.index])
        assert float(row["mixup"]) == pytest.approx(np.linspace(0, 0.4, 2)[stage.index])
        assert float(row["cutmix"]) == pytest.approx(np.linspace(0, 0.6, 2)[stage.index])
        assert float(row["dropout"]) == pytest.approx(np.linspace(0.1, 0.3, 2)[stage.index])
        # the decay of the last step of the loop, (1 + inc * (step - 1) / total) * base
        assert float(row["weight_decay"]) == pytest.approx((1 + (step - 1) / total) * 1e-5)
        assert float(row["learning_rate"]) == pytest.approx(
            float(trainer.learning_rate(step - 1)), rel=1e-6)
    # the first call runs one step (it also traces); calls of 3 stop at epoch ends (8 steps)
    # and stage ends (16 steps)
    assert [int(r["step"]) for r in rows][:5] == [1, 4, 7, 8, 11]
    assert int(rows[-1]["step"]) == total


def test_class_weights_weigh_each_example_by_its_class(tmp_path):
    """train.class_weights=balanced: weights from the training labels' counts (40 of class 0,
    8 of class 1, ...), and the step's loss is each example's loss times its class weight."""
    rng = np.random.RandomState(0)
    labels = np.array([0] * 40 + [1] * 8 + [2] * 16)
    folder = tmp_path / "data"
    folder.mkdir()
    write_idx(folder, "train", rng.randint(0, 256, (64, 28, 28)), labels)
    write_idx(folder, "test", rng.randint(0, 256, (10, 28, 28)), np.arange(10) % 3)
    config = tiny_config(folder, ",train.class_weights=balanced,model.dropout_rate=0,"
                                 "model.survival_prob=none,train.sched=false,data.mixup_alpha=0,"
                                 "data.cutmix_alpha=0")
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    counts = np.array([40, 8, 16] + [0] * 7)
    expected = np.where(counts > 0, 64 / (3 * np.maximum(counts, 1)), 0)
    np.testing.assert_allclose(trainer.class_weights.numpy(), expected, rtol=1e-6)
    images = tf.random.stateless_uniform([6, 24, 24, 3], [1, 2])
    onehot = tf.one_hot([0, 0, 1, 2, 1, 0], 10)
    _, stats = trainer.loss_and_gradients(images, onehot, 0.0)
    logits = tf.cast(trainer.model(images, training=True), tf.float32)
    plain = trainer.loss_fn(onehot, logits).numpy()
    weighted = (plain * expected[[0, 0, 1, 2, 1, 0]]).sum()
    assert float(stats[0]) == pytest.approx(weighted, rel=1e-4)
    assert abs(weighted - plain.sum()) > 0.1  # the weights change the loss


def test_switching_progressive_learning_off_by_config(data_dir, tmp_path):
    config = tiny_config(data_dir, ",train.stages=0,train.weight_decay_inc=0")
    Trainer(config, str(tmp_path / "run"), verbose=False).train()
    rows = [r for r in reporting.read_log(str(tmp_path / "run" / reporting.LOG_FILE))
            if r["kind"] == "train"]
    assert {(r["image_size"], r["ram"], r["dropout"], r["mixup"]) for r in rows} == \
        {("24", "9.0", "0.3", "0.4")}
    assert [float(r["weight_decay"]) for r in rows] == pytest.approx([1e-5] * len(rows))


def test_eval_of_the_saved_checkpoint_reproduces_the_logged_accuracy(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    final = Trainer(tiny_config(data_dir), model_dir, verbose=False).train()
    evals = [r for r in reporting.read_log(f"{model_dir}/{reporting.LOG_FILE}") if r["kind"] == "eval"]
    assert float(evals[-1]["accuracy"]) == pytest.approx(final.top1)
    tf.keras.backend.clear_session()
    evaluator = Evaluator(tiny_config(data_dir), model_dir, verbose=False)
    again = evaluator.evaluate_checkpoint(tf.train.latest_checkpoint(model_dir))
    assert again.step == final.step == 32
    assert again.top1 == pytest.approx(final.top1) and again.loss == pytest.approx(final.loss, rel=1e-5)
    assert (tmp_path / "run" / reporting.CURVES_FILE).stat().st_size > 10_000


def test_best_holds_the_checkpoint_of_the_highest_evaluation(data_dir, tmp_path):
    """Evaluated after every epoch: best/ holds the step of the first highest top-1 logged,
    and its weights score that top-1 again."""
    model_dir = str(tmp_path / "run")
    config = tiny_config(data_dir, ",train.stages=0,eval.every_epochs=1,train.epochs=6")
    Trainer(config, model_dir, verbose=False).train(eval_every_epoch=True)
    evals = [r for r in reporting.read_log(f"{model_dir}/{reporting.LOG_FILE}") if r["kind"] == "eval"]
    assert len(evals) == 6
    scores = [float(r["accuracy"]) for r in evals]
    best_step = int(evals[scores.index(max(scores))]["step"])
    assert checkpoints.step_of(tf.train.latest_checkpoint(f"{model_dir}/best")) == best_step
    assert checkpoints.step_of("/runs/my-run/ckpt-12") == 12
    assert checkpoints.step_of("/runs/my-run/final") == 0  # renamed: no step in the name
    tf.keras.backend.clear_session()
    evaluator = Evaluator(tiny_config(data_dir, ",train.stages=0"), model_dir, verbose=False)
    again = evaluator.evaluate_checkpoint(tf.train.latest_checkpoint(f"{model_dir}/best"))
    assert again.top1 == pytest.approx(max(scores))


def test_ema_weights_are_swapped_in_for_eval_and_back(data_dir, tmp_path):
    trainer = Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), str(tmp_path / "r"),
                      verbose=False)
    trainer.train()
    swapped = trainer.variables + trainer.statistics  # the batch-norm statistics too
    norms = {v.path.rsplit("/", 1)[0] for v in trainer.model.non_trainable_variables
             if v.path.endswith("/moving_mean")}
    assert len(norms) > 5 and len(trainer.statistics) == 2 * len(norms)
    before = [v.numpy() for v in swapped]
    with trainer.ema_weights():
        inside = [v.numpy() for v in swapped]
    after = [v.numpy() for v in swapped]
    averages = [a.numpy() for a in trainer.averages + trainer.statistic_averages]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(np.array_equal(a, b) for a, b in zip(inside, averages))
    for values, averaged in ((before[:len(trainer.variables)], inside[:len(trainer.variables)]),
                             (before[len(trainer.variables):], inside[len(trainer.variables):])):
        assert any(not np.array_equal(a, b) for a, b in zip(values, averaged))
    assert float(ema_decay_at(0.9999, 0)) == pytest.approx(2 / 11)
    assert float(ema_decay_at(0.9, 10**6)) == pytest.approx(0.9)


def test_batch_norm_statistics_are_averaged_with_the_step_decay(data_dir, tmp_path):
    trainer = Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), str(tmp_path / "r"),
                      verbose=False)
    start = [a.numpy() for a in trainer.statistic_averages]
    trainer.make_train_loop()(trainer.stage_batches(trainer.stages[0], 0), tf.constant(1))
    decay = float(ema_decay_at(trainer.config.train.ema_decay, 0))  # the first step's
    assert any(not np.allclose(s.numpy(), initial) for s, initial in zip(trainer.statistics, start))
    for statistic, average, initial in zip(trainer.statistics, trainer.statistic_averages, start):
        np.testing.assert_allclose(average.numpy(), decay * initial + (1 - decay) * statistic.numpy(),
                                   rtol=1e-6, atol=1e-7)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), model_dir, verbose=False).train()
    good = tf.train.latest_checkpoint(model_dir)
    tf.keras.backend.clear_session()
    diverging = tiny_config(data_dir, ",train.epochs=2,train.stages=0,"
                                      "train.lr_base=1e30,train.lr_sched=constant")
    with pytest.raises(UserError, match=r"the loss became nan .* last good checkpoint .*ckpt-8"):
        Trainer(diverging, model_dir, verbose=False).train()
    assert tf.train.latest_checkpoint(model_dir) == good
    with pytest.raises(UserError, match=r"the loss became nan .* before any checkpoint\. .*"
                                        r"rerun \(it starts afresh\)") as error:
        Trainer(diverging, str(tmp_path / "fresh"), verbose=False).train()
    assert "None" not in str(error.value)


def test_a_rerun_with_another_batch_size_is_refused_and_nothing_is_written(data_dir, tmp_path):
    """A run's step counter counts its batches: resuming it with another train.batch_size
    would land elsewhere in the data. Refused in one line naming both sizes and the ways on;
    raising train.epochs to continue stays allowed."""
    model_dir = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), str(model_dir), verbose=False).train()
    saved = (model_dir / "config.yaml").read_text()
    with pytest.raises(UserError, match=r"train.batch_size=8, not 16: .* resume with "
                                        r"train.batch_size=8, or train into another") as error:
        Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0,train.batch_size=16"),
                str(model_dir), verbose=False).train()
    assert "\n" not in str(error.value) and (model_dir / "config.yaml").read_text() == saved
    assert Trainer(tiny_config(data_dir, ",train.epochs=2,train.stages=0"), str(model_dir),
                   verbose=False).train().step == 16


def test_unwritable_model_dir_fails_before_training(data_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    trainer = Trainer(tiny_config(data_dir), str(blocker / "run"), verbose=False)
    with pytest.raises(UserError, match="is not writable"):
        trainer.train()
    assert trainer.step == 0


def test_a_failed_save_leaves_earlier_checkpoints_intact(data_dir, tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    trainer = Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), model_dir, verbose=False)
    trainer.train()
    good = tf.train.latest_checkpoint(model_dir)

    def disk_full(*args, **kwargs):
        with open(f"{model_dir}/ckpt-99.data-00000-of-00001", "w") as f:
            f.write("partial")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tf.train.Checkpoint, "_write", disk_full)
    with pytest.raises(UserError, match="No space left on device.*ckpt-8 is intact"):
        trainer.checkpoints.save(99)
    assert tf.train.latest_checkpoint(model_dir) == good
    assert not any("ckpt-99" in p.name for p in (tmp_path / "run").iterdir())


def test_fine_tuning_copies_all_but_a_different_classifier(data_dir, tmp_path):
    model_dir = str(tmp_path / "run")
    source = Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), model_dir, verbose=False)
    source.train()
    import efficientnetv2

    target = efficientnetv2.get_model(TINY_BLOCKS, 5, feature_size=32)
    messages = []
    load_initial_weights(target, model_dir, None, use_ema=True, log=messages.append)
    by_path = {v.path: a.numpy() for v, a in source.ema_pairs}
    for variable in target.trainable_variables + checkpoints.batch_norm_statistics(target):
        if variable.path.startswith("predictions"):
            assert variable.shape[-1] == 5 or variable.shape == (5,)
        else:
            np.testing.assert_array_equal(variable.numpy(), by_path[variable.path])
    assert "new predictions (10 classes in the source, 5 here)" in messages[0] and "EMA" in messages[0]
    other = efficientnetv2.get_model(["r1_k3_s1_e1_i8_o8_c1"], 10, feature_size=32)
    with pytest.raises(UserError, match="not weights of this architecture"):
        load_initial_weights(other, model_dir, None)


def test_varsexp_freezes_everything_else(data_dir, tmp_path):
    config = tiny_config(data_dir, ",train.epochs=1,train.stages=0,train.varsexp=predictions,"
                                   "train.ema_decay=0")
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    before = {v.path: v.numpy() for v in trainer.model.trainable_variables}
    trainer.train()
    changed = {v.path for v in trainer.model.trainable_variables
               if not np.array_equal(before[v.path], v.numpy())}
    assert changed == {"predictions/kernel", "predictions/bias"}
    with pytest.raises(UserError, match="matches no variable"):
        Trainer(tiny_config(data_dir, ",train.varsexp=nothing_like_this"), str(tmp_path / "r2"))


def test_freeze_backbone_trains_the_classifier_and_keeps_batch_norm_statistics(data_dir, tmp_path):
    config = tiny_config(data_dir, ",train.epochs=1,train.stages=0,train.freeze_backbone=true")
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    before = {v.path: v.numpy() for v in trainer.model.weights}
    trainer.train()
    changed = {v.path for v in trainer.model.weights if not np.array_equal(before[v.path], v.numpy())}
    assert changed == {"predictions/kernel", "predictions/bias"}  # moving statistics too


def test_sigmoid_loss_and_mixed_bfloat16(data_dir, tmp_path):
    config = tiny_config(data_dir, ",train.epochs=1,train.stages=0,train.loss_type=sigmoid,"
                                   "runtime.mixed_precision=true")
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    assert trainer.policy == "mixed_bfloat16"
    assert trainer.model.get_layer("stem").compute_dtype == "bfloat16"
    assert np.isfinite(trainer.train().loss)


def test_bad_batch_and_strategy_are_user_errors(data_dir, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="larger than the 64 training examples"):
        Trainer(tiny_config(data_dir, ",train.batch_size=128"), str(tmp_path / "r"))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        Trainer(tiny_config(data_dir, ",runtime.strategy=multiworker"), str(tmp_path / "r"))
    with pytest.raises(UserError, match="needs `tpu`"):
        Trainer(tiny_config(data_dir, ",runtime.strategy=tpu"), str(tmp_path / "r"))


def test_waiting_for_checkpoints_yields_each_new_one_then_times_out(tmp_path):
    variable = tf.Variable(1.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=variable), str(tmp_path), 3)
    manager.save(checkpoint_number=5)
    waiting = checkpoints.wait_for_checkpoints(str(tmp_path), timeout=1.0, poll=0.05)
    assert next(waiting).endswith("ckpt-5")
    manager.save(checkpoint_number=9)
    assert next(waiting).endswith("ckpt-9")
    assert list(waiting) == []  # nothing new for a second: done


def test_mixed_float16_uses_dynamic_loss_scaling(data_dir, tmp_path, monkeypatch):
    from efficientnetv2.training import evaluator

    monkeypatch.setattr(evaluator, "mixed_precision_policy", lambda *_: "mixed_float16")
    same = ",train.epochs=1,train.stages=0,model.dropout_rate=0,model.survival_prob=1.0"
    trainer = Trainer(tiny_config(data_dir, same), str(tmp_path / "r"), verbose=False)
    assert type(trainer.optimizer).__name__ == "LossScaleOptimizer"
    assert trainer.model.get_layer("stem").compute_dtype == "float16"
    # the gradients are those of the loss times the dynamic scale: against a float32 twin
    # with the same initial weights, divided by the scale they agree
    images = tf.constant(np.random.RandomState(0).uniform(-1, 1, (8, 24, 24, 3)), tf.float32)
    labels = tf.one_hot(np.arange(8) % 10, 10)
    scaled, _ = trainer.loss_and_gradients(images, labels, tf.constant(0.0))
    scale = float(trainer.optimizer.dynamic_scale)
    assert scale >= 2.0**10
    monkeypatch.setattr(evaluator, "mixed_precision_policy", lambda *_: "float32")
    twin = Trainer(tiny_config(data_dir, same), str(tmp_path / "t"), verbose=False)
    twin.model.set_weights([w.numpy() for w in trainer.model.weights])
    plain, _ = twin.loss_and_gradients(images, labels, tf.constant(0.0))
    unscaled = np.concatenate([tf.reshape(tf.cast(g, tf.float32), [-1]).numpy() / scale
                               for g in scaled])
    reference = np.concatenate([tf.reshape(g, [-1]).numpy() for g in plain])
    assert np.linalg.norm(unscaled - reference) <= 0.05 * np.linalg.norm(reference)
    assert np.isfinite(trainer.train().loss) and trainer.averages


@pytest.mark.parametrize("loss_type", ["softmax", "sigmoid"])
def test_evaluation_and_export_follow_train_loss_type(data_dir, tmp_path, loss_type):
    """One rule (hparams.loss_type) for training, evaluation and the exported model."""
    from efficientnetv2.run_folder import RestoredModel
    from efficientnetv2.serving.export import module_for_run

    config = tiny_config(data_dir, f",train.loss_type={loss_type},data.max_eval_examples=16,"
                                   "train.ema_decay=0")  # the model's own (random) weights
    trainer = Evaluator(config, str(tmp_path / "run"), verbose=False)
    result = trainer.evaluate()
    images, labels = next(iter(trainer.eval_data.dataset(16, config.eval.isize)))
    logits = trainer.model(images, training=False)
    assert np.std(logits) > 1e-3
    if loss_type == "sigmoid":
        expected = tf.keras.losses.binary_crossentropy(labels, logits, from_logits=True)
    else:
        expected = tf.keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
    np.testing.assert_allclose(result.loss, np.mean(expected), rtol=1e-5)
    module = module_for_run(RestoredModel(trainer.model, config, trainer.class_names, "", False))
    probabilities = module.serve_images(tf.zeros([1, 28, 28, 3]))["probabilities"].numpy()
    assert module.multilabel == (loss_type == "sigmoid")
    assert np.isclose(probabilities.sum(), 1.0, atol=1e-5) == (loss_type == "softmax")


def test_flip_average_evaluates_and_serves_the_mean_of_both_mirror_images(data_dir, tmp_path):
    """`eval.flip_average`: evaluation's loss and the exported module's logits are those of
    the mean logits of each image and its mirror image, not of the image alone."""
    from efficientnetv2.run_folder import RestoredModel
    from efficientnetv2.serving.export import module_for_run

    config = tiny_config(data_dir, ",eval.flip_average=true,data.max_eval_examples=16,"
                                   "train.ema_decay=0")
    trainer = Evaluator(config, str(tmp_path / "run"), verbose=False)
    images, labels = next(iter(trainer.eval_data.dataset(16, config.eval.isize)))
    plain = trainer.model(images, training=False)
    averaged = (plain + trainer.model(images[:, :, ::-1], training=False)) / 2
    assert np.abs(averaged - plain).max() > 1e-4  # the mirror images change the logits
    expected = tf.keras.losses.categorical_crossentropy(labels, averaged, from_logits=True)
    np.testing.assert_allclose(trainer.evaluate().loss, np.mean(expected), rtol=1e-5)
    module = module_for_run(RestoredModel(trainer.model, config, trainer.class_names, "", False))
    raw = np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 3)).astype("float32")
    seen = module.recipe.eval_image(raw, config.eval.isize)
    mean = (trainer.model(seen, training=False) + trainer.model(seen[:, :, ::-1], training=False)) / 2
    np.testing.assert_allclose(module.serve_images(raw)["logits"], mean, atol=1e-5)


def _moved(images: np.ndarray, rows: int, cols: int, fill: float) -> np.ndarray:
    """The images moved by (rows, cols) pixels (down, right), the uncovered border `fill`."""
    height, width = images.shape[1:3]
    out = np.full_like(images, fill)
    out[:, max(rows, 0):height + min(rows, 0), max(cols, 0):width + min(cols, 0)] = \
        images[:, max(-rows, 0):height - max(rows, 0), max(-cols, 0):width - max(cols, 0)]
    return out


@pytest.mark.parametrize("diagonal", [False, True])
def test_shift_average_evaluates_and_serves_the_mean_of_the_moved_views(data_dir, tmp_path,
                                                                        diagonal):
    """`eval.shift_average=2` with flip averaging: evaluation's loss and the exported
    module's logits are those of the mean logits of each image, the image moved 2 pixels
    each way (and diagonally with `eval.shift_diagonal`) with black filling the border, and
    the mirror images of all five (nine)."""
    from efficientnetv2.run_folder import RestoredModel
    from efficientnetv2.serving.export import module_for_run

    config = tiny_config(data_dir, ",eval.flip_average=true,eval.shift_average=2,"
                                   f"eval.shift_diagonal={str(diagonal).lower()},"
                                   "data.max_eval_examples=16,train.ema_decay=0")
    trainer = Evaluator(config, str(tmp_path / "run"), verbose=False)
    moves = [(2, 0), (-2, 0), (0, 2), (0, -2)]
    moves += [(2, 2), (2, -2), (-2, 2), (-2, -2)] if diagonal else []
    assert trainer.eval_views.count() == 2 * (1 + len(moves))

    def by_hand(seen):
        black = float(seen.min())  # Fashion-MNIST has black pixels: normalised 0
        moved = [seen] + [_moved(seen, r, c, black) for r, c in moves]
        views = moved + [view[:, :, ::-1] for view in moved]
        return np.mean([trainer.model(view, training=False) for view in views], axis=0)

    images, labels = next(iter(trainer.eval_data.dataset(16, config.eval.isize)))
    assert float(images.numpy().min()) == -1.0  # the default recipe's black
    averaged = by_hand(images.numpy())
    flip_only = (trainer.model(images, training=False)
                 + trainer.model(images[:, :, ::-1], training=False)) / 2
    assert np.abs(averaged - flip_only).max() > 1e-4  # the moved images change the logits
    expected = tf.keras.losses.categorical_crossentropy(labels, averaged, from_logits=True)
    np.testing.assert_allclose(trainer.evaluate().loss, np.mean(expected), rtol=1e-5)
    module = module_for_run(RestoredModel(trainer.model, config, trainer.class_names, "", False))
    raw = np.zeros((2, 28, 28, 3), "float32")
    raw[:, 4:24, 6:20] = np.random.default_rng(0).uniform(0, 255, (2, 20, 14, 3))
    seen = module.recipe.eval_image(raw, config.eval.isize).numpy()
    np.testing.assert_allclose(module.serve_images(raw)["logits"], by_hand(seen), atol=1e-5)


@pytest.mark.parametrize("shift", [-1, 16])
def test_a_shift_average_below_zero_or_the_image_size_is_a_one_line_error(data_dir, tmp_path,
                                                                          shift):
    with pytest.raises(UserError, match=f"eval.shift_average={shift} must be 0 .* under "
                                        "eval.isize=16"):
        Evaluator(tiny_config(data_dir, f",eval.isize=16,eval.shift_average={shift}"),
                  str(tmp_path / "run"), verbose=False)
    assert not (tmp_path / "run").exists()


def test_another_architectures_checkpoint_is_refused_and_nothing_is_written(data_dir, tmp_path):
    """Training into a folder that holds another run: one line, and the folder unchanged
    (config.yaml, classes.txt, checkpoints), so the old run can still be evaluated."""
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), str(run), verbose=False).train()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    wider = tiny_config(data_dir, ",train.epochs=2,train.stages=0,"
                                  "model.blocks=r1_k3_s1_e1_i8_o8_c1|r2_k3_s2_e4_i8_o24_se0.25")
    with pytest.raises(UserError, match="holds a checkpoint of another run") as error:
        Trainer(wider, str(run), verbose=False).train()
    assert "\n" not in str(error.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


ONE_STAGE = ",train.stages=0"


def _eval_steps(run) -> list[int]:
    return [int(r["step"]) for r in reporting.read_log(str(run / reporting.LOG_FILE))
            if r["kind"] == "eval"]


def test_a_second_run_into_the_folder_is_refused_and_a_stale_lock_is_not(data_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = tiny_config(data_dir, ",train.epochs=1" + ONE_STAGE)
    with checkpoints.run_lock(str(run)):  # another run holds the folder
        with pytest.raises(UserError, match=r"in use by another run \(pid \d+ on .* since "):
            Trainer(config, str(run), verbose=False).train()
    assert not (run / "checkpoint").exists()
    (run / checkpoints.LOCK_FILE).write_text("pid 99999 on a killed run's host\n")  # stale
    Trainer(config, str(run), verbose=False).train()
    assert (run / "checkpoint").exists() and not (run / checkpoints.LOCK_FILE).exists()


def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",train.epochs=2" + ONE_STAGE), str(run), verbose=False).train()
    data_file = next(run.glob("ckpt-16.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:100])  # truncated by a full disk, say
    trainer = Trainer(tiny_config(data_dir, ",train.epochs=3" + ONE_STAGE), str(run))
    trainer.train()
    out = capsys.readouterr().out
    assert "ckpt-16 is damaged" in out and f"resumed from {run / 'ckpt-8'}: step 8" in out
    assert trainer.step == 24


def test_a_lost_evaluation_is_run_on_resume_and_a_rerun_adds_no_rows(data_dir, tmp_path):
    """A kill after an epoch's checkpoint and before its evaluation: the resumed run
    evaluates that checkpoint first; rerunning a finished run writes no second final row."""
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",train.epochs=2" + ONE_STAGE), str(run),
            verbose=False).train(eval_every_epoch=True)
    log_path = run / reporting.LOG_FILE
    rows = log_path.read_text().splitlines()
    log_path.write_text("\n".join(r for r in rows if not r.startswith("eval,16,")) + "\n")
    longer = tiny_config(data_dir, ",train.epochs=3" + ONE_STAGE)
    for _ in range(2):  # resume, then rerun the finished run
        Trainer(longer, str(run), verbose=False).train(eval_every_epoch=True)
        assert _eval_steps(run) == [8, 16, 24]


def test_a_model_dir_too_long_for_the_files_of_a_run_is_one_line(tmp_path):
    deep = str(tmp_path / "/".join(["d" * 200] * 20))  # about 4,000 characters
    with pytest.raises(UserError, match=r"`model_dir` is [\d,]+ characters long; .* choose a shorter"):
        checkpoints.check_writable(deep)
    checkpoints.check_writable(str(tmp_path / "run"))  # an ordinary one passes


def test_traineval_evaluates_every_nth_epoch_and_at_each_stage_end(data_dir, tmp_path):
    """4 epochs of 8 steps in 2 stages, every 3rd epoch: after epoch 2 (the first stage's
    end), epoch 3 and epoch 4 (the run's end), not after epoch 1."""
    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",eval.every_epochs=3"), str(run),
            verbose=False).train(eval_every_epoch=True)
    assert _eval_steps(run) == [16, 24, 32]


def test_resuming_a_run_on_other_data_is_refused_and_nothing_is_written(data_dir, tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    Trainer(tiny_config(data_dir, ",train.epochs=1,train.stages=0"), str(run), verbose=False).train()
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    folder = tmp_path / "images"
    for name in [f"class{i}" for i in range(10)]:  # 10 classes, as Fashion-MNIST has
        (folder / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (24, 24), (i * 40, 0, 0)).save(folder / name / f"{i}.png")
    other = hparams.build_config("custom", "imagefolder",
                                 hparam_str=hparam_string(TINY_RUN, "train.epochs=2,train.stages=0"),
                                 extra={"data.data_dir": str(folder)})
    with pytest.raises(UserError, match="holds a run on other data .*ds_name 'fashion_mnist' -> "
                                        "'imagefolder'.*train.ft_init_ckpt=") as error:
        Trainer(other, str(run), verbose=False).train()
    assert "\n" not in str(error.value)
    recipe = tiny_config(data_dir, ",train.epochs=2,train.stages=0,data.augname=ft")
    with pytest.raises(UserError, match="recipe 'default' -> 'ft'"):
        Trainer(recipe, str(run), verbose=False).train()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_image_removed_after_the_folder_scan_stops_in_one_line(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (24, 24), (i * 30, 0, 0)).save(folder / name / f"{i}.png")
    config = hparams.build_config("custom", "imagefolder", hparam_str=hparam_string(
        TINY_RUN, "train.epochs=1,train.stages=0,train.batch_size=4,data.val_fraction=0.25"),
        extra={"data.data_dir": str(folder)})
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)  # the folder is scanned
    (folder / "a" / "3.png").write_text("no longer an image")
    (folder / "b" / "5.png").unlink()
    with pytest.raises(UserError, match="2 image.s. went away or stopped being images during "
                                        "training") as error:
        trainer.train()
    assert "\n" not in str(error.value) and "rerun the same command" in str(error.value)
    assert f"{folder}/a/3.png" in str(error.value) and f"{folder}/b/5.png" in str(error.value)
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):  # the rerun goes on
        rerun = Trainer(config, str(tmp_path / "run"), verbose=False)
    assert rerun.train_data.num_examples == 10 and rerun.train().step == rerun.plan.total_steps


def test_the_gpu_projection_follows_the_measured_h200_rates():
    from efficientnetv2.training import gpu_projection

    v2s_300 = gpu_projection.V2S_MULTIPLY_ADDS_300
    assert gpu_projection.gpu_images_per_sec(300, v2s_300) == pytest.approx(2460)
    assert gpu_projection.gpu_images_per_sec(128, v2s_300 * (128 / 300) ** 2) == pytest.approx(4080)
    assert gpu_projection.gpu_images_per_sec(300, v2s_300 / 2) == pytest.approx(4920)  # half the work


def test_the_originals_model_options_train_evaluate_and_keep_hourly_checkpoints(data_dir, tmp_path):
    """Group norm, conv dropout, local pooling, a head bias, the original's `act_fn` key and
    `ra_aa` through a training run; keep_checkpoint_every_n_hours keeps more than
    keep_checkpoint_max."""
    config = tiny_config(data_dir, ",train.epochs=2,train.stages=0,model.bn_type=gn,"
                         "model.gn_groups=4,model.conv_dropout=0.2,model.local_pooling=true,"
                         "model.headbias=0.5,model.act_fn=relu6,data.augname=ra_aa,"
                         "runtime.keep_checkpoint_max=1,runtime.keep_checkpoint_every_n_hours=1e-9")
    assert config.model.activation == "relu6"
    run = tmp_path / "r"
    result = Trainer(config, str(run), verbose=False).train()
    assert np.isfinite(result.loss) and 0 <= result.top1 <= 1
    assert len(list(run.glob("ckpt-*.index"))) == 2  # epochs 1 and 2, though max is 1


def test_multilabel_metrics_equal_a_direct_computation():
    """Global AP over every (image, class) pair against the exact step-wise AP (every score
    in its own bucket), and micro precision and recall at 1 and 5, from numpy."""
    rng = np.random.RandomState(0)
    images, classes = 24, 8  # 192 scores, one per bucket
    scores = rng.permutation((np.arange(images * classes) + 0.5) / (images * classes))
    scores = scores.reshape(images, classes)
    logits = np.log(scores / (1 - scores)).astype("float32")
    labels = (rng.uniform(size=(images, classes)) < 0.3).astype("float32")
    labels[0] = 0  # an image without labels
    mask = np.ones(images, "float32")
    counts = reporting.multilabel_counts(tf.constant(labels), tf.constant(logits), tf.constant(mask))
    metrics = reporting.multilabel_metrics(counts.numpy(), images)
    order = np.argsort(-scores.ravel())
    hits = labels.ravel()[order]
    precision_at = np.cumsum(hits) / np.arange(1, hits.size + 1)
    assert metrics["global_ap"] == pytest.approx((precision_at * hits).sum() / hits.sum(), rel=1e-6)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    in_top5 = np.take_along_axis(labels, top5, axis=1)
    assert metrics["precision_1"] == pytest.approx(in_top5[:, 0].sum() / images)
    assert metrics["recall_1"] == pytest.approx(in_top5[:, 0].sum() / labels.sum())
    assert metrics["precision_5"] == pytest.approx(in_top5.sum() / (5 * images))
    assert metrics["recall_5"] == pytest.approx(in_top5.sum() / labels.sum())


def test_a_multi_label_folder_trains_and_logs_the_originals_metrics(tmp_path):
    from PIL import Image

    root = tmp_path / "tagged"
    rng = np.random.RandomState(0)
    rows = ["image,labels"]
    tags = ["red", "green", "blue"]
    for i in range(48):
        chosen = [t for t in tags if rng.uniform() < 0.5] or ["red"]
        pixels = np.zeros((20, 20, 3), np.uint8)
        for t in chosen:
            pixels[..., tags.index(t)] = 200
        os.makedirs(root / "images", exist_ok=True)
        Image.fromarray(pixels).save(root / "images" / f"{i}.png")
        rows.append(f"images/{i}.png,{' '.join(chosen)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    config = hparams.build_config(
        "custom", "imagefolder", hparam_str=hparam_string(
            TINY_RUN, ",train.epochs=2,train.stages=0,data.auto=false,data.val_fraction=0.25,"
                      "data.min_crop_area=1.0,eval.isize=24"),
        extra={"data.data_dir": str(root)})
    trainer = Trainer(config, str(tmp_path / "run"), verbose=False)
    assert trainer.eval_data.multiclass and trainer.class_names == ["blue", "green", "red"]
    result = trainer.train()
    assert set(result.multilabel) == set(reporting.MULTILABEL)
    assert 0 < result.multilabel["global_ap"] <= 1 and result.confusion is None
    rows = reporting.read_log(str(tmp_path / "run" / reporting.LOG_FILE))
    evals = [r for r in rows if r["kind"] == "eval"]
    assert evals and all(r["global_ap"] and r["recall_5"] for r in evals)


def test_a_checkpoint_whose_optimizer_has_other_slots_is_refused(tmp_path):
    """Keras saves optimizer slots by position: a run written while the optimizer kept the
    weights' EMA would restore its velocities into the wrong slots; refused in one line."""
    variable = keras.Variable(np.zeros(3, "float32"))
    old = keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True)
    old.build([variable])
    checkpoints.Checkpoints(str(tmp_path), 5, optimizer=old).save(1)
    new = keras.optimizers.SGD(0.1, momentum=0.9)
    new.build([variable])
    with pytest.raises(UserError, match="holds an optimizer of .* slots where this run's has"):
        checkpoints.Checkpoints(str(tmp_path), 5, optimizer=new).restore_latest()
    same = keras.optimizers.SGD(0.1, momentum=0.9, use_ema=True)
    same.build([variable])
    assert checkpoints.Checkpoints(str(tmp_path), 5, optimizer=same).restore_latest().endswith("ckpt-1")
