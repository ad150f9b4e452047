"""Checkpoints: the latest N and the best by eval top-1, written so that a kill at any
moment leaves the previous checkpoint intact; waiting for new ones (eval mode)."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator

import keras
import tensorflow as tf

from efficientnetv2.errors import UserError, first_line
from efficientnetv2.files import write_text

BEST_DIR = "best"
BEST_FILE = "best.json"
LOCK_FILE = "run.lock"
# What restoring a checkpoint raises: DAMAGED for an unreadable or truncated file (IndexError),
# MISMATCHED for one whose variables are not the model's.
DAMAGED = (tf.errors.OpError, IndexError)
MISMATCHED = (ValueError, AssertionError)


# The longest path a run writes below its model_dir (TensorBoard's event files, with the host
# name inside, and export versions), with room to spare.
LONGEST_FILE_IN_RUN = 255


def check_writable(directory: str) -> None:
    """Fails with a UserError, before any training, if `directory` cannot be written, or is
    so deep that the files a run writes in it would pass the system's path-length limit."""
    path = os.path.abspath(directory)
    limit = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096
    if len(path) + LONGEST_FILE_IN_RUN >= limit:
        raise UserError(f"`model_dir` is {len(path):,} characters long; the files a run writes "
                        f"in it would pass this system's {limit:,}-character path limit: choose "
                        "a shorter path")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_test") as f:
            f.write(b"0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UserError(f"`model_dir` {directory!r} is not writable ({e.strerror or e}); "
                        "choose another directory or fix its permissions / free space") from None


@contextlib.contextmanager
def run_lock(directory: str):
    """Holds `directory` for this process while training writes it: a second run into the
    same folder is refused with a UserError naming the first. The lock is the kernel's
    (flock on the folder itself), released when the process ends however it ends, and
    kept if someone deletes `run.lock`, the file that names the holder (a killed run's
    file does not block a resume; a run that ends removes it). Folders on remote
    filesystems (gs://) are not locked."""
    if "://" in directory:
        yield
        return
    path = os.path.join(directory, LOCK_FILE)
    handle = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{directory} is in use by another run ({_holder(path)}); wait for it "
                            "to end or stop it, or pass another `model_dir`") from None
        started = datetime.datetime.now().isoformat(timespec="seconds")
        write_text(path, f"pid {os.getpid()} on {socket.gethostname()} since {started}: "
                         f"{' '.join(sys.argv)[:300]}\n")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    finally:
        os.close(handle)


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(400).strip() or "another process"
    except OSError:
        return "another process"


