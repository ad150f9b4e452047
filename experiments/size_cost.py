"""Benchmark: training images/s of one model at several image sizes, against the pixel count.

    .venv/bin/python experiments/size_cost.py [--model efficientnetv2-b0] [--width 0.5]
        [--depth 0.5] [--sizes 32,40,48,56,64,96,128] [--batch 128] [--steps 8]

Progressive learning saves time only where a smaller image makes a step proportionally
cheaper. This times our training loop (synthetic batches, XLA off, float32) at each size and
prints, per size, images/s and the cost per image relative to the largest size beside the
ratio of pixels: where the two columns agree the cost follows the pixels.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from efficientnetv2.experiments.bench import our_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnetv2-b0")
    parser.add_argument("--width", type=float, default=0.5, help="width coefficient")
    parser.add_argument("--depth", type=float, default=0.5, help="depth coefficient")
    parser.add_argument("--sizes", default="32,40,48,56,64,96,128")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per size")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    overrides = f"model.width_coefficient={args.width},model.depth_coefficient={args.depth}"
    rates = {}
    for size in sizes:
        keras.backend.clear_session()
        seconds, _ = our_training(args.model, size, args.batch, args.steps, False, overrides)
        rates[size] = args.batch / seconds
        print(f"{size} px: {rates[size]:,.0f} images/s", flush=True)
    top = max(sizes)
    print(f"\n{args.model} width {args.width} depth {args.depth}, batch {args.batch}, float32, "
          "XLA off\n\n| px | images/s | cost per image vs " f"{top} px | pixels vs {top} px |\n"
          "| ---: | ---: | ---: | ---: |")
    for size in sizes:
        print(f"| {size} | {rates[size]:,.0f} | {rates[top] / rates[size]:.2f} | "
              f"{(size / top) ** 2:.2f} |")


if __name__ == "__main__":
    main()
