"""Pictures that explain: Grad-CAM maps from checkpoints and SavedModels, and predict's marks
of right and wrong where an image's folder names its class."""

import os

import numpy as np
import pytest
from conftest import TINY_BLOCKS
from PIL import Image
from test_main import assert_one_line_error, main_in_process

SIZE = 32


def _image(path, rng, square: bool = True) -> tuple[int, int]:
    """A dark noisy image, with one bright 8x8 square at a random place (`square`); returns
    the square's centre (row, column)."""
    pixels = rng.randint(0, 60, (SIZE, SIZE, 3)).astype(np.uint8)
    row, col = rng.randint(0, SIZE - 8, size=2)
    if square:
        pixels[row:row + 8, col:col + 8] = 255
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path)
    return row + 4, col + 4


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    """A tiny network trained to tell images with a bright square from images without: the
    class is decided by one bright region."""
    root = tmp_path_factory.mktemp("squares")
    rng = np.random.RandomState(0)
    for split, count in (("train", 96), ("val", 16)):
        for i in range(count):
            square = i % 2 == 0
            _image(str(root / "data" / split / ("square" if square else "none") / f"{i}.png"),
                   rng, square)
    hparam_str = ("model.blocks=" + "|".join(TINY_BLOCKS) + ",model.feature_size=32,"
                  "train.epochs=20,train.batch_size=16,data.min_crop_area=1.0,train.ema_decay=0,eval.batch_size=16,runtime.xla=false,"
                  f"train.isize={SIZE},eval.isize={SIZE},data.augname=none,data.auto=false,"
                  "model.dropout_rate=0,model.survival_prob=none,train.lr_warmup_epoch=1")
    run = root / "run"
    from efficientnetv2 import hparams
    from efficientnetv2.training.trainer import Trainer

    config = hparams.build_config("custom", "imagefolder", hparam_str=hparam_str,
                                  extra={"data.data_dir": str(root / "data")})
    result = Trainer(config, str(run), verbose=False).train()
    assert result.top1 >= 0.9, result
    return {"root": root, "run": run, "rng": rng}


def test_grad_cam_peaks_at_the_bright_square_from_checkpoint_and_saved_model(square_run, tmp_path):
    from efficientnetv2.run_folder import restore_model
    from efficientnetv2.serving.export import export_run
    from efficientnetv2.serving.predict import Predictor, read_images

    rng = np.random.RandomState(7)
    files, centres = [], []
    for i in range(6):
        path = str(tmp_path / "test" / f"{i}.png")
        centres.append(_image(path, rng))
        files.append(path)
    images = read_images(files)
    restored = restore_model(str(square_run["run"]))
    maps = Predictor.from_restored(restored).grad_cams(images)
    assert maps.shape[0] == 6 and np.allclose(maps.max(axis=(1, 2)), 1.0, atol=1e-5)
    cell = SIZE / maps.shape[1]  # pixels per map cell (8 x 8 cells of 4 px)
    centres_in_cells = np.arange(maps.shape[1]) + 0.5
    rows, cols = np.meshgrid(centres_in_cells * cell, centres_in_cells * cell, indexing="ij")
    shares, misses = [], []
    for cam, (row, col) in zip(maps, centres):
        near = (np.abs(rows - row) <= 2 * cell) & (np.abs(cols - col) <= 2 * cell)  # 16-25 of 64
        shares.append(cam[near].sum() / cam.sum())
        centroid = ((cam * rows).sum() / cam.sum(), (cam * cols).sum() / cam.sum())
        misses.append(np.hypot(centroid[0] - row, centroid[1] - col) / cell)
    # most of the heat lies within 2 cells of the square, and its centre near the square's
    assert min(shares) >= 0.6 and np.mean(shares) >= 0.75, shares
    assert max(misses) <= 1.5, misses
    export_run(restored, str(tmp_path / "export"), version=1)
    from_export = Predictor.from_saved_model(str(tmp_path / "export")).grad_cams(images)
    np.testing.assert_allclose(from_export, maps, atol=1e-4)


def test_predict_marks_right_and_wrong_and_explain_needs_a_plot(square_run, tmp_path, capsys):
    from efficientnetv2.serving.predict import true_class

    val = square_run["root"] / "data" / "val"
    assert true_class(str(val / "square" / "0.png"), ["none", "square"]) == "square"
    assert true_class(str(tmp_path / "x.png"), ["none", "square"]) is None
    plot = tmp_path / "sheet.png"
    result = main_in_process(capsys, "--mode=predict", f"--model_dir={square_run['run']}",
                             f"--image={val}", f"--plot={plot}", "--explain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "of 16 images whose folder names their class are right" in result.stderr
    assert plot.exists() and plot.stat().st_size > 10_000
    assert_one_line_error(main_in_process(capsys, "--mode=predict", f"--model_dir={square_run['run']}",
                                          f"--image={val}", "--explain"),
                          "error: --explain draws into the --plot picture")