class Checkpoints:
    """A tf.train.Checkpoint of the run's state with two managers: the last
    `keep` checkpoints in `directory` (and, with `keep_every_n_hours`, one of every that
    many hours for good, as the original's `keep_checkpoint_every_n_hours`), and the best by
    eval top-1 in `directory/best`.

    TensorFlow writes the data files first and the `checkpoint` index file last (atomically),
    so a run killed while saving resumes from the previous checkpoint. A failed save (disk
    full) removes its partial files and raises a UserError; earlier checkpoints stay valid.
    `write` is False on non-chief workers of a multi-worker run: they save to a scratch folder
    (every worker must take part in a save) that is deleted afterwards.
    """

    def __init__(self, directory: str, keep: int, write: bool = True,
                 keep_every_n_hours: float | None = None, **objects):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**objects)
        target = directory if write else tempfile.mkdtemp(prefix="efficientnetv2_worker_ckpt_")
        self.write = write
        self.latest_manager = tf.train.CheckpointManager(
            self.checkpoint, target, max_to_keep=keep,
            keep_checkpoint_every_n_hours=keep_every_n_hours or None)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(target, BEST_DIR), max_to_keep=1)

    @property
    def latest(self) -> str | None:
        """The latest checkpoint in `directory` (the chief's, on every worker)."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self, log=print) -> str | None:
        """Restores the latest intact checkpoint, if any; returns its path. A damaged one (a
        truncated or unreadable file) is reported and passed over for the one before it; one
        of another architecture is refused, with nothing written."""
        state = tf.train.get_checkpoint_state(self.directory)
        if not state or not state.model_checkpoint_path:
            return None
        paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
        # by name in this folder: the state's paths may be relative to where the run started,
        # or absolute where the folder used to be
        paths = [os.path.join(self.directory, os.path.basename(p)) for p in reversed(paths)]
        for path in paths:
            try:
                self._check_optimizer_layout(path)
                self.checkpoint.restore(path).assert_existing_objects_matched()
                return path
            except DAMAGED as e:  # unreadable: try the one before
                log(f"{path} is damaged ({first_line(e)}); trying the checkpoint before it")
            except UserError:
                raise
            except MISMATCHED as e:
                raise UserError(
                    f"{self.directory} holds a checkpoint of another run ({path}: "
                    f"{first_line(e)}); nothing was changed: give a new `model_dir`, or the "
                    "same config as that run to resume it") from None
        raise UserError(f"every checkpoint in {self.directory} is damaged ({', '.join(paths)}); "
                        "move them away to start afresh, or restore them from a backup")

    def _check_optimizer_layout(self, path: str) -> None:
        """Keras saves optimizer slots by position: a checkpoint whose optimizer holds another
        number of them (another optimizer, or one that kept the weights' EMA, before
        2026-12-04) would restore velocities into the wrong slots. Refused in one line."""
        optimizer = getattr(self.checkpoint, "optimizer", None)
        if optimizer is None or hasattr(optimizer, "inner_optimizer"):  # loss scaling: nested
            return
        slots = [int(name.split("/")[2]) for name, _ in tf.train.list_variables(path)
                 if name.startswith("optimizer/_variables/")]
        saved, ours = (max(slots) + 1 if slots else 0), len(optimizer.variables)
        if saved and saved != ours:
            raise UserError(
                f"{path} holds an optimizer of {saved} slots where this run's has {ours}: a run "
                "with another train.optimizer, or one written before 2026-12-04 (when the "
                "weights' EMA moved out of the optimizer); nothing was changed: resume with its "
                "train.optimizer or give a new `model_dir` (eval, export and predict still read "
                "it; train.ft_init_ckpt starts a new run from its weights)")

    def save(self, step: int) -> str:
        return self._save(self.latest_manager, step)

    def save_if_best(self, step: int, score: float, metric: str = "top1") -> bool:
        """Saves to best/ when `score` (of `metric`: eval.best_metric) beats the best so far;
        returns whether it did."""
        if not beats_best(self.directory, score, metric):
            return False
        self._save(self.best_manager, step)
        if self.write:
            write_best(self.directory, step, score, metric)
        return True

    def best_top1(self) -> dict | None:
        return best_record(self.directory)

    def _save(self, manager: tf.train.CheckpointManager, step: int) -> str:
        before = set(os.listdir(manager.directory)) if os.path.isdir(manager.directory) else set()
        try:
            path = manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:
            for name in set(os.listdir(manager.directory)) - before - {"checkpoint"}:
                partial = os.path.join(manager.directory, name)
                if os.path.isdir(partial):
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    os.remove(partial)
            raise UserError(f"could not write a checkpoint in {manager.directory} ({e}); "
                            f"the previous checkpoint {manager.latest_checkpoint} is intact. "
                            "Free some space, then rerun the same command to resume") from e
        if not self.write:
            shutil.rmtree(manager.directory, ignore_errors=True)
        return path


def best_record(directory: str) -> dict | None:
    """best/best.json of a run: the step and top-1 of the checkpoint kept in best/."""
    path = os.path.join(directory, BEST_DIR, BEST_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def beats_best(directory: str, score: float, metric: str) -> bool:
    """Whether `score` of `metric` beats best.json's (a best of another metric, or none,
    is beaten)."""
    best = best_record(directory)
    if best is None or best.get("metric", "top1") != metric:
        return True
    return score > best.get("score", best.get("top1", float("-inf")))


def write_best(directory: str, step: int, score: float, metric: str) -> None:
    """best/best.json: the step kept in best/, its metric and score (and top1, as before
    eval.best_metric)."""
    record = {"step": int(step), "metric": metric, "score": float(score)}
    if metric == "top1":
        record["top1"] = float(score)  # as best.json said before eval.best_metric
    write_text(os.path.join(directory, BEST_DIR, BEST_FILE), json.dumps(record))


def archive_if_best(directory: str, path: str, score: float, metric: str = "top1") -> bool:
    """--mode=eval's `archive_ckpt` (the original's utils.archive_ckpt): copies checkpoint
    `path` into directory/best when its `score` of `metric` beats best.json's (training keeps
    the same folder by its own evaluations); returns whether it did. Each file is copied under a temporary
    name and renamed, then the `checkpoint` index and best.json are written, then the
    previous best's files removed: a kill at any moment leaves a usable best/."""
    if not beats_best(directory, score, metric):
        return False
    best_dir = os.path.join(directory, BEST_DIR)
    os.makedirs(best_dir, exist_ok=True)
    source, prefix = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    if source != os.path.abspath(best_dir):  # a checkpoint of best/ itself stays where it is
        for name in os.listdir(source):
            if name.startswith(prefix + "."):
                partial = os.path.join(best_dir, f".{name}.{os.getpid()}.partial")
                shutil.copyfile(os.path.join(source, name), partial)
                os.replace(partial, os.path.join(best_dir, name))
    tf.compat.v1.train.update_checkpoint_state(best_dir, prefix, [prefix])
    write_best(directory, step_of(path), score, metric)
    for name in os.listdir(best_dir):  # the previous best's files
        if not name.startswith((prefix + ".", "checkpoint", BEST_FILE, ".")):
            os.remove(os.path.join(best_dir, name))
    return True


