"""Benchmark: float, dynamic-range and full-integer TFLite exports of a trained run.

    .venv/bin/pip install ai-edge-litert   # the LiteRT runtime phones and boards use
    .venv/bin/python experiments/tflite_int8.py --model_dir=runs/demo [--calibration_images 300]

Exports the run (`--mode=export --export_tflite --tflite_dynamic_int8 --tflite_int8`, into a
temporary folder), then for each file: top-1 on the run's whole eval split (pixels at the eval
size, through the file's own input quantization), its size, and the median batch-1 latency
on this CPU in TensorFlow's `tf.lite.Interpreter` and, when installed, in LiteRT's
(`ai_edge_litert.interpreter.Interpreter`). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from efficientnetv2.run_folder import restore_model  # noqa: E402
from efficientnetv2.serving.export import eval_pixels, export_run, run_tflite  # noqa: E402


def _interpreters(path: str) -> dict:
    found = {"tf.lite": tf.lite.Interpreter(path, num_threads=1)}
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return found
    found["LiteRT"] = Interpreter(path, num_threads=1)
    return found


def _probabilities(interpreter, image: np.ndarray) -> np.ndarray:
    return run_tflite(interpreter, image[None])["probabilities"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--calibration_images", type=int, default=300)
    parser.add_argument("--latency_runs", type=int, default=200)
    args = parser.parse_args()
    restored = restore_model(args.model_dir)
    folder = tempfile.mkdtemp(prefix="tflite_int8_")
    paths = export_run(restored, folder, version=1, tflite=("none", "dynamic", "full"),
                       calibration=args.calibration_images)[1:]
    config = restored.config
    images, labels = eval_pixels(config)
    if "LiteRT" not in _interpreters(paths[0]):
        print("(ai-edge-litert is not installed: LiteRT latency left out)")
    print(f"{restored.checkpoint}: {len(images)} eval images at {config.eval.isize}px, "
          f"calibrated on {args.calibration_images}")
    print("| file | top-1 | size KB | tf.lite ms | LiteRT ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for path in paths:
        interpreters = _interpreters(path)
        for interpreter in interpreters.values():
            interpreter.allocate_tensors()
        reference = interpreters["tf.lite"]
        predicted = np.array([np.argmax(_probabilities(reference, image)) for image in images])
        latency = {}
        for name, interpreter in interpreters.items():
            times = []
            for image in images[:args.latency_runs]:
                start = time.perf_counter()
                _probabilities(interpreter, image)
                times.append(time.perf_counter() - start)
            latency[name] = 1000 * float(np.median(times))
        print(f"| {os.path.basename(path)} | {100 * np.mean(predicted == labels):.2f}% | "
              f"{os.path.getsize(path) / 1024:,.0f} | {latency['tf.lite']:.2f} | "
              f"{latency.get('LiteRT', float('nan')):.2f} |", flush=True)


if __name__ == "__main__":
    main()
