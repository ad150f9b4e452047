"""efficientnetv2.files: writes that are whole or absent, and scratch folders of ended runs."""

import os
import subprocess
import sys

import pytest

from efficientnetv2.files import atomic_write, scratch_folder, write_text


def test_a_write_interrupted_midway_leaves_the_old_file_and_no_scratch(tmp_path):
    path = tmp_path / "config.yaml"
    write_text(str(path), "old: 1\n")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(path)) as f:
            f.write("new: half")
            raise KeyboardInterrupt  # a Ctrl-C, a full disk, an exception mid-write
    assert path.read_text() == "old: 1\n" and os.listdir(tmp_path) == ["config.yaml"]
    write_text(str(path), "new: 2\n")
    assert path.read_text() == "new: 2\n" and os.listdir(tmp_path) == ["config.yaml"]


def test_a_sigkill_midway_leaves_the_old_file_whole(tmp_path):
    """A process killed while it writes: the file is the old one (its partial twin is
    hidden, never read under the real name)."""
    path = tmp_path / "classes.txt"
    write_text(str(path), "cat\ndog\n")
    code = ("import os, signal, sys\nfrom efficientnetv2.files import atomic_write\n"
            "with atomic_write(sys.argv[1]) as f:\n    f.write('cat\\n')\n    f.flush()\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)])
    assert done.returncode == -9 and path.read_text() == "cat\ndog\n"
    hidden = [n for n in os.listdir(tmp_path) if n != "classes.txt"]
    assert len(hidden) == 1 and hidden[0].startswith(".classes.txt.")


def test_new_files_take_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text(str(tmp_path / "a.txt"), "x")
    finally:
        os.umask(previous)
    assert oct(os.stat(tmp_path / "a.txt").st_mode & 0o777) == "0o644"


def test_a_scratch_folder_of_an_ended_process_is_removed_not_a_living_ones(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True)
    dead = tmp_path / f".3.{ended.stdout.strip()}.partial-abc"
    living = tmp_path / f".3.{os.getppid()}.partial-def"  # pytest's parent lives on
    dead.mkdir()
    living.mkdir()
    mine = scratch_folder(str(tmp_path), "3")
    assert not dead.exists() and living.exists()
    assert os.path.basename(mine).startswith(f".3.{os.getpid()}.partial-")