def wait_for_checkpoints(directory: str, timeout: float, poll: float = 5.0) -> Iterator[str]:
    """Yields each new latest checkpoint of `directory` (the current one first, if any),
    until no new one appears for `timeout` seconds."""
    seen = None
    deadline = time.time() + timeout
    while True:
        path = tf.train.latest_checkpoint(directory)
        if path and path != seen:
            seen = path
            yield path
            deadline = time.time() + timeout
        elif time.time() >= deadline:
            return
        else:
            time.sleep(poll)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a run directory (its latest checkpoint)."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if not latest:
            raise UserError(f"no checkpoint in {path}; give a run's model_dir or a checkpoint "
                            "prefix like model_dir/ckpt-1000")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise UserError(f"checkpoint {path!r} not found (no {path}.index); give a run's "
                        "model_dir or a checkpoint prefix like model_dir/ckpt-1000")
    return path


def batch_norm_statistics(model: keras.Model) -> list:
    """A model's batch-norm moving means and variances. The EMA averages them with the
    weights, as the original's does: averaged weights evaluated with the statistics of the
    latest weights would be normalised by the wrong means and variances."""
    return [v for v in model.non_trainable_variables
            if v.path.endswith(("/moving_mean", "/moving_variance"))]


def ema_key(variable) -> str:
    """The name of a variable's EMA in a checkpoint's `ema` dict (its path, dotted)."""
    return variable.path.replace("/", ".")


def step_of(path: str) -> int:
    """The training step a checkpoint path was saved at (its `-N` suffix; 0 for a checkpoint
    renamed without one)."""
    suffix = path.rsplit("-", 1)[-1]
    return int(suffix) if "-" in path and suffix.isdigit() else 0


def has_checkpoints(folder: str) -> bool:
    return tf.train.latest_checkpoint(folder) is not None
