"""Benchmark: the `imagefolder` defaults on several users' folders, against a plain keras peer.

    .venv/bin/python experiments/own_folders.py [--root /tmp/own_folders] [--seeds 0 1]
        [--folders fmnist_1k fmnist_10k fmnist_colour glyphs] [--fashion_dir DIR]
    .venv/bin/python experiments/own_folders.py --finetune_from RUN [--seeds 0 1]
    .venv/bin/python experiments/own_folders.py --config_file hparams/flowers_sgd.yaml
        [--folders fmnist_1k glyphs_300] [--seeds 0 1]

Builds folders that differ in image size, colour, class count and number of images, from
data that is offline here (train/ and val/ each, the val images never trained on):
- fmnist_1k, fmnist_10k: Fashion-MNIST as 28 px grayscale PNGs (1,000 or 10,000 training
  images, 500 or 1,000 validation images from the test split);
- fmnist_colour: 2,000 Fashion-MNIST items enlarged to 96-160 px, tinted, on random colour
  backgrounds with noise, as JPEGs of mixed sizes;
- glyphs: 20 letters rendered from the fonts on this machine (/usr/share/fonts), 40-72 px
  RGB PNGs with random colours, sizes, offsets and rotations; validation fonts are never
  trained on.
Then for each folder and seed runs the documented command with nothing else set
(`main.py --mode=traineval --model_name=efficientnetv2-b0 --dataset_cfg=imagefolder
--data_dir=FOLDER`), and the peer in the same wall time: keras.applications' EfficientNetV2B0
(random weights) read with `keras.utils.image_dataset_from_directory` at the image size the
default chose (32 px where that is smaller: keras.applications' least), random flips, AdamW
with warm-up and cosine decay sized to end within that time. Prints a markdown table; the
run folders stay under --root. With --finetune_from RUN (for example the fmnist_10k run), it
fine-tunes that run on glyphs_300 (300 glyphs, 15 a letter) and trains the same network from
scratch there, both with the folder's defaults.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = os.path.join(HERE, os.pardir, "main.py")
LETTERS = "ABCDEFGHJKLMNPRSTUVY"


def _save(image: Image.Image, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image.save(path, quality=90) if path.endswith(".jpg") else image.save(path)


def _fashion(fashion_dir: str, split: str, count: int, seed: int):
    from efficientnetv2.datasets.idx import load_idx

    images, labels = load_idx(fashion_dir, split, 10)
    order = np.random.RandomState(seed).permutation(len(images))[:count]
    return images[order, :, :, 0], labels[order]


def build_fashion(root: str, fashion_dir: str, train: int, val: int) -> None:
    for split, source, count in (("train", "train", train), ("val", "test", val)):
        images, labels = _fashion(fashion_dir, source, count, seed=len(split))
        for i, (image, label) in enumerate(zip(images, labels)):
            _save(Image.fromarray(image), os.path.join(root, split, f"class{label}", f"{i}.png"))


def build_fashion_colour(root: str, fashion_dir: str, train: int, val: int,
                         sides: tuple[int, int] = (96, 160)) -> None:
    rng = np.random.RandomState(0)
    for split, source, count in (("train", "train", train), ("val", "test", val)):
        images, labels = _fashion(fashion_dir, source, count, seed=len(split))
        for i, (image, label) in enumerate(zip(images, labels)):
            width, height = rng.randint(sides[0], sides[1] + 1, size=2)
            side = int(min(width, height) * rng.uniform(0.6, 0.95))
            item = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR),
                              np.float32)[..., None] / 255.0
            background = rng.uniform(0, 255, 3) + rng.normal(0, 20, (height, width, 3))
            canvas = background.copy()
            top, left = rng.randint(0, height - side + 1), rng.randint(0, width - side + 1)
            tint = rng.uniform(40, 255, 3)
            patch = canvas[top:top + side, left:left + side]
            canvas[top:top + side, left:left + side] = patch * (1 - item) + tint * item
            picture = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
            _save(picture, os.path.join(root, split, f"class{label}", f"{i}.jpg"))


def _has_letters(path: str) -> bool:
    """Whether the font draws every letter (not its missing-glyph box)."""
    try:
        font = ImageFont.truetype(path, 32)
        missing = bytes(font.getmask("\u0378"))  # an unassigned code point
        return all(bytes(font.getmask(letter)) != missing for letter in LETTERS)
    except OSError:
        return False


def build_glyphs(root: str, train_per_class: int, val_per_class: int) -> None:
    fonts = [path for path in sorted(glob.glob("/usr/share/fonts/**/*.[ot]tf", recursive=True))
             if _has_letters(path)]
    if len(fonts) < 5:
        sys.exit("error: glyphs needs 5 or more fonts under /usr/share/fonts; "
                 "apt-get install fonts-dejavu fonts-liberation fonts-freefont-ttf")
    val_fonts, train_fonts = fonts[::5], [f for i, f in enumerate(fonts) if i % 5]
    rng = np.random.RandomState(0)
    for split, pool, count in (("train", train_fonts, train_per_class),
                               ("val", val_fonts, val_per_class)):
        for letter in LETTERS:
            made = 0
            while made < count:
                size = int(rng.randint(40, 73))
                try:
                    font = ImageFont.truetype(pool[rng.randint(len(pool))], int(size * rng.uniform(0.5, 0.8)))
                except OSError:
                    continue
                back = tuple(int(v) for v in rng.randint(0, 256, 3))
                fore = tuple((v + 128 + int(rng.randint(-40, 41))) % 256 for v in back)
                image = Image.new("RGB", (size, size), back)
                draw = ImageDraw.Draw(image)
                box = draw.textbbox((0, 0), letter, font=font)
                x = (size - (box[2] - box[0])) / 2 - box[0] + rng.randint(-size // 10, size // 10 + 1)
                y = (size - (box[3] - box[1])) / 2 - box[1] + rng.randint(-size // 10, size // 10 + 1)
                draw.text((x, y), letter, fill=fore, font=font)
                image = image.rotate(rng.uniform(-12, 12), Image.BILINEAR, fillcolor=back)
                _save(image, os.path.join(root, split, letter, f"{made}.png"))
                made += 1


def imbalanced(root: str, factor: float = 10.0) -> None:
    """Prunes the class folders of train/ and val/ so that class i of C keeps
    n * factor^(-i / (C - 1)) of its n images: the first class `factor` times the last, in
    validation as in training (as a user's folder split at random would be)."""
    for split in ("train", "val"):
        classes = sorted(os.listdir(os.path.join(root, split)))
        for index, name in enumerate(classes):
            folder = os.path.join(root, split, name)
            files = sorted(os.listdir(folder))
            keep = max(1, round(len(files) * factor ** (-index / max(1, len(classes) - 1))))
            for file in files[keep:]:
                os.remove(os.path.join(folder, file))


def _then_imbalanced(build):
    def made(root, args):
        build(root, args)
        imbalanced(root)
    return made


FOLDERS = {
    "fmnist_1k": lambda root, args: build_fashion(root, args.fashion_dir, 1000, 500),
    "fmnist_10k": lambda root, args: build_fashion(root, args.fashion_dir, 10000, 1000),
    "fmnist_colour": lambda root, args: build_fashion_colour(root, args.fashion_dir, 2000, 500),
    "glyphs": lambda root, args: build_glyphs(root, 100, 25),
    "glyphs_300": lambda root, args: build_glyphs(root, 15, 25),
    # imbalanced: the first class 10x the last (geometric in between), validation alike
    "fmnist_imb": _then_imbalanced(lambda root, args: build_fashion(root, args.fashion_dir, 2200, 2000)),
    "glyphs_imb": _then_imbalanced(lambda root, args: build_glyphs(root, 100, 50)),
    # sides of 48 to 256 px
    "colour_imb": _then_imbalanced(lambda root, args: build_fashion_colour(
        root, args.fashion_dir, 2000, 1000, sides=(48, 256))),
}
IMBALANCED = ("fmnist_imb", "glyphs_imb", "colour_imb")


def run_ours(folder: str, run_dir: str, seed: int, init: str | None = None,
             extra: str = "", config_file: str | None = None) -> dict:
    """The documented command with nothing else set (or fine-tuning from `init`, or with
    `config_file`'s recipe): top-1 and wall seconds."""
    hparams = ",".join(filter(None, [f"train.seed={seed}",
                                     f"train.ft_init_ckpt={init}" if init else "", extra]))
    command = [sys.executable, MAIN, "--mode=traineval", "--model_name=efficientnetv2-b0",
               "--dataset_cfg=imagefolder", f"--data_dir={folder}", f"--model_dir={run_dir}",
               f"--hparam_str={hparams}"] + ([f"--config_file={config_file}"] if config_file else [])
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "stdout.txt"), "w", encoding="utf-8") as f:
        f.write(done.stdout + done.stderr)
    found = re.search(r"final: top-1 ([0-9.]+)", done.stdout)
    balanced = re.search(r"final: .*balanced accuracy ([0-9.]+)", done.stdout)
    if done.returncode or not found:
        sys.exit(f"error: {' '.join(command)} failed; see {run_dir}/stdout.txt")
    plan = re.search(r"^data\.auto: .*$", done.stdout, re.M)
    from efficientnetv2 import run_folder

    config = run_folder.saved_config(run_dir)
    return {"top1": float(found.group(1)), "seconds": seconds, "isize": config["eval"]["isize"],
            "balanced": float(balanced.group(1)) if balanced else None,
            "epochs": config["train"]["epochs"], "plan": plan.group(0) if plan else ""}


