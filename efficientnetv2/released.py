"""The original's released checkpoints by name, downloaded once into the cache.

    efficientnetv2-s             ImageNet-1k            (b0, b1, b2, b3, s, m, l)
    efficientnetv2-s-21k         ImageNet-21k, 21,843 classes (b0 ... xl)
    efficientnetv2-s-21k-ft1k    ImageNet-21k, fine-tuned on ImageNet-1k (b0 ... xl)

Each is the archive `<name>.tgz` at the original's public location (RELEASE_URL, or the
`EFFICIENTNETV2_RELEASE_URL` environment variable), holding a folder `<name>/` with a
name-based TF1 checkpoint and its EMA shadow variables (efficientnetv2/automl_import.py reads
it). Offline, the error names the URL and where to put the archive or its folder.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
import urllib.request

from efficientnetv2.errors import UserError, first_line

RELEASE_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientnet/v2/"
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "efficientnetv2", "released")
IMAGENET_21K_CLASSES = 21843
_SIZES = ("b0", "b1", "b2", "b3", "s", "m", "l", "xl")
RELEASED = tuple([f"efficientnetv2-{s}" for s in _SIZES if s != "xl"]
                 + [f"efficientnetv2-{s}-21k" for s in _SIZES]
                 + [f"efficientnetv2-{s}-21k-ft1k" for s in _SIZES])


def is_released(name: str) -> bool:
    return name in RELEASED


def architecture(name: str) -> str:
    """The model name a released checkpoint is for: efficientnetv2-s-21k -> efficientnetv2-s."""
    return name.split("-21k")[0]


def num_classes(name: str) -> int:
    return IMAGENET_21K_CLASSES if name.endswith("-21k") else 1000


def _url(name: str) -> str:
    return os.environ.get("EFFICIENTNETV2_RELEASE_URL", RELEASE_URL).rstrip("/") + f"/{name}.tgz"


def _has_checkpoint(folder: str) -> bool:
    return os.path.isdir(folder) and any(f.endswith(".index") for f in os.listdir(folder))


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def fetch(name: str, cache_dir: str | None = None) -> str:
    """The folder of the released checkpoint `name`, downloading and unpacking its archive
    into the cache the first time."""
    cache = cache_dir or os.environ.get("EFFICIENTNETV2_CACHE", CACHE_DIR)
    folder, archive = os.path.join(cache, name), os.path.join(cache, f"{name}.tgz")
    if _has_checkpoint(folder):
        return folder
    url = _url(name)
    put = f"download {url} elsewhere and put it at {archive} (or unpack it into {folder})"
    os.makedirs(cache, exist_ok=True)
    if not os.path.exists(archive):
        partial = archive + ".part"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
                shutil.copyfileobj(response, f)
        except urllib.error.HTTPError as e:
            _remove(partial)
            raise UserError(f"{url}: HTTP {e.code} {e.reason}; the released names are "
                            f"{', '.join(RELEASED[:3])} ... (efficientnetv2/released.py)") from None
        except (TimeoutError, urllib.error.URLError, OSError) as e:
            _remove(partial)
            reason = getattr(e, "reason", None) or first_line(e)
            raise UserError(f"cannot download {url} ({reason}); {put}") from None
        os.replace(partial, archive)
    try:
        with tarfile.open(archive) as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.10.12+
            tar.extractall(cache, **safe)
    except (tarfile.TarError, EOFError, OSError) as e:
        os.remove(archive)
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"the archive {archive} is damaged ({first_line(e)}); it was removed: "
                        f"run again to download it, or {put}") from None
    if not _has_checkpoint(folder):
        raise UserError(f"{archive} holds no checkpoint in {name}/; {put}")
    return folder
