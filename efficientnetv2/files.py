"""Files written whole or not at all, and scratch folders that a killed process leaves behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w"):
    """An open file that becomes `path` only when the block ends without error: it is
    written under a hidden temporary name beside `path` and renamed over it (atomic on one
    filesystem), so a kill or a full disk leaves the old file or none, never half of one."""
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask's mode
    try:
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(handle, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def write_text(path: str, text: str) -> str:
    """Writes `text` to `path` atomically (atomic_write); returns the path."""
    with atomic_write(path) as f:
        f.write(text)
    return path


def scratch_folder(parent: str, name: str) -> str:
    """A new hidden folder `.{name}.{pid}.partial-*` in `parent` for work that is renamed
    into place when complete; first removes those that earlier processes, now ended,
    left behind there (a kill during an export)."""
    os.makedirs(parent, exist_ok=True)
    for entry in os.listdir(parent):
        if entry.startswith(f".{name}.") and ".partial-" in entry:
            pid = entry[len(name) + 2:].split(".", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f".{name}.{os.getpid()}.partial-", dir=parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