def run_peer(folder: str, size: int, seconds: float, seed: int, out: str) -> dict:
    """The peer in a fresh process, ending within `seconds` of its start."""
    command = [sys.executable, __file__, "--peer", folder, "--size", str(size),
               "--budget", str(seconds), "--seeds", str(seed)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(done.stdout + done.stderr)
    found = re.search(r"^peer: (\{.*\})$", done.stdout, re.M)
    if done.returncode or not found:
        sys.exit(f"error: the peer failed on {folder}; see {out}")
    return {**json.loads(found.group(1)), "seconds": time.perf_counter() - start}


def peer(folder: str, size: int, budget: float, seed: int) -> None:
    """keras.applications EfficientNetV2B0 by model.fit, ending within `budget` seconds."""
    import keras
    import tensorflow as tf

    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    size = max(size, 32)  # keras.applications refuses inputs under 32 px
    read = dict(image_size=(size, size), batch_size=32, seed=seed, label_mode="int")
    train = keras.utils.image_dataset_from_directory(os.path.join(folder, "train"), shuffle=True, **read)
    val = keras.utils.image_dataset_from_directory(os.path.join(folder, "val"), shuffle=False, **read)
    classes = len(train.class_names)
    flip = keras.layers.RandomFlip("horizontal", seed=seed)
    train = train.map(lambda x, y: (flip(x, training=True), y)).cache().prefetch(2)
    val = val.cache().prefetch(2)
    model = keras.applications.EfficientNetV2B0(weights=None, input_shape=(size, size, 3),
                                                classes=classes)
    steps_per_epoch = len(train)
    total = tf.Variable(float(steps_per_epoch * 50), trainable=False)

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            warm = tf.cast(steps_per_epoch, tf.float32)
            cosine = 0.5 * (1 + tf.cos(np.pi * tf.minimum(1.0, (step - warm) / (total - warm))))
            return 1e-3 * tf.where(step < warm, (step + 1) / warm, cosine)

    class Deadline(keras.callbacks.Callback):
        """From the second epoch on (the first one compiles), sizes the schedule to the
        epochs that fit the budget at the mean epoch time so far, and stops there."""

        def on_train_begin(self, logs=None):
            self.ends, self.epochs = [], 1000

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter() - start)
            if epoch >= 1:
                per_epoch = (self.ends[-1] - self.ends[0]) / epoch
                left = budget - self.ends[-1] - per_epoch * 0.5  # the evaluation, process exit
                self.epochs = max(epoch + 1, epoch + 1 + int(left / per_epoch))
                total.assign(float(self.epochs * steps_per_epoch))
            if epoch + 1 >= self.epochs:
                self.model.stop_training = True

    deadline = Deadline()
    model.compile(keras.optimizers.AdamW(WarmupCosine()), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train, epochs=1000, callbacks=[deadline], verbose=2)
    _, top1 = model.evaluate(val, verbose=0)
    truth = np.concatenate([labels.numpy() for _, labels in val])
    predicted = model.predict(val, verbose=0).argmax(-1)
    recalls = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    print("peer: " + json.dumps({"top1": top1, "balanced": float(np.mean(recalls)),
                                 "epochs": deadline.epochs}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/own_folders")
    parser.add_argument("--folders", nargs="+", default=list(FOLDERS), choices=list(FOLDERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--fashion_dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--finetune_from", metavar="RUN",
                        help="instead: fine-tune this run on glyphs_300 (300 images) against "
                             "the same network from scratch, per seed")
    parser.add_argument("--config_file", metavar="YAML",
                        help="instead: train each folder with this recipe file (no peer), "
                             "to compare with the default's table")
    parser.add_argument("--imbalance", action="store_true",
                        help="instead: on the imbalanced folders, the defaults against "
                             "train.class_weights=balanced and against the peer")
    parser.add_argument("--peer", help=argparse.SUPPRESS)  # internal: one peer run
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return peer(args.peer, args.size, args.budget, args.seeds[0])
    if args.finetune_from:
        return finetune(args)
    if args.config_file:
        return with_recipe(args)
    if args.imbalance:
        return imbalance(args)
    rows = ["| folder | seed | size | ours top-1 | ours s | epochs | peer top-1 | peer s | "
            "peer epochs | gain |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in args.folders:
        folder = built(name, args)
        for seed in args.seeds:
            run_dir = os.path.join(args.root, "runs", f"{name}-s{seed}")
            ours = run_ours(folder, run_dir, seed)
            print(ours["plan"], flush=True)
            theirs = run_peer(folder, ours["isize"], ours["seconds"], seed,
                              os.path.join(args.root, "runs", f"{name}-s{seed}-peer.txt"))
            rows.append(f"| {name} | {seed} | {ours['isize']} | {100 * ours['top1']:.2f} | "
                        f"{ours['seconds']:.0f} | {ours['epochs']} | {100 * theirs['top1']:.2f} | "
                        f"{theirs['seconds']:.0f} | {theirs['epochs']} | "
                        f"{100 * (ours['top1'] - theirs['top1']):+.2f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


def built(name: str, args) -> str:
    """The folder `name` under `args.root`, built the first time."""
    folder = os.path.join(args.root, name)
    if not os.path.isdir(os.path.join(folder, "train")):
        FOLDERS[name](folder, args)
    return folder


def imbalance(args) -> None:
    """Per imbalanced folder and seed: top-1 and balanced accuracy of the defaults, of the
    same with class-weighted loss (train.class_weights=balanced), and of the peer in the
    defaults' time. Seeds outermost, so that the first seed of every folder comes first."""
    rows = ["| folder | seed | size | defaults top-1 | balanced | s | weighted top-1 | balanced "
            "| s | peer top-1 | balanced |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: | ---: | ---: |"]
    folders = [name for name in args.folders if name in IMBALANCED] or list(IMBALANCED)
    runs = os.path.join(args.root, "runs")
    for seed in args.seeds:
        for name in folders:
            folder = built(name, args)
            ours = run_ours(folder, os.path.join(runs, f"{name}-s{seed}"), seed)
            print(ours["plan"], flush=True)
            weighted = run_ours(folder, os.path.join(runs, f"{name}-weighted-s{seed}"), seed,
                                extra="train.class_weights=balanced")
            theirs = run_peer(folder, ours["isize"], ours["seconds"], seed,
                              os.path.join(runs, f"{name}-s{seed}-peer.txt"))
            rows.append(f"| {name} | {seed} | {ours['isize']} | {100 * ours['top1']:.2f} | "
                        f"{100 * ours['balanced']:.2f} | {ours['seconds']:.0f} | "
                        f"{100 * weighted['top1']:.2f} | {100 * weighted['balanced']:.2f} | "
                        f"{weighted['seconds']:.0f} | {100 * theirs['top1']:.2f} | "
                        f"{100 * theirs['balanced']:.2f} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


def with_recipe(args) -> None:
    """Each folder and seed trained with `args.config_file` on top of the defaults."""
    recipe = os.path.splitext(os.path.basename(args.config_file))[0]
    rows = ["| folder | seed | size | top-1 | s | epochs |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in args.folders:
        folder = built(name, args)
        for seed in args.seeds:
            run = run_ours(folder, os.path.join(args.root, "runs", f"{name}-{recipe}-s{seed}"), seed,
                           config_file=os.path.abspath(args.config_file))
            rows.append(f"| {name} | {seed} | {run['isize']} | {100 * run['top1']:.2f} | "
                        f"{run['seconds']:.0f} | {run['epochs']} |")
            print(rows[-1], flush=True)
    print("\n".join(rows))


def finetune(args) -> None:
    """Fine-tuning `args.finetune_from` on 300 glyphs against the same network from scratch
    (the run's blocks and stem), both with the defaults the folder gets."""
    from efficientnetv2 import run_folder

    folder = built("glyphs_300", args)
    network = run_folder.saved_config(args.finetune_from).model
    rows = ["| seed | fine-tuned top-1 | s | from scratch top-1 | s | gain |",
            "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for seed in args.seeds:
        tuned = run_ours(folder, os.path.join(args.root, "runs", f"ft-s{seed}"), seed,
                         init=args.finetune_from)
        same = (f"model.blocks={'|'.join(network['blocks'])},"
                f"model.stem_stride={network['stem_stride']}")
        scratch = run_ours(folder, os.path.join(args.root, "runs", f"scratch-s{seed}"), seed,
                           extra=same)
        rows.append(f"| {seed} | {100 * tuned['top1']:.2f} | {tuned['seconds']:.0f} | "
                    f"{100 * scratch['top1']:.2f} | {scratch['seconds']:.0f} | "
                    f"{100 * (tuned['top1'] - scratch['top1']):+.2f} |")
        print(rows[-1], flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
