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
    assert kept.best_top1() == {"step": best_step, "top1": pytest.approx(max(scores))}
    weights.assign(-1.0)
    tf.train.Checkpoint(weights=weights).restore(best).expect_partial()
    assert float(weights.numpy()) == best_step


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
