"""Installing the project must not shadow Hugging Face's `datasets` (same import name)."""

import importlib.metadata
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECK = ("import datasets, efficientnetv2.datasets as ours; "
         "assert hasattr(datasets, 'load_dataset'), datasets.__file__; "
         "assert os.path.samefile(os.path.dirname(ours.__file__), os.path.join(ROOT, 'datasets')); "
         "print('ok')")


def test_hugging_face_datasets_and_ours_coexist_in_one_process():
    # Outside the checkout (a user's own script). Inside it, Python puts the current folder
    # first on sys.path, so there `python -c 'import datasets'` finds the folder (README).
    code = f"import os; ROOT = {ROOT!r}; " + CHECK
    result = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_main_py_does_not_shadow_hugging_face_datasets():
    code = ("import runpy, sys; sys.argv = ['main.py', '--helpshort']; "
            "import os; sys.path.insert(0, os.getcwd()); "
            "g = runpy.run_path('main.py', run_name='not_main'); import datasets; "
            "print(hasattr(datasets, 'load_dataset'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr[-2000:]


def test_no_top_level_datasets_package_is_installed():
    files = importlib.metadata.files("efficientnetv2-keras") or []
    top_level = {str(f).split("/")[0] for f in files}
    assert "datasets" not in top_level and "hparams" not in top_level
    assert importlib.metadata.version("datasets")  # Hugging Face's, installed for this test


def test_each_installed_folder_is_linked_inside_the_package():
    """efficientnetv2/<folder> links to the top-level <folder> that installs as
    efficientnetv2.<folder> (setup.py), so that an editor or a type checker opening the
    repository resolves every import as Python does."""
    for folder in ("datasets", "hparams", "run_folder", "training", "serving", "experiments"):
        link = os.path.join(ROOT, "efficientnetv2", folder)
        assert os.path.islink(link) and os.path.samefile(link, os.path.join(ROOT, folder)), folder
