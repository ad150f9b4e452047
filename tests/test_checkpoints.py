"""run_folder.checkpoints: which checkpoint `best/` keeps, from scripted evaluation scores."""

import os

import pytest
import tensorflow as tf

from efficientnetv2.run_folder import checkpoints


@pytest.mark.parametrize("scores, best_step", [
    ([0.2, 0.5, 0.7, 0.4, 0.6, 0.3], 3),  # the maximum in the middle, not the latest
    ([0.2, 0.6, 0.6, 0.5, 0.6], 2),  # ties: the first to reach the maximum stays
    ([0.9, 0.1, 0.2, 0.3], 1),  # the first evaluation, never beaten
    ([0.1, 0.2, 0.3], 3),  # rising to the end
])
def test_best_keeps_the_first_highest_score_and_its_weights(tmp_path, scores, best_step):
    """Each evaluated step saves the weights it had; best/ then holds the checkpoint (and
    the weights) of the first highest score, and best.json names its step and score."""
    weights = tf.Variable(0.0)
    kept = checkpoints.Checkpoints(str(tmp_path), keep=10, weights=weights)
    saved = []
    for step, score in enumerate(scores, start=1):
        weights.assign(float(step))
        kept.save(step)
        saved.append(kept.save_if_best(step, score))
    assert saved == [s > max(scores[:i], default=-1) for i, s in enumerate(scores)]
    best = tf.train.latest_checkpoint(str(tmp_path / checkpoints.BEST_DIR))
    assert checkpoints.step_of(best) == best_step
    assert kept.best_top1() == {"step": best_step, "metric": "top1",
                                "score": pytest.approx(max(scores)), "top1": pytest.approx(max(scores))}
    weights.assign(-1.0)
    tf.train.Checkpoint(weights=weights).restore(best).expect_partial()
    assert float(weights.numpy()) == best_step


def test_best_by_balanced_accuracy_and_against_an_older_best_json(tmp_path):
    """eval.best_metric=balanced_accuracy: best/ keeps the highest balanced accuracy, not the
    highest top-1; a best.json of another metric (or written before the key) is replaced."""
    weights = tf.Variable(0.0)
    kept = checkpoints.Checkpoints(str(tmp_path), keep=10, weights=weights)
    (tmp_path / checkpoints.BEST_DIR).mkdir()
    (tmp_path / checkpoints.BEST_DIR / checkpoints.BEST_FILE).write_text('{"step": 1, "top1": 0.9}')
    # (top-1, balanced accuracy) of three evaluations: top-1 peaks at step 2, balanced at 3
    from efficientnetv2.training.evaluator import EvalResult

    for step, (top1, balanced) in enumerate([(0.80, 0.50), (0.90, 0.55), (0.85, 0.70)], start=2):
        kept.save(step)
        result = EvalResult(step, 1.0, top1, 1.0, 100, 32, balanced_accuracy=balanced)
        kept.save_if_best(step, result.score("balanced_accuracy"), "balanced_accuracy")
    assert kept.best_top1() == {"step": 4, "metric": "balanced_accuracy", "score": pytest.approx(0.70)}


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    from efficientnetv2.training import reporting

    # 6 images of class 0 (5 right), 2 of class 1 (1 right), none of class 2 (a wrong
    # prediction of class 2 is only a miss for its true class); a padded image (mask 0)
    labels = tf.one_hot([0, 0, 0, 0, 0, 0, 1, 1, 1], 3)
    predicted = [0, 0, 0, 0, 0, 2, 1, 0, 1]
    logits = tf.one_hot(predicted, 3)
    mask = tf.constant([1.0] * 8 + [0.0])
    hits, images = reporting.per_class_counts(labels, logits, mask, 3).numpy()
    assert hits.tolist() == [5, 1, 0] and images.tolist() == [6, 2, 0]
    assert reporting.balanced_accuracy(hits, images) == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_the_run_lock_holds_even_when_its_file_is_deleted(tmp_path):
    """The lock is the kernel's, on the folder itself: deleting run.lock during a run neither
    lets a second run in nor breaks the first run's end."""
    from efficientnetv2 import UserError

    with checkpoints.run_lock(str(tmp_path)):
        lock_file = tmp_path / checkpoints.LOCK_FILE
        assert lock_file.read_text().startswith("pid ")
        lock_file.unlink()
        with pytest.raises(UserError, match=r"in use by another run \(another process\)"):
            with checkpoints.run_lock(str(tmp_path)):
                pass
    assert not lock_file.exists()
    with checkpoints.run_lock(str(tmp_path)):  # released at the end
        pass


@pytest.mark.parametrize("where", ["relative", "moved"])
def test_a_run_resumes_from_a_relative_or_moved_folder(tmp_path, monkeypatch, where):
    """`--model_dir=runs/demo` (a relative path, as `make demo`) resumes; so does a run
    folder moved elsewhere after its checkpoints were written with absolute paths."""
    import shutil

    monkeypatch.chdir(tmp_path)
    folder = "runs/demo" if where == "relative" else str(tmp_path / "before")
    weights = tf.Variable(0.0)
    kept = checkpoints.Checkpoints(folder, keep=3, weights=weights)
    for step in (4, 8):
        weights.assign(float(step))
        kept.save(step)
    if where == "moved":
        shutil.move(folder, tmp_path / "after")
        folder = str(tmp_path / "after")
    weights.assign(-1.0)
    again = checkpoints.Checkpoints(folder, keep=3, weights=weights)
    assert again.restore_latest() == os.path.join(folder, "ckpt-8")
    assert float(weights.numpy()) == 8.0
